"""Files written by every format version must decode the same forever."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from torch_sinr.format.v1 import read_compressed_v1 as read_compressed
from torch_sinr.format import decode_state_dict, load_compressed
from torch_sinr.format import read_compressed as read_v2

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("version", [1, 2])
def test_golden_file_decodes_to_its_recorded_weights(version):
    expected = load_file(str(GOLDEN / f"format_v{version}_expected.safetensors"))
    decoded = decode_state_dict(GOLDEN / f"format_v{version}.safetensors")
    assert decoded.keys() == expected.keys()
    for key in expected:
        # Codes and dictionary are exact; only the sparse matmul's summation order may vary.
        torch.testing.assert_close(decoded[key], expected[key], rtol=0, atol=1e-6)


def test_golden_v1_file_layout():
    cf = read_compressed(GOLDEN / "format_v1.safetensors")
    assert cf.metadata["format_version"] == "1" and cf.metadata["dictionary_generator"] == "sinr-gauss-v1"
    layers = {r.name: (r.spec.mode, r.spec.s, r.spec.k2, r.spec.quantizer.bits) for r in cf.layers}
    # fan-in 56: per row, s = ceil(0.45 * 56) = 26, k2 = 8 * 56; fan-in 20 < 50: flattened ("tiny"),
    # k1 = 400 -> s = 180, k1 = 60 -> s = 27; fan-in 2: the input layer is left dense
    assert layers == {"2": ("row", 26, 448, 12), "4": ("row", 26, 448, 12),
                      "6": ("flat", 180, 3200, 12), "8": ("flat", 27, 480, 12)}
    assert {r.name for r in cf.dense} == {"0.weight", "0.bias"}


def test_golden_v1_file_loads_into_model():
    from tests.format.golden.make_golden import golden_model

    model = load_compressed(GOLDEN / "format_v1.safetensors", golden_model()).eval()
    plain = golden_model()
    plain.load_state_dict(load_file(str(GOLDEN / "format_v1_expected.safetensors")))
    x = torch.linspace(-1, 1, 20).reshape(10, 2)
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- format 2
V2_SHA256 = "31d8cd675d8745c0e5317ce17950b2435c1ea663da2ad29277f71eb4485a6cfa"


def test_golden_v2_file_is_pinned_by_its_hash():
    import hashlib

    assert hashlib.sha256((GOLDEN / "format_v2.safetensors").read_bytes()).hexdigest() == V2_SHA256


def test_golden_v2_file_loads_and_re_saves_to_the_same_bytes(tmp_path):
    """The writer is pinned too: the golden file's model writes exactly the golden bytes."""
    from tests.format.golden.make_golden import golden_model
    from torch_sinr.format import save_compressed

    model = load_compressed(GOLDEN / "format_v2.safetensors", golden_model()).eval()
    save_compressed(model, tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == (GOLDEN / "format_v2.safetensors").read_bytes()
    plain = golden_model()
    plain.load_state_dict(load_file(str(GOLDEN / "format_v2_expected.safetensors")))
    x = torch.linspace(-1, 1, 20).reshape(10, 2)
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=1e-5)


def test_golden_v2_codings():
    summary = read_v2(GOLDEN / "format_v2.safetensors")
    codings = {t["name"]: t.get("value_coding") for t in summary.tensors}
    assert codings["2.weight"] == "range" and codings["0.weight"] == "packed"
    assert {t["kind"] for t in summary.tensors} == {"uniform", "sinr"}


# ----------------------------------------------------------------------------- format 2, kind "integers" (id 4)
V2_INTEGERS_SHA256 = "5736ff1c1696fc6ee5d9c90a603b0c7ece5a7b2ad7f82a76572ebf017869231c"


def test_golden_v2_integers_file_is_pinned_by_its_hash():
    import hashlib

    data = (GOLDEN / "format_v2_integers.safetensors").read_bytes()
    assert hashlib.sha256(data).hexdigest() == V2_INTEGERS_SHA256


def test_golden_v2_integers_file_decodes_to_its_recorded_tensors():
    expected = load_file(str(GOLDEN / "format_v2_integers_expected.safetensors"))
    decoded = decode_state_dict(GOLDEN / "format_v2_integers.safetensors")
    assert decoded.keys() == expected.keys()
    for key in ("latents", "constant", "empty"):  # integers are exact
        assert torch.equal(decoded[key], expected[key]), key
    for key in expected:
        torch.testing.assert_close(decoded[key], expected[key], rtol=0, atol=1e-6)
    summary = read_v2(GOLDEN / "format_v2_integers.safetensors")
    kinds = {t["name"]: (t["kind"], t.get("value_coding")) for t in summary.tensors}
    # both symbol codings the kind can choose occur: range (a Laplace) and packed (one value)
    assert kinds["latents"] == ("integers", "range") and kinds["constant"] == ("integers", "packed")
    assert kinds["empty"] == ("integers", "empty")


def test_golden_v2_integers_file_loads_and_re_saves_to_the_same_bytes(tmp_path):
    from tests.format.golden.make_golden import IntegersModel
    from torch_sinr.format import save_compressed
    from torch_sinr.nn.storage import get_storage

    skeleton = IntegersModel()
    with torch.no_grad():  # the file, not the generator's seed, must fill it
        skeleton.latents.zero_()
        skeleton.constant.zero_()
    model = load_compressed(GOLDEN / "format_v2_integers.safetensors", skeleton)
    assert all(get_storage(model, name) == "integer" for name in ("latents", "constant", "empty"))
    save_compressed(model, tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == (GOLDEN / "format_v2_integers.safetensors").read_bytes()



# ----------------------------------------------------------------------------- format 2, kind "stepped" (id 5)
V2_STEPPED_SHA256 = "03dcb797b753c765866079275f89e17de5ad999deff5b89ec71dc1d936b891bf"


def test_golden_v2_stepped_file_is_pinned_by_its_hash():
    import hashlib

    data = (GOLDEN / "format_v2_stepped.safetensors").read_bytes()
    assert hashlib.sha256(data).hexdigest() == V2_STEPPED_SHA256


def test_golden_v2_stepped_file_decodes_to_its_recorded_tensors():
    from tests.format.golden.make_golden import STEPPED_ROWS

    expected = load_file(str(GOLDEN / "format_v2_stepped_expected.safetensors"))
    decoded = decode_state_dict(GOLDEN / "format_v2_stepped.safetensors")
    assert decoded.keys() == expected.keys()
    assert torch.equal(decoded["table"], expected["table"])  # integers times float32 steps: exact
    for key in expected:
        torch.testing.assert_close(decoded[key], expected[key], rtol=0, atol=1e-6)
    table = {t["name"]: t for t in read_v2(GOLDEN / "format_v2_stepped.safetensors").tensors}["table"]
    assert table["kind"] == "stepped" and table["groups"] == len(STEPPED_ROWS) and table["value_coding"] == ["range"]


def test_golden_v2_stepped_file_loads_and_re_saves_to_the_same_bytes(tmp_path):
    from tests.format.golden.make_golden import STEPPED_ROWS, STEPPED_STEPS, SteppedModel
    from torch_sinr.core.quantization import StepQuantizer
    from torch_sinr.format import save_compressed
    from torch_sinr.nn.storage import get_storage

    skeleton = SteppedModel()
    with torch.no_grad():
        skeleton.table.zero_()
    model = load_compressed(GOLDEN / "format_v2_stepped.safetensors", skeleton)
    assert get_storage(model, "table") == StepQuantizer.per_group(STEPPED_ROWS, STEPPED_STEPS)
    save_compressed(model, tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == (GOLDEN / "format_v2_stepped.safetensors").read_bytes()
