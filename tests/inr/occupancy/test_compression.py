"""An occupancy INR through SINR's file: what the file decodes to is exactly the compressed model."""

import numpy as np
import torch

from torch_sinr import SINRConfig, compress_model, load_compressed, save_compressed
from torch_sinr.inr.models import INR
from torch_sinr.inr.occupancy.fit import OccupancyFitConfig, fit_occupancy
from torch_sinr.inr.occupancy.metrics import model_iou, predict_volume

from .shapes import inside_ball


def test_compressed_occupancy_inr_file_round_trip_is_exact(tmp_path):
    torch.set_num_threads(1)
    ball = inside_ball(16, 0.6)
    config = OccupancyFitConfig(activation="siren", hidden_features=64, hidden_layers=1, steps=150, batch_size=1024)
    model, record = fit_occupancy(ball, config, progress=False)
    report = compress_model(model, SINRConfig(dict_ratio=4, s_ratio=0.3, value_bits=8), progress=False)
    assert report.file_bytes > 0
    save_compressed(model, tmp_path / "ball.safetensors")
    decoded = load_compressed(tmp_path / "ball.safetensors", INR(config.inr_config())).eval()
    assert np.array_equal(predict_volume(decoded, 16), predict_volume(model, 16))
    assert model_iou(decoded, ball) == model_iou(model, ball) > 0.9 * record["iou"]  # 0.944 of 1.0 when written
