"""``import torch_sinr.inr.occupancy`` stays lean: mesh, image and plotting libraries load on use."""

from ...import_probe import run_probe

HEAVY = ("trimesh", "skimage", "matplotlib", "scipy")

_PROBE = """
import json, sys
import torch_sinr
plain = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
occupancy_loaded = "torch_sinr.inr.occupancy" in sys.modules
import torch_sinr.inr.occupancy
print(json.dumps({{"plain": plain, "occupancy_loaded": occupancy_loaded,
                   "occupancy": sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))}}))
"""


def test_occupancy_imports_no_mesh_image_or_plot_library():
    probe = run_probe(_PROBE.format(heavy=HEAVY))
    assert probe == {"plain": [], "occupancy_loaded": False, "occupancy": []}
