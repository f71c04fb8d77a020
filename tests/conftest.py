from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data relative to the repo root (the project's real data sets)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}: clone the repo next to shared/")
    return SHARED_DATA


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models: intra-op threads only add overhead (and stall badly when the machine is busy).
    A module opts in with ``pytestmark = pytest.mark.usefixtures("single_thread")``; the thread
    count is restored after the module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _fresh_payload_cache():
    """Every test encodes from scratch: a payload cached by an earlier test would make a writer
    test compare the cache with itself."""
    from torch_sinr.format import model_io

    model_io.forget_payload()
    yield
