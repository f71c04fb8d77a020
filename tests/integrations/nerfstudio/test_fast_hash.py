"""nerfstudio's HashEncoding through torch_sinr's fused gather: same values and gradients."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("nerfstudio")

from nerfstudio.field_components.encodings import HashEncoding  # noqa: E402

from torch_sinr_nerfstudio.fast_hash import fast_forward, fast_hash_encoding, use_fast_hash_encoding  # noqa: E402


def _encoding():
    torch.manual_seed(0)
    encoding = HashEncoding(num_levels=6, min_res=8, max_res=300, log2_hashmap_size=12, implementation="torch")
    with torch.no_grad():
        encoding.hash_table.normal_()
    return encoding


def _value_and_grads(encoding, forward, x):
    x = x.clone().requires_grad_(True)
    out = forward(x)
    (out * torch.arange(out.shape[-1], dtype=out.dtype)).sum().backward()
    grads = encoding.hash_table.grad.clone(), x.grad.clone()
    encoding.hash_table.grad = None
    return out.detach(), *grads


def test_same_values_and_gradients_as_nerfstudio():
    encoding = _encoding()
    # positions off every vertex plane: on one, nerfstudio's ceil == floor gives the position a
    # zero derivative and the fused path a one-sided one (both are derivatives of the kink)
    x = (torch.randint(0, 2**20, (2048, 3)).double() + 0.5) / 2**20
    x = x.view(64, 32, 3).float()  # any leading shape
    ns = _value_and_grads(encoding, encoding.pytorch_fwd, x)
    ours = _value_and_grads(encoding, lambda t: fast_forward(encoding, t), x)
    assert ours[0].shape == ns[0].shape == (64, 32, 12)
    for a, b in zip(ours, ns):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4 * float(b.abs().max()))


def test_patching_an_instance_and_the_class():
    encoding = _encoding()
    x = torch.rand(100, 3)
    reference = encoding(x)
    model = torch.nn.Sequential(encoding)
    assert use_fast_hash_encoding(model) == 1
    patched = encoding(x)
    torch.testing.assert_close(patched, reference)
    with fast_hash_encoding():
        fresh = HashEncoding(num_levels=2, min_res=4, max_res=8, log2_hashmap_size=8, implementation="torch")
        assert fresh.pytorch_fwd.__func__ is fast_forward
    assert HashEncoding.pytorch_fwd is not fast_forward
