import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")  # the [occupancy] extra

from torch_sinr.errors import SINRInputError
from torch_sinr.inr.occupancy.volume import occupancy_volume

from .shapes import grid_points, inside_ball, sphere


def agreement_away_from_surface(volume, analytic_inside, distance_to_surface, margin):
    """How many grid points farther than ``margin`` from the surface are classified wrong."""
    far = distance_to_surface > margin
    return int(np.count_nonzero((volume != analytic_inside) & far)), int(np.count_nonzero(far))


def test_sphere_volume_matches_the_analytic_ball_within_one_percent():
    radius, n = 0.7, 48
    vertices, faces = sphere(radius)
    volume = occupancy_volume(vertices, faces, n)
    ball = inside_ball(n, radius)
    assert abs(int(volume.sum()) - int(ball.sum())) / ball.sum() < 0.01
    assert (volume & ball).sum() / (volume | ball).sum() > 0.99


def test_box_on_grid_lines_is_exact_where_rays_hit_edges_and_vertices():
    # At 17^3 the grid has lines at +-0.5: every face, edge, vertex and face diagonal of the box
    # lies on grid columns, the case where a naive parity test double-counts or misses crossings.
    n = 17
    mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    volume = occupancy_volume(mesh.vertices, mesh.faces, n)
    x, y, z = grid_points(n)
    # distance to the nearest face plane: zero for every point on the box's surface
    distance = np.min(np.abs(np.stack([np.abs(x) - 0.5, np.abs(y) - 0.5, np.abs(z) - 0.5])), axis=0)
    inside = (np.abs(x) < 0.5) & (np.abs(y) < 0.5) & (np.abs(z) < 0.5)
    wrong, checked = agreement_away_from_surface(volume, inside, distance, 1e-9)
    assert checked == 15 ** 3 and wrong == 0
    assert volume.sum() >= 7 ** 3  # the inside is not empty


def test_octahedron_with_rays_through_its_vertices_is_exact():
    # The column x = y = 0 passes through the two apexes, where four triangles meet; columns on
    # the grid lines x = 0 or y = 0 run along the projections of edges.
    corners = np.array([[0.5, 0, 0], [-0.5, 0, 0], [0, 0.5, 0], [0, -0.5, 0], [0, 0, 0.5], [0, 0, -0.5]])
    faces = [[x, y, z] for x in (0, 1) for y in (2, 3) for z in (4, 5)]  # parity ignores the winding
    assert trimesh.Trimesh(corners, faces, process=False).is_watertight
    n = 17
    volume = occupancy_volume(corners, np.array(faces), n)
    x, y, z = grid_points(n)
    l1 = np.abs(x) + np.abs(y) + np.abs(z)
    wrong, checked = agreement_away_from_surface(volume, l1 < 0.5, np.abs(l1 - 0.5), 1e-9)
    assert wrong == 0 and checked > 4000
    apex_column = volume[8, 8]  # z = -1, -0.875, ..., 1; the apexes at z = -0.5 and 0.5 (indices 4, 12)
    assert apex_column[5:12].all() and not apex_column[:4].any() and not apex_column[13:].any()


def test_torus_is_classified_right_at_grid_points():
    major, minor, n = 0.6, 0.25, 40
    mesh = trimesh.creation.torus(major_radius=major, minor_radius=minor, major_sections=48, minor_sections=24)
    volume = occupancy_volume(mesh.vertices, mesh.faces, n)
    x, y, z = grid_points(n)
    tube = np.sqrt((np.sqrt(x * x + y * y) - major) ** 2 + z * z)
    # the polygonal tube lies up to minor (1 - cos(pi / 24)) = 0.002 inside the round one
    wrong, checked = agreement_away_from_surface(volume, tube < minor, np.abs(tube - minor), 0.01)
    assert wrong == 0 and checked > 60000
    assert not volume[n // 2, n // 2, n // 2]  # the hole in the middle is empty


def test_non_convex_annulus_is_classified_right_at_random_points():
    r_in, r_out, height = 0.3, 0.8, 0.6
    mesh = trimesh.creation.annulus(r_min=r_in, r_max=r_out, height=height, sections=64)
    n = 33
    volume = occupancy_volume(mesh.vertices, mesh.faces, n)
    x, y, z = grid_points(n)
    radial = np.sqrt(x * x + y * y)
    inside = (radial > r_in) & (radial < r_out) & (np.abs(z) < height / 2)
    distance = np.min(np.abs(np.stack([radial - r_in, radial - r_out, np.abs(z) - height / 2])), axis=0)
    rng = np.random.default_rng(0)
    sample = rng.choice(n ** 3, 5000, replace=False)
    wrong, checked = agreement_away_from_surface(volume.reshape(-1)[sample], inside.reshape(-1)[sample],
                                                 distance.reshape(-1)[sample], 0.01)
    assert wrong == 0 and checked > 4000


def test_two_sided_stray_triangle_changes_nothing_but_a_one_sided_one_does():
    # The Stanford Dragon file holds one zero-volume triangle with both windings. Here a large
    # one cuts through a sphere, crossing hundreds of grid columns.
    n = 32
    vertices, faces = sphere(0.7, subdivisions=3)
    stray = np.array([[-0.9, -0.9, 0.1], [0.9, -0.5, 0.2], [0.0, 0.9, -0.1]])
    base = len(vertices)
    with_stray = np.vstack([vertices, stray])
    both_windings = np.vstack([faces, [[base, base + 1, base + 2], [base, base + 2, base + 1]]])
    one_winding = np.vstack([faces, [[base, base + 1, base + 2]]])
    clean = occupancy_volume(vertices, faces, n)
    assert np.array_equal(occupancy_volume(with_stray, both_windings, n), clean)
    assert np.count_nonzero(occupancy_volume(with_stray, one_winding, n) != clean) > 1000


def test_chunking_does_not_change_the_volume():
    vertices, faces = sphere(0.6, subdivisions=2)
    whole = occupancy_volume(vertices, faces, 24)
    for chunk_pairs in (1, 7, 1000):
        assert np.array_equal(occupancy_volume(vertices, faces, 24, chunk_pairs=chunk_pairs), whole)


def test_three_axis_vote_repairs_a_small_hole():
    n, radius = 32, 0.7
    vertices, faces = sphere(radius, subdivisions=4)
    top = np.argsort(-vertices[faces][:, :, 2].min(axis=1))[:3]  # three faces around the north pole
    holed = np.delete(faces, top, axis=0)
    assert not trimesh.Trimesh(vertices, holed, process=False).is_watertight
    ball = inside_ball(n, radius)
    z_only = occupancy_volume(vertices, holed, n)
    voted = occupancy_volume(vertices, holed, n, axes=3)
    assert np.count_nonzero(z_only != ball) > 0  # the columns through the hole come out empty
    assert np.count_nonzero(voted != ball) < np.count_nonzero(z_only != ball)


def test_three_axis_vote_keeps_the_axes_in_place_on_a_closed_mesh():
    # a box of three different side lengths off the centre: any mix-up of axes would show
    mesh = trimesh.creation.box(extents=(0.4, 0.9, 1.3)).apply_translation([0.3, -0.05, 0.1])
    z_only = occupancy_volume(mesh.vertices, mesh.faces, 30)
    assert np.array_equal(occupancy_volume(mesh.vertices, mesh.faces, 30, axes=3), z_only)
    x, y, z = grid_points(30)  # no grid point on a face at this resolution
    assert np.array_equal(z_only, (np.abs(x - 0.3) < 0.2) & (np.abs(y + 0.05) < 0.45) & (np.abs(z - 0.1) < 0.65))


@pytest.mark.parametrize("resolution", [1, 0, 3.5, True, 5000, "64"])
def test_bad_resolution_is_refused(resolution):
    vertices, faces = sphere(0.5, subdivisions=1)
    with pytest.raises(SINRInputError, match="resolution must be an int"):
        occupancy_volume(vertices, faces, resolution)


def test_bad_meshes_and_settings_are_refused():
    vertices, faces = sphere(0.5, subdivisions=1)
    with pytest.raises(SINRInputError, match="face indices"):
        occupancy_volume(vertices, faces + len(vertices), 8)
    with pytest.raises(SINRInputError, match="NaN"):
        occupancy_volume(np.where(vertices > 0.4, np.nan, vertices), faces, 8)
    with pytest.raises(SINRInputError, match="no faces"):
        occupancy_volume(vertices, faces[:0], 8)
    with pytest.raises(SINRInputError, match=r"vertices \(V, 3\)"):
        occupancy_volume(vertices[:, :2], faces, 8)
    with pytest.raises(SINRInputError, match="axes must be"):
        occupancy_volume(vertices, faces, 8, axes=2)
