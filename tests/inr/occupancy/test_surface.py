import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")  # the [occupancy] extra
pytest.importorskip("skimage")

from torch_sinr.errors import SINRInputError
from torch_sinr.inr.occupancy.surface import field_to_ply, marching_cubes_mesh

from .shapes import grid_points, inside_ball


def test_ball_surface_is_a_watertight_ply_of_the_right_volume(tmp_path):
    n, radius = 40, 0.6
    size = field_to_ply(tmp_path / "ball.ply", inside_ball(n, radius))
    assert size == (tmp_path / "ball.ply").stat().st_size > 1000
    mesh = trimesh.load(tmp_path / "ball.ply", process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert abs(mesh.volume) == pytest.approx(4 / 3 * np.pi * radius ** 3, rel=0.05)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.all(np.abs(radii - radius) < 2 * 2 / (n - 1))  # within two voxels of the sphere


def test_a_field_cut_by_the_cube_is_closed_by_the_padding():
    x, _, _ = grid_points(16)
    vertices, faces = marching_cubes_mesh(x > -0.5)  # a slab that fills up to the cube's +x face
    mesh = trimesh.Trimesh(vertices, faces)
    assert mesh.is_watertight
    half_voxel = 1 / 15
    assert vertices[:, 0].max() == pytest.approx(1 + half_voxel)  # the closing face, outside the grid
    assert vertices[:, 0].min() == pytest.approx(-0.5, abs=half_voxel)


def test_continuous_fields_use_the_level():
    x, y, z = grid_points(24)
    field = 1.0 - np.sqrt(x * x + y * y + z * z)  # 0.5 at radius 0.5
    vertices, _ = marching_cubes_mesh(field.astype(np.float32))
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=1), 0.5, atol=0.01)


def test_an_empty_field_has_no_surface():
    with pytest.raises(SINRInputError, match="no surface"):
        marching_cubes_mesh(np.zeros((8, 8, 8), bool))
    with pytest.raises(SINRInputError, match=r"\(N, N, N\)"):
        marching_cubes_mesh(np.zeros((8, 8), bool))
