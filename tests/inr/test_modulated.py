"""COIN++-style modulated networks (torch_sinr.inr.modulated): meta-learning helps, resumes,
the latents are coded like any linear, and bad input is refused."""

from __future__ import annotations

import pytest
import torch

import torch_sinr
from torch_sinr.errors import SINRConfigError, SINRInputError
from torch_sinr.inr.images import load_image
from torch_sinr.inr.models import psnr
from torch_sinr.inr.modulated import (LatentGrid, MetaLearnedModulation, ModulatedSiren, ModulationConfig,
                                      assemble_patches, fit_latents, image_patches, latent_config, latent_loss,
                                      meta_learn_modulated, render_latents)

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIG = ModulationConfig(patch=8, inner_steps=3, inner_lr=1e-2, outer_steps=60, outer_lr=3e-3, meta_batch=8)


def _halves() -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled Kodak image downscaled 8x (64 x 96): its left half to learn on, the right
    half unseen."""
    image = load_image(downscale=8)
    return image[:, :, :48].contiguous(), image[:, :, 48:].contiguous()


def _net(seed: int = 0) -> ModulatedSiren:
    torch.manual_seed(seed)
    return ModulatedSiren(width=32, layers=3, latent_dim=8)


@pytest.fixture(scope="module")
def learned() -> MetaLearnedModulation:
    return meta_learn_modulated(_net(), [_halves()[0]], CONFIG, progress=False)


def test_patches_tile_the_image_and_assemble_back():
    image = torch.rand(3, 16, 24)
    targets, (rows, cols) = image_patches(image, 8)
    assert targets.shape == (6, 64, 3) and (rows, cols) == (2, 3)
    assert torch.equal(targets[1].reshape(8, 8, 3), image[:, :8, 8:16].permute(1, 2, 0) * 2 - 1)
    torch.testing.assert_close(assemble_patches(targets, rows, cols, 8), image, rtol=0, atol=1e-6)


def test_a_zero_latent_gives_the_base_network_and_latents_shift_it():
    model = _net()
    coords = torch.rand(10, 2) * 2 - 1
    zero, other = model(coords, torch.zeros(2, 8)), model(coords, torch.randn(2, 8))
    assert torch.equal(zero[0], zero[1]) and not torch.allclose(zero, other)


def test_a_learned_base_fits_unseen_patches_better_after_the_same_steps(learned):
    after = [h["loss_after"] for h in learned.history]
    assert sum(after[-10:]) < 0.6 * sum(after[:10])
    _, unseen = _halves()
    meta = psnr(render_latents(model := _net(), fit_latents(model, learned, unseen)), unseen)
    # the same learned rates and steps from the random base network the meta-learning started from
    random_base = MetaLearnedModulation(base={n: p.detach() for n, p in _net().named_parameters()},
                                        inner_lrs=learned.inner_lrs, config=learned.config)
    random = psnr(render_latents(model := _net(), fit_latents(model, random_base, unseen)), unseen)
    assert meta > random + 2.0, (meta, random)  # measured: 16.4 vs 11.8 dB
    assert all(float(rate.min()) >= 0 for rate in learned.inner_lrs)


def test_refining_the_latents_lowers_the_loss(learned):
    _, unseen = _halves()
    model = _net()
    quick = fit_latents(model, learned, unseen)
    refined = fit_latents(model, learned, unseen, refine_steps=20)
    loss = latent_loss(model, unseen, CONFIG.patch)
    with torch.no_grad():
        assert float(loss(refined)) < float(loss(quick))


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    config = ModulationConfig(patch=8, inner_steps=2, outer_steps=6, outer_lr=1e-3, meta_batch=4, checkpoint_every=3)
    images = [_halves()[0]]
    straight = meta_learn_modulated(_net(), images, config, progress=False)
    path = tmp_path / "meta.pt"
    meta_learn_modulated(_net(), images, ModulationConfig(**{**config.to_dict(), "outer_steps": 3}),
                         checkpoint=path, progress=False)
    resumed = meta_learn_modulated(_net(), images, config, checkpoint=path, progress=False)
    for name in straight.base:
        assert torch.equal(straight.base[name], resumed.base[name]), name
    assert all(torch.equal(a, b) for a, b in zip(straight.inner_lrs, resumed.inner_lrs))
    other = ModulationConfig(**{**config.to_dict(), "patch": 4})
    with pytest.raises(SINRInputError, match="other settings"):
        meta_learn_modulated(_net(), images, other, checkpoint=path, progress=False)


def test_coded_latents_file_decodes_to_the_same_image(tmp_path, learned):
    from torch_sinr.shared_init import load_latents, save_latents

    _, unseen = _halves()
    model = _net()
    grid = fit_latents(model, learned, unseen, refine_steps=10)
    report = torch_sinr.compress_model(grid, latent_config(s_ratio=0.3, value_bits=10, dict_ratio=4), progress=False)
    assert [layer.name for layer in report.layers] == ["channels"]  # coded, not kept dense as an input layer
    path = tmp_path / "latents.safetensors"
    save_latents(grid, path, learned.fingerprint)
    decoded = load_latents(path, model)
    assert (decoded.rows, decoded.cols, decoded.patch) == (grid.rows, grid.cols, grid.patch)
    assert torch.equal(render_latents(model, decoded), render_latents(model, grid))
    assert psnr(render_latents(model, decoded), unseen) > 14.0


def test_latents_are_refused_against_another_base_network_or_a_bad_layout(tmp_path, learned):
    from torch_sinr.shared_init import LAYOUT_KEY, load_latents, save_latents

    _, unseen = _halves()
    model = _net()
    grid = fit_latents(model, learned, unseen)
    path = tmp_path / "latents.safetensors"
    torch_sinr.compress_model(grid, latent_config(s_ratio=0.3), progress=False)
    save_latents(grid, path, learned.fingerprint)
    with pytest.raises(SINRInputError, match="another image"):
        load_latents(path, _net(seed=1))  # another base network
    for layout in ("4,6", "4,6,x", "0,6,8", "4096,4096,8", "4,6," + "9" * 30):
        bad = tmp_path / "bad.safetensors"
        torch_sinr.save_compressed(grid, bad, metadata={"sinr_init_fingerprint": learned.fingerprint,
                                                        LAYOUT_KEY: layout})
        with pytest.raises(SINRInputError, match="layout"):
            load_latents(bad, model)
    plain = tmp_path / "plain.safetensors"
    torch_sinr.save_compressed(grid, plain)
    with pytest.raises(SINRInputError, match="no sinr_init_fingerprint"):
        load_latents(plain, model)
    with pytest.raises(SINRInputError, match="LatentGrid"):
        save_latents(model, path, learned.fingerprint)


def test_bad_input_is_refused():
    with pytest.raises(SINRConfigError, match="pixels"):
        ModulationConfig(pixels=64)
    with pytest.raises(SINRConfigError, match="patch"):
        ModulationConfig(patch=0)
    with pytest.raises(SINRConfigError, match="layers"):
        ModulatedSiren(layers=1)
    with pytest.raises(SINRInputError, match="tile"):
        image_patches(torch.rand(3, 10, 16), 8)
    with pytest.raises(SINRInputError, match="NaN"):
        image_patches(torch.full((3, 8, 8), float("nan")), 8)
    with pytest.raises(SINRInputError, match="latents must be"):
        _net()(torch.rand(4, 2), torch.rand(2, 5))
    with pytest.raises(SINRInputError, match="latents must be"):
        LatentGrid(torch.rand(5, 8), 2, 3, 8)
    with pytest.raises(SINRInputError, match="ModulatedSiren"):
        meta_learn_modulated(torch.nn.Linear(2, 3), [torch.rand(3, 8, 8)], CONFIG, progress=False)
    with pytest.raises(SINRInputError, match="patch="):
        fit_latents(_net(), None, torch.rand(3, 8, 8))
