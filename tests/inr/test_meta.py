"""Meta-learned initialisations (torch_sinr.inr.meta): they help, they resume, they refuse bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torch_sinr.errors import SINRConfigError, SINRInputError
from torch_sinr.inr import INR, INRConfig
from torch_sinr.inr.images import load_image
from torch_sinr.inr.meta import MetaConfig, adapt, init_fingerprint, meta_learn

pytestmark = pytest.mark.usefixtures("single_thread")

SIDE = 12


def _crops(count: int, seed: int) -> list[torch.Tensor]:
    """Random 12x12 crops of the bundled Kodak image downscaled 8x: a family of small natural
    images, the kind of task set meta-learning is for."""
    image = load_image(downscale=8)  # (3, 64, 96)
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        r = int(torch.randint(image.shape[1] - SIDE, (1,), generator=g))
        c = int(torch.randint(image.shape[2] - SIDE, (1,), generator=g))
        out.append(image[:, r:r + SIDE, c:c + SIDE].contiguous())
    return out


def _net(seed: int = 0, activation: str = "siren") -> INR:
    torch.manual_seed(seed)
    return INR(INRConfig(hidden_features=16, hidden_layers=1, activation=activation, pe_frequencies=4))


CONFIG = MetaConfig(inner_steps=3, inner_lr=1e-2, outer_steps=40, outer_lr=3e-3, meta_batch=2)


@pytest.mark.parametrize("activation", ["siren", "siren_pe"])  # C3 and C4: without and with positional encoding
def test_a_learned_initialisation_fits_unseen_images_better_after_the_same_steps(activation):
    learned = meta_learn(_net(activation=activation), _crops(16, seed=0), CONFIG, progress=False)
    after = [h["loss_after"] for h in learned.history]  # one random image pair a step: compare tens
    assert sum(after[-10:]) < 0.8 * sum(after[:10])
    held_out = _crops(6, seed=1)
    meta_losses, random_losses = [], []
    for image in held_out:
        meta_losses.append(adapt(_net(activation=activation), learned, image)[-1])
        # the same inner steps from the random initialisation the meta-learning started from,
        # with the same (learned) rates: only the initialisation differs
        random_start = type(learned)(init=dict(_net(activation=activation).named_parameters()),
                                     inner_lrs=learned.inner_lrs, config=learned.config)
        random_losses.append(adapt(_net(activation=activation), random_start, image)[-1])
    assert sum(meta_losses) < 0.7 * sum(random_losses), (meta_losses, random_losses)


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    config = MetaConfig(inner_steps=2, outer_steps=6, outer_lr=1e-3, meta_batch=2, pixels=64, checkpoint_every=3)
    images = _crops(4, seed=2)
    straight = meta_learn(_net(), images, config, progress=False)
    path = tmp_path / "meta.pt"
    first = MetaConfig(**{**config.to_dict(), "outer_steps": 3})
    meta_learn(_net(), images, first, checkpoint=path, progress=False)
    resumed = meta_learn(_net(), images, config, checkpoint=path, progress=False)
    for name in straight.init:
        assert torch.equal(straight.init[name], resumed.init[name]), name
        for a, b in zip(straight.inner_lrs[name], resumed.inner_lrs[name]):
            assert torch.equal(a, b)
    assert straight.fingerprint == resumed.fingerprint
    assert [h["loss_after"] for h in straight.history] == [h["loss_after"] for h in resumed.history]


def test_first_order_is_another_update_and_rates_stay_fixed_when_not_learned():
    images = _crops(4, seed=3)
    base = MetaConfig(inner_steps=2, outer_steps=3, outer_lr=1e-3, meta_batch=1)
    second = meta_learn(_net(), images, base, progress=False)
    first = meta_learn(_net(), images, MetaConfig(**{**base.to_dict(), "first_order": True}), progress=False)
    assert any(not torch.equal(second.init[n], first.init[n]) for n in second.init)
    fixed = meta_learn(_net(), images, MetaConfig(**{**base.to_dict(), "learn_inner_lr": False}), progress=False)
    assert all(torch.equal(lr, torch.full_like(lr, base.inner_lr)) for steps in fixed.inner_lrs.values() for lr in steps)
    assert any(not torch.equal(lr, torch.full_like(lr, base.inner_lr))
               for steps in second.inner_lrs.values() for lr in steps)


def test_the_fingerprint_names_one_initialisation():
    params = dict(_net().named_parameters())
    same = {n: p.detach().clone() for n, p in params.items()}
    assert init_fingerprint(params) == init_fingerprint(same)
    same["net.0.bias"] = same["net.0.bias"] + 1e-7
    assert init_fingerprint(params) != init_fingerprint(same)


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(SINRConfigError, match="inner_steps"):
        MetaConfig(inner_steps=0)
    with pytest.raises(SINRConfigError, match="outer_lr"):
        MetaConfig(outer_lr=float("nan"))
    with pytest.raises(SINRInputError, match="at least one image"):
        meta_learn(_net(), [], CONFIG, progress=False)
    images = _crops(2, seed=4)
    with pytest.raises(SINRInputError, match="one shape"):
        meta_learn(_net(), [images[0], F.pad(images[1], (0, 1))], CONFIG, progress=False)
    bad = images[0].clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(SINRInputError, match="NaN"):
        meta_learn(_net(), [bad], CONFIG, progress=False)
    # a checkpoint of other settings, and a file that is not a checkpoint
    path = tmp_path / "meta.pt"
    small = MetaConfig(inner_steps=1, outer_steps=1, meta_batch=1)
    meta_learn(_net(), images, small, checkpoint=path, progress=False)
    with pytest.raises(SINRInputError, match="other settings"):
        meta_learn(_net(), images, MetaConfig(inner_steps=2, outer_steps=2, meta_batch=1), checkpoint=path,
                   progress=False)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(SINRInputError, match="not a meta-learning checkpoint"):
        meta_learn(_net(), images, small, checkpoint=path, progress=False)
    learned = meta_learn(_net(), images, small, progress=False)
    wider = INR(INRConfig(hidden_features=8, hidden_layers=1))
    with pytest.raises(SINRInputError, match="does not fit"):
        adapt(wider, learned, images[0])
