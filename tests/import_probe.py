"""Running a snippet in a fresh interpreter: what an ``import`` loads can only be seen there (the
test process has long since loaded scipy, matplotlib and the rest)."""

import json
import subprocess
import sys
from pathlib import Path

import torch_sinr

REPO = Path(torch_sinr.__file__).resolve().parents[1]


def run_probe(code: str) -> dict:
    """Run ``code`` with this interpreter from the repository root; its last output line is JSON."""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
