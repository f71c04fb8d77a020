"""Times scikit-learn's ``orthogonal_mp`` on a problem saved by ``benchmarks/core.py``.

Run by another interpreter (one with a current numpy and scikit-learn; torch is not needed):

    PYTHON benchmarks/sklearn_worker.py PROBLEM_DIR REPEATS

PROBLEM_DIR holds dictionary.npy (k1, k2 float64), signals.npy (k1, B float64) and problem.json
({"s": ...}). Writes coef_precompute_{False,True}.npy (k2, B) and sklearn.json: versions, the
BLAS/OpenMP libraries threadpoolctl finds (with their kernels), and the timings of each mode.
precompute=True is skipped where its Gram matrix would not fit (``--gram-limit`` bytes).
"""

from __future__ import annotations

import json
import platform
import resource
import sys
import time
from pathlib import Path

GRAM_LIMIT_BYTES = 2 * 2**30


def main() -> None:
    import numpy as np
    import scipy
    import sklearn
    from sklearn.linear_model import orthogonal_mp
    from threadpoolctl import threadpool_info

    folder, repeats = Path(sys.argv[1]), int(sys.argv[2])
    a = np.load(folder / "dictionary.npy", allow_pickle=False)
    y = np.load(folder / "signals.npy", allow_pickle=False)
    s = json.loads((folder / "problem.json").read_text())["s"]
    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "threadpools": threadpool_info(),
        "modes": {},
    }
    for precompute in (False, True):
        if precompute and 8 * a.shape[1] ** 2 > GRAM_LIMIT_BYTES:
            out["modes"][f"precompute={precompute}"] = {"skipped": f"Gram matrix of {a.shape[1]} atoms over "
                                                                   f"{GRAM_LIMIT_BYTES} bytes"}
            continue
        orthogonal_mp(a, y[:, :4], n_nonzero_coefs=s, precompute=precompute)  # warm-up
        times, cpu, coef = [], [], None
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            coef = orthogonal_mp(a, y, n_nonzero_coefs=s, precompute=precompute)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        np.save(folder / f"coef_precompute_{precompute}.npy", np.ascontiguousarray(coef))
        out["modes"][f"precompute={precompute}"] = {"times_s": times, "cpu_s": cpu}
    out["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (folder / "sklearn.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
