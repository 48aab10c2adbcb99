"""The compiled BPTT loop alone (SEQUENCE_BACK), us per step, after a recording forward.

    python benchmarks/bptt_loop.py lstm 100 16 128          # KIND T N H

Run it from two trees (PYTHONPATH=OTHER/src for the other), alternating, to compare a
change to the loop; the median of 30 calls after one untimed call.
"""
import sys
import time

import numpy as np

import rnnlab.cells as C
from rnnlab.sequence.kernels import kernel_for


def main():
    kind = sys.argv[1]
    T, N, H = map(int, sys.argv[2:5])
    fam = C.by_kind(kind)
    G, f = fam.num_gates, np.float32
    rng = np.random.default_rng(0)
    forward = kernel_for(fam, f, N, G * H, H, False)
    back = kernel_for(fam, f, N, G * H, H, False, backward=True)
    if forward is None or back is None:
        raise SystemExit("no compiled loop for this size (or numba is not installed)")
    w = (rng.standard_normal((G * H, H)) * 0.05).astype(f)
    gx = rng.standard_normal((T, N, G * H)).astype(f)
    h0, c0 = np.zeros((N, H), f), np.zeros((N, H), f)
    store = np.empty((T, N, fam.store * H), f)
    out, c_n = np.empty((T, N, H), f), np.empty((N, H), f)
    FH = fam.fold * H
    forward(gx, np.ascontiguousarray(w.T), np.zeros(G * H, f), np.zeros(G * H - FH, f), h0,
            c0, False, out, c_n, False, store, True, 0, N)
    dout = rng.standard_normal((T, N, H)).astype(f)
    dgx = np.empty((T, N, G * H), f)
    dgr = np.empty((T, N, G * H - FH) if FH < G * H else (1, 1, 1), f)

    def run():
        dh, dc = np.zeros((N, H), f), np.zeros((N, H), f)
        t0 = time.perf_counter()
        back(dout, True, dh, dc, gx, store, h0, c0, out, w, False, dgx, dgr, 0, N)
        return time.perf_counter() - t0
    run()
    print(f"{kind} T={T} N={N} H={H}: BPTT loop "
          f"{np.median([run() for _ in range(30)]) / T * 1e6:.1f} us per step")


if __name__ == "__main__":
    main()
