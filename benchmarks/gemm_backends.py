"""Other GEMM back ends against NumPy's OpenBLAS, one thread each, float32, one process.

    pip install blis scipy-openblas32       # either or both; absent ones are skipped
    python benchmarks/gemm_backends.py [--rounds 3]

The products are the ones rnnlab's LSTM rows spend their time in: per-step products of a
half of the units ((N, H) x (H, 2H)), each half's input projection, and a few-row
product. For each: the best of ``--rounds`` medians, GFLOP/s, and the largest relative
difference from NumPy's result. ``blis`` is the wheel spaCy uses (blis.py.gemm);
``scipy-openblas32`` a newer OpenBLAS build than NumPy's, called through ctypes.
"""
import argparse
import ctypes
import os

import numpy as np
from threadpoolctl import threadpool_limits

from lstm_breakdown import median_ms       # this directory's (run as a script)

SHAPES = [(2, 256, 1024), (8, 256, 512), (16, 128, 512), (64, 256, 512), (64, 256, 1024),
          (128, 512, 1024), (1024, 256, 512), (6400, 256, 512)]


def _blis():
    try:
        import blis.py
    except ImportError:
        return None
    return lambda a, b, out: blis.py.gemm(a, b, out=out, beta=0.0)


def _newer_openblas():
    try:
        import scipy_openblas32 as s
    except ImportError:
        return None
    lib = ctypes.CDLL(os.path.join(s.get_lib_dir(), f"lib{s.get_library()}.so"))
    prefix = s.get_library().replace("openblas", "")        # "scipy_"
    getattr(lib, f"{prefix}openblas_set_num_threads")(1)
    fn = getattr(lib, f"{prefix}cblas_sgemm")
    i, p, f = ctypes.c_int, ctypes.c_void_p, ctypes.c_float
    fn.argtypes = [i, i, i, i, i, i, f, p, i, p, i, f, p, i]
    config = getattr(lib, f"{prefix}openblas_get_config")
    config.restype = ctypes.c_char_p
    print("scipy-openblas32:", config().decode())

    def gemm(a, b, out):
        (M, K), N = a.shape, b.shape[1]
        fn(101, 111, 111, M, N, K, 1.0, a.ctypes.data, K, b.ctypes.data, N, 0.0,
           out.ctypes.data, N)
    return gemm


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    threadpool_limits(1)
    others = {k: v for k, v in (("blis", _blis()), ("openblas-newer", _newer_openblas()))
              if v is not None}
    if not others:
        print("neither blis nor scipy-openblas32 is installed: nothing to compare")
    rng = np.random.default_rng(0)
    for M, K, N in SHAPES:
        x = rng.standard_normal((M, K)).astype(np.float32)
        w = rng.standard_normal((K, N)).astype(np.float32)
        ref = x @ w
        reps = max(5, min(2000, int(2e8 / (M * K * N))))
        flop = 2 * M * K * N / 1e9
        fns = {"numpy": lambda out: np.matmul(x, w, out=out)}
        fns.update({k: (lambda out, g=g: g(x, w, out)) for k, g in others.items()})
        line = f"({M}, {K}) x ({K}, {N}):"
        for name, fn in fns.items():
            out = np.empty_like(ref)
            best = min(median_ms(lambda: fn(out), reps) for _ in range(a.rounds)) / 1e3
            err = float(np.abs(out - ref).max() / np.abs(ref).max())
            line += f"  {name} {best * 1e6:.1f} us {flop / best:.0f} GF/s ({err:.0e})"
        print(line)


if __name__ == "__main__":
    main()
