import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")  # the [occupancy] extra

from torch_sinr.errors import SINRFormatError, SINRInputError
from torch_sinr.inr.occupancy.store import cache_path, mesh_volume, read_volume, volume_key


@pytest.fixture
def ball_file(tmp_path):
    path = tmp_path / "ball.ply"
    trimesh.creation.icosphere(subdivisions=2, radius=5.0).apply_translation([100.0, 0.0, 0.0]).export(path)
    return path


def test_volume_is_cached_and_read_back_exactly(tmp_path, ball_file):
    cache = tmp_path / "cache"
    first = mesh_volume(ball_file, 20, cache_dir=cache)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith("ball-20-")
    again = mesh_volume(ball_file, 20, cache_dir=cache)
    assert np.array_equal(again.occupancy, first.occupancy) and again.occupancy.dtype == bool
    assert again.seconds == first.seconds  # read from the file, not recomputed
    assert again.key == first.key and again.normalization == first.normalization
    np.testing.assert_allclose(first.normalization.center, [100.0, 0.0, 0.0], atol=1e-6)
    assert 0.2 < first.fraction_inside < 0.5


def test_key_changes_with_resolution_and_mesh_bytes(tmp_path, ball_file):
    k20, k21 = volume_key(ball_file, 20), volume_key(ball_file, 21)
    assert cache_path(tmp_path, k20) != cache_path(tmp_path, k21)
    other = tmp_path / "other" / "ball.ply"
    other.parent.mkdir()
    trimesh.creation.icosphere(subdivisions=2, radius=4.0).export(other)
    assert cache_path(tmp_path, volume_key(other, 20)) != cache_path(tmp_path, k20)
    mesh_volume(ball_file, 20, cache_dir=tmp_path / "c")
    mesh_volume(ball_file, 21, cache_dir=tmp_path / "c")
    assert len(list((tmp_path / "c").glob("*.npz"))) == 2


def test_no_cache_writes_nothing(tmp_path, ball_file):
    volume = mesh_volume(ball_file, 12, cache_dir=tmp_path / "c", use_cache=False)
    assert volume.resolution == 12 and not (tmp_path / "c").exists()


def test_corrupt_and_pickled_files_are_refused(tmp_path, ball_file):
    mesh_volume(ball_file, 12, cache_dir=tmp_path)
    path = next(tmp_path.glob("*.npz"))
    with open(tmp_path / "pickled.npz", "wb") as f:
        np.savez(f, bits=np.array([{"a": 1}], dtype=object), meta=np.array("{}"))
    with pytest.raises(SINRFormatError, match="not an occupancy volume"):
        read_volume(tmp_path / "pickled.npz")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(SINRFormatError, match="not an occupancy volume"):
        read_volume(path)


def test_missing_mesh_and_bad_resolution(tmp_path):
    with pytest.raises(SINRInputError, match="mesh file not found"):
        mesh_volume(tmp_path / "lucy.obj", 64, cache_dir=tmp_path)
    with pytest.raises(SINRInputError, match="resolution"):
        mesh_volume(tmp_path / "lucy.obj", 1, cache_dir=tmp_path)
