import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")  # the [occupancy] extra

from torch_sinr.errors import SINRInputError
from torch_sinr.inr.occupancy.mesh import load_mesh, normalize_vertices
from torch_sinr.inr.occupancy.volume import occupancy_volume


def test_normalization_centres_the_box_and_keeps_the_aspect():
    vertices = np.array([[10.0, 0.0, -5.0], [30.0, 4.0, -5.0], [10.0, 4.0, 1.0], [30.0, 0.0, 1.0]])
    normalized, normalization = normalize_vertices(vertices, margin=0.1)
    lo, hi = normalized.min(axis=0), normalized.max(axis=0)
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-12)
    np.testing.assert_allclose(hi - lo, np.array([20.0, 4.0, 6.0]) * 1.8 / 20.0)
    np.testing.assert_allclose(normalization.to_mesh(normalized), vertices)


def test_normalization_refuses_a_point_and_a_bad_margin():
    with pytest.raises(SINRInputError, match="zero extent"):
        normalize_vertices(np.ones((4, 3)))
    with pytest.raises(SINRInputError, match="margin"):
        normalize_vertices(np.eye(3), margin=1.0)


def test_a_written_mesh_loads_back(tmp_path):
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=3.0)
    path = tmp_path / "ball.ply"
    mesh.export(path)
    vertices, faces = load_mesh(path)
    assert vertices.dtype == np.float64 and faces.dtype == np.int64
    np.testing.assert_allclose(np.sort(np.linalg.norm(vertices, axis=1)), 3.0, rtol=1e-6)
    assert len(faces) == len(mesh.faces)


def test_missing_and_unreadable_files_raise_clear_errors(tmp_path):
    with pytest.raises(SINRInputError, match="mesh file not found: .*nothing.obj"):
        load_mesh(tmp_path / "nothing.obj")
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"ply\nformat nonsense\n")
    with pytest.raises(SINRInputError, match="garbage.ply"):
        load_mesh(garbage)


def test_dragon_stray_two_sided_triangle_leaves_the_volume_unchanged(shared_data):
    vertices, faces = load_mesh(shared_data / "meshes" / "dragon.ply")
    normalized, _ = normalize_vertices(vertices)
    ordered = np.sort(faces, axis=1)
    _, first, counts = np.unique(ordered, axis=0, return_index=True, return_counts=True)
    _, inverse = np.unique(ordered, axis=0, return_inverse=True)
    twice = np.flatnonzero(counts[inverse.reshape(-1)] == 2)
    assert len(twice) == 2  # the data README's stray triangle, both windings
    without = np.delete(faces, twice, axis=0)
    volume = occupancy_volume(normalized, faces, 64)
    assert np.array_equal(volume, occupancy_volume(normalized, without, 64))
    assert 0.005 < volume.mean() < 0.1
