import numpy as np
import pytest

pytest.importorskip("matplotlib")

from torch_sinr.errors import SINRInputError
from torch_sinr.inr.occupancy.render import depth_map, render_comparison, shade

from .shapes import grid_points, inside_ball


def test_depth_of_a_ball_seen_from_above():
    n, radius = 41, 0.5
    depth = depth_map(inside_ball(n, radius))
    centre = n // 2
    assert depth[centre, centre] == pytest.approx(radius, abs=2 / (n - 1))
    assert np.isnan(depth[0, 0]) and np.isnan(depth[centre, 0])  # columns that miss the ball


def test_continuous_fields_give_sub_voxel_depth():
    n = 21
    x, y, z = grid_points(n)
    field = (0.33 - z) + 0.5  # crosses 0.5 at z = 0.33, between grid points 0.3 and 0.4
    depth = depth_map(field)
    np.testing.assert_allclose(depth, 0.33, atol=1e-9)
    assert np.all(depth_map(field > 0.5) == pytest.approx(0.3))


def test_shading_lights_the_upper_left_and_leaves_the_background_white():
    image = shade(depth_map(inside_ball(41, 0.6)))
    assert image.shape == (41, 41) and image[0, 0] == 1.0
    # rows run from +y down to -y: the ball's upper-left faces the light, its lower-right does not
    assert image[12, 12] > image[28, 28] + 0.3


def test_comparison_png_is_written(tmp_path):
    from PIL import Image

    ball = inside_ball(24, 0.6)
    path = render_comparison(tmp_path / "out" / "cmp.png", [("original", ball), ("decoded", ball[::-1])], title="t")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 1.5 * image.size[1]
    with pytest.raises(SINRInputError, match="at least one"):
        render_comparison(tmp_path / "none.png", [])
