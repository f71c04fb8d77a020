"""What ``import torch_sinr`` costs, and what it offers.

The import is measured in a fresh interpreter: this test process has long since loaded scipy
(basis pursuit, scikit-learn) and cannot tell what torch_sinr itself pulls in.
"""

import torch_sinr

from .import_probe import run_probe

# Heavy packages only optional paths need: scipy for the basis-pursuit coder, matplotlib for
# benchmark plots, scikit-learn for the OMP reference in the tests.
HEAVY = ("scipy", "matplotlib", "sklearn")

_PROBE = """
import json, sys, time
heavy = {heavy!r}
def loaded():
    return sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))
t0 = time.perf_counter()
import torch_sinr
seconds = time.perf_counter() - t0
after_package = loaded()
import torch_sinr.cli  # the console script: the demo (Pillow, images) loads only when run
print(json.dumps({{"seconds": seconds, "package": after_package, "cli": loaded(),
                   "cli_images": "torch_sinr.inr.images" in sys.modules}}))
"""


def test_import_loads_no_scipy_or_matplotlib():
    probe = run_probe(_PROBE.format(heavy=HEAVY))
    print(f"import torch_sinr: {probe['seconds']:.2f} s (torch included)")
    assert probe["package"] == [], f"import torch_sinr loaded {probe['package']}"
    assert probe["cli"] == [], f"import torch_sinr.cli loaded {probe['cli']}"
    assert not probe["cli_images"], "the CLI should import the demo (and Pillow) only for `torch-sinr demo`"


def test_file_functions_are_exported_at_top_level():
    from torch_sinr import format as serialization

    for name in ("save_compressed", "load_compressed", "decode_state_dict", "read_compressed"):
        assert getattr(torch_sinr, name) is getattr(serialization, name)
        assert name in torch_sinr.__all__
    assert set(torch_sinr.__all__) <= set(dir(torch_sinr))
