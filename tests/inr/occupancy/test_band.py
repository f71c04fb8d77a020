import numpy as np

from torch_sinr.inr.occupancy.band import surface_band


def test_surface_band_of_one_voxel():
    volume = np.zeros((7, 7, 7), dtype=bool)
    volume[3, 3, 3] = True
    assert surface_band(volume, 1).sum() == 7  # the voxel and its 6 neighbours
    assert surface_band(volume, 2).sum() == 25  # and everything within one more step


def test_surface_band_of_a_half_space_is_the_two_layers_at_the_cut():
    volume = np.zeros((6, 6, 6), dtype=bool)
    volume[:3] = True
    band = surface_band(volume, 1)
    assert band[2:4].all() and not band[:2].any() and not band[4:].any()
