"""torch_sinr.native: the kernels build where a compiler is, and everything else is refused cleanly."""

from __future__ import annotations

import pytest

from torch_sinr import native


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty build cache and no loaded library, restored afterwards."""
    monkeypatch.setenv("TORCH_SINR_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native, "_why", {})
    return tmp_path


def test_builds_into_the_cache_and_loads_once(fresh):
    if native._compiler() is None:
        pytest.skip("no C++ compiler on this machine: the pure-torch paths are used")
    lib = native.load("hashgrid")
    assert lib is not None, native.why_not("hashgrid")
    built = list((fresh / "native").glob("hashgrid-*.so"))
    assert len(built) == 1
    assert native.load("hashgrid") is lib  # not rebuilt, not reloaded
    assert native.why_not("hashgrid") is None


def test_switched_off_by_the_environment(fresh, monkeypatch):
    monkeypatch.setenv("TORCH_SINR_NATIVE", "0")
    assert native.load("hashgrid") is None
    assert native.why_not("hashgrid") == "TORCH_SINR_NATIVE=0"
    assert not list(fresh.rglob("*.so"))


def test_a_failing_compiler_gives_none_and_its_message(fresh, monkeypatch):
    monkeypatch.setenv("CXX", "false")  # a "compiler" that exits 1
    assert native.load("hashgrid") is None
    assert "false failed on hashgrid.cpp" in native.why_not("hashgrid")
    assert not list(fresh.rglob("*.so"))  # nothing half-written is left to be loaded later


def test_the_build_is_keyed_by_its_source(fresh, monkeypatch, tmp_path_factory):
    if native._compiler() is None:
        pytest.skip("no C++ compiler on this machine")
    native.load("hashgrid")
    sources = tmp_path_factory.mktemp("src")
    (sources / "hashgrid.cpp").write_text((native._SOURCES / "hashgrid.cpp").read_text() + "\n// changed\n")
    monkeypatch.setattr(native, "_SOURCES", sources)
    monkeypatch.setattr(native, "_loaded", {})
    assert native.load("hashgrid") is not None
    assert len(list((fresh / "native").glob("hashgrid-*.so"))) == 2
