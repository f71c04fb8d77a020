"""``import torch_sinr.occupancy`` stays lean: mesh, image and plotting libraries load on use."""

import json
import subprocess
import sys
from pathlib import Path

import torch_sinr

HEAVY = ("trimesh", "skimage", "matplotlib", "scipy")

_PROBE = """
import json, sys
import torch_sinr
plain = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
occupancy_loaded = "torch_sinr.occupancy" in sys.modules
import torch_sinr.occupancy
print(json.dumps({{"plain": plain, "occupancy_loaded": occupancy_loaded,
                   "occupancy": sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))}}))
"""


def test_occupancy_imports_no_mesh_image_or_plot_library():
    root = Path(torch_sinr.__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY)], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe == {"plain": [], "occupancy_loaded": False, "occupancy": []}
