import numpy as np
import pytest
import torch
from torch import nn

from torch_sinr.errors import SINRInputError
from torch_sinr.inr.occupancy.metrics import BandIoU, iou, model_iou, predict_volume

from .shapes import inside_ball


class BallField(nn.Module):
    """1 inside the ball of radius r, 0 outside: a model whose IoU is known."""

    def __init__(self, radius: float) -> None:
        super().__init__()
        self.radius = radius

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return (coords.pow(2).sum(dim=1, keepdim=True) < self.radius ** 2).float()


def test_iou_of_known_volumes():
    a = np.zeros((4, 4, 4), dtype=bool)
    b = np.zeros_like(a)
    assert iou(a, b) == 1.0  # nothing predicted, nothing there
    a[0, 0, :4] = True  # 4 voxels
    assert iou(a, a) == 1.0
    b[1, 1, :] = True
    assert iou(a, b) == 0.0
    b[:] = False
    b[0, 0, 2:] = True
    b[0, 1, :4] = True  # 6 voxels, 2 shared with a: 2 / (4 + 6 - 2)
    assert iou(a, b) == pytest.approx(0.25)
    assert iou(b, a) == pytest.approx(0.25)


def test_chunked_iou_equals_unchunked():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 17, 17, 17)) < 0.3, rng.random((17, 17, 17)) < 0.5
    a = a[0]
    whole = iou(a, b)
    assert 0.1 < whole < 0.4
    for chunk in (1, 7, 1000):
        assert iou(a, b, chunk=chunk) == whole


def test_iou_refuses_mismatched_or_non_bool_volumes():
    with pytest.raises(SINRInputError, match="one shape"):
        iou(np.zeros((2, 2, 2), bool), np.zeros((3, 3, 3), bool))
    with pytest.raises(SINRInputError, match="threshold the prediction"):
        iou(np.zeros((2, 2, 2)), np.zeros((2, 2, 2), bool))


def test_model_iou_of_an_exact_and_a_shrunk_ball_in_any_chunking():
    truth = inside_ball(20, 0.6)
    assert model_iou(BallField(0.6), truth) == 1.0
    shrunk = inside_ball(20, 0.5)
    expected = shrunk.sum() / truth.sum()  # the smaller ball lies inside the larger
    for chunk in (1000, 333, 20 ** 3):
        assert model_iou(BallField(0.5), truth, chunk=chunk) == pytest.approx(expected)
    assert model_iou(BallField(0.5), truth, stride=2) == pytest.approx(iou(shrunk[::2, ::2, ::2], truth[::2, ::2, ::2]))


def test_predict_volume_is_the_field_on_the_grid():
    field = predict_volume(BallField(0.6), 12, chunk=100)
    assert field.shape == (12, 12, 12) and field.dtype == np.float32
    assert np.array_equal(field > 0.5, inside_ball(12, 0.6))


def test_model_iou_refuses_a_non_cubic_truth():
    with pytest.raises(SINRInputError, match=r"bool \(N, N, N\)"):
        model_iou(BallField(0.5), np.zeros((4, 4, 5), bool))
    with pytest.raises(SINRInputError, match="chunk"):
        model_iou(BallField(0.5), np.zeros((4, 4, 4), bool), chunk=0)


class Floaters(nn.Module):
    """A ball plus cubes of false positives far from its surface."""

    def __init__(self, radius: float, centres: list[tuple[float, float, float]], half: float) -> None:
        super().__init__()
        self.ball, self.centres, self.half = BallField(radius), torch.tensor(centres), half

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        cubes = ((coords[:, None, :] - self.centres[None]).abs() <= self.half).all(dim=2).any(dim=1, keepdim=True)
        return torch.maximum(self.ball(coords), cubes.float())


def test_band_iou_is_exact_when_errors_lie_near_the_surface_and_estimates_far_ones():
    truth = inside_ball(32, 0.6)
    estimate = BandIoU(truth, band=3, stride=4)
    assert estimate.fraction < 0.5
    assert estimate(BallField(0.6)) == 1.0
    # a slightly shrunk ball errs only within the band: the estimate is the full-grid IoU
    assert estimate(BallField(0.56)) == pytest.approx(model_iou(BallField(0.56), truth), abs=1e-12)
    # floaters far from the surface are counted through the sample, each standing for its share
    far = Floaters(0.6, [(-0.9, -0.9, -0.9), (0.9, 0.9, -0.9), (0.9, -0.9, 0.9)], half=0.12)
    full = model_iou(far, truth)
    assert full < 0.97
    assert estimate(far) == pytest.approx(full, abs=0.01)
    with pytest.raises(SINRInputError, match="bool"):
        BandIoU(truth.astype(np.uint8))
