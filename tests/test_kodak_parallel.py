"""benchmarks.kodak_parallel fills the same caches as benchmarks.kodak compress, unit by unit."""

import json

import torch

from benchmarks import kodak
from benchmarks.kodak_parallel import main

BASELINE = ["uniform:bits=6", "uniform:bits=8", "uniform+ft:bits=8:lr=1e-4"]
EXTRA = ["sinr+ft:s=0.3:bits=8:lr=1e-3"]


def _caches(evals):
    return {p.name: json.loads(p.read_text()) for p in sorted(evals.glob("*.json"))}


def test_parallel_units_match_the_sequential_run(shared_data, tmp_path):
    common = ["--kodak", str(shared_data / "kodak"), "--images", "kodim07", "--configs", "1x20", "--steps", "15",
              "--downscale", "32", "--cache", str(tmp_path / "fits"), "--finetune-steps", "3", "--finetune-bits", "8"]
    variants = ["--baseline", *BASELINE, "--extra", *EXTRA]
    # Nothing starts before --stop-after: no fit, no cache, everything left for the next run.
    main([*common, "--evals", str(tmp_path / "none"), "--workers", "2", "--stop-after", "0", *variants])
    assert not (tmp_path / "fits").exists() and not list((tmp_path / "none").glob("*"))

    main([*common, "--evals", str(tmp_path / "parallel"), "--workers", "2", *variants])
    parallel = _caches(tmp_path / "parallel")
    # fixed methods, baseline variants, extra variants: the files and keys `compress` reads
    assert len(parallel) == 3
    assert {k for c in parallel.values() for k in c if "uniform" in k or "sinr" in k} == set(BASELINE + EXTRA)

    # The sequential benchmark at the workers' one thread, reusing the fit, computes the same points.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        kodak.main(["compress", *common, "--evals", str(tmp_path / "sequential"), "--out", str(tmp_path / "out"),
                    *variants])
    finally:
        torch.set_num_threads(threads)
    sequential = _caches(tmp_path / "sequential")
    assert sequential.keys() == parallel.keys()
    for name, cache in parallel.items():
        if "points" in cache:  # the fixed methods' entry: its timing and machine differ
            assert cache["points"] == sequential[name]["points"]
            assert cache["env"]["threads"] == 1
        else:
            assert cache == sequential[name]

    # A second run finds nothing missing.
    main([*common, "--evals", str(tmp_path / "parallel"), "--workers", "2", *variants])
    assert _caches(tmp_path / "parallel") == parallel
