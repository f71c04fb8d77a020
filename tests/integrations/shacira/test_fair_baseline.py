"""``torch_sinr.compress`` on a SHACIRA-shaped decoder (64 -> 96 -> 96 -> 3) fitted to a real
image is never larger than the best fine-tuned uniform file at the same PSNR target: the
mixed-precision baseline (the same search and fine-tuning with SINR switched off) and one bit
width for every tensor, fine-tuned with the same steps, in the same container and coder.

The decoder is the MLP of a hash-grid image model trained on a Kodak crop; the grid and the
latent decoder are frozen and their 64 features per pixel computed once, so every probe of the
search evaluates the MLP alone (the hash grid would cost most of a probe's time and is not what
is coded)."""

import copy
import math

import pytest
import torch

from torch_sinr import MaxDrop, compress
from torch_sinr.tune.baselines import finetune_uniform, read_baseline, write_uniform
from torch_sinr_shacira import ImageModel, ImageModelConfig, PixelSource, TrainConfig, train

# 16 levels x 4 features = 64 inputs, two 96-wide layers: SHACIRA's decoder shape.
CONFIG = ImageModelConfig.for_image(64, 64, levels=16, log2_table=10, hidden=96)
DROP = 0.3  # dB, compress_decoders' default target
STEPS = 30  # fine-tuning steps, every method alike
UNIFORM_WIDTHS = (8, 7, 6, 5, 4)  # one width for every tensor; wider ones only cost more bytes

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def decoder(kodak_crop):
    """The trained model's MLP and the (features, colours) of every pixel of the 64 x 64 crop."""
    source = PixelSource(kodak_crop[:64, :64].copy())
    torch.manual_seed(0)
    model = ImageModel(CONFIG)
    train(model, source, TrainConfig(steps=150, batch=1 << 11, lr_mlp=1e-3, lr_prior=1e-3, checkpoint_every=1000),
          progress=False)
    coords = source.tile_coordinates(0, 64, 0, 64)
    colours = torch.from_numpy(kodak_crop[:64, :64].reshape(-1, 3).copy()).float() / 255
    with torch.no_grad():
        latents = torch.round(model.grid(coords))  # what the file stores: the integers trained against
        features = model.latent_decoder(latents.reshape(len(coords), CONFIG.levels, 1)).reshape(len(coords), -1)
    assert model.mlp[0].in_features == 64 and [m.out_features for m in model.mlp if hasattr(m, "out_features")] \
        == [96, 96, 3]
    return model.mlp.eval(), features, colours


def _psnr(features, colours):
    @torch.no_grad()
    def psnr(mlp) -> float:
        return -10 * math.log10(float(((mlp(features).clamp(0, 1) - colours) ** 2).mean()))

    return psnr


def _loss(features, colours):
    return lambda mlp: ((mlp(features) - colours) ** 2).mean()


def test_compress_is_no_larger_than_the_best_fine_tuned_uniform_file(decoder, tmp_path):
    mlp, features, colours = decoder
    evaluate, loss = _psnr(features, colours), _loss(features, colours)
    reference = evaluate(mlp)
    assert reference > 24  # a real fit (measured 27.5 dB), not noise
    floor = reference - DROP

    coded = copy.deepcopy(mlp)
    result = compress(coded, loss, evaluate=evaluate, target=MaxDrop(DROP), steps=STEPS, max_probes=4, progress=False)
    assert result.score >= floor
    assert set(result.baseline["candidates"]) == {"search", "mixed precision", "one width", "SINR on every layer"}

    # one bit width for every tensor, fine-tuned with the same steps, written in the same container
    uniform = {}
    for bits in UNIFORM_WIDTHS:
        state, grids = finetune_uniform(copy.deepcopy(mlp), loss, bits, STEPS, lr=1e-3)
        size = write_uniform(state, tmp_path / f"u{bits}.safetensors", bits, grids)
        decoded = copy.deepcopy(mlp)
        decoded.load_state_dict(read_baseline(tmp_path / f"u{bits}.safetensors", skeleton=copy.deepcopy(mlp)))
        score = evaluate(decoded)
        if score < floor:
            break
        uniform[bits] = size
    mixed = result.baseline["candidates"]["mixed precision"]  # the same search and fine-tuning, SINR off
    assert mixed["score"] >= floor
    assert uniform, "no fine-tuned uniform width met the target: the comparison would be empty"
    best = min([mixed["file_bytes"], *uniform.values()])
    assert result.file_bytes <= best, (result.file_bytes, uniform, result.baseline)
