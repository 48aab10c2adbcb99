"""The compiled loops' float32 sigmoid and tanh (sequence/_compiled.py), alone and as an
LSTM unit uses them (three sigmoids, two tanh), in loops LLVM vectorises: ns per element
or unit, best of --rounds, one process.

    python benchmarks/primitives.py --hidden 32

To compare two trees, alternate fresh processes, the other tree by PYTHONPATH (its
primitives compile in that process; nothing is read from the kernels' cache):

    git archive HEAD~1 src/rnnlab | tar -x -C /tmp/old
    for i in 1 2 3; do python benchmarks/primitives.py
                       PYTHONPATH=/tmp/old/src python benchmarks/primitives.py; done
"""
import argparse
import time

import numpy as np


def lstm_units(**opts):
    """An njit loop ``units(A, c, u, reps)``: the LSTM unit as the compiled loops compute
    it (three sigmoids, two tanh) for every unit of every row of A (R, 4H) and c (R, H),
    c' and h' into u (R, 2H), reps times; written out, so that LLVM vectorises it (a unit
    function called from a shared loop is not: ~30 ns a unit). lstm_breakdown.py times
    the units with it too."""
    from numba import njit
    from rnnlab.sequence import _compiled as C
    sig, tanh = C._sigmoid, C._tanh

    @njit(**opts)
    def units(A, c, u, reps):
        R, H = c.shape
        for _ in range(reps):
            for n in range(R):
                a, cp, un = A[n], c[n], u[n]
                for j in range(H):
                    i, f = sig(a[j]), sig(a[H + j])
                    g, o = tanh(a[2 * H + j]), sig(a[3 * H + j])
                    cn = f * cp[j] + i * g
                    un[j], un[H + j] = cn, o * tanh(cn)
    return units


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=32, help="units per row (H)")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    try:
        from numba import njit
        from rnnlab.sequence import _compiled as C
    except ImportError:
        raise SystemExit("needs numba (pip install 'rnnlab[fast]')")
    sig, tanh = C._sigmoid, C._tanh
    opts = dict(error_model="numpy", fastmath={"contract"})

    @njit(**opts)
    def apply(x, out, reps, which):
        for _ in range(reps):
            for i in range(x.size):
                out[i] = sig(x[i]) if which == 0 else tanh(x[i])

    units = lstm_units(**opts)

    rng = np.random.default_rng(0)
    f32 = np.float32
    x = (rng.standard_normal(4096) * 4).astype(f32)
    out = np.empty_like(x)
    H, R = a.hidden, a.rows
    A = (rng.standard_normal((R, 4 * H)) * 3).astype(f32)
    c = rng.standard_normal((R, H)).astype(f32)
    u = np.empty((R, 2 * H), f32)
    apply(x, out, 1, 0), apply(x, out, 1, 1), units(A, c, u, 1)

    def best(fn, per):
        times = []
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times) / per * 1e9

    reps = 2000
    ureps = max(1, 640000 // (R * H))
    print(f"sigmoid {best(lambda: apply(x, out, reps, 0), reps * x.size):.3f} ns/element  "
          f"tanh {best(lambda: apply(x, out, reps, 1), reps * x.size):.3f}  "
          f"LSTM unit (H {H}, {R} rows) {best(lambda: units(A, c, u, ureps), ureps * R * H):.2f}"
          f" ns/unit  ({C.__file__})")


if __name__ == "__main__":
    main()
