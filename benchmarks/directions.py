"""Unrecorded bidirectional layers: the two directions at once (sequence/pair.py,
run_both, whatever the size) against one after the other, in one process,
alternated block by block; float32, numba required.

    python benchmarks/directions.py [--sizes 'lstm,100,1,128,128;gru,100,1,128,128']

Each size: kind, T, N, I, H (one bidirectional layer). Prints the median call in ms over
320 calls each way, and T * N * G*H * H, the work tuning.DIRECTIONS_MIN compares (the
default runs the directions at once only from there).
"""
import argparse
import time

import numpy as np

import rnnlab
from rnnlab.nn import make_layer
from rnnlab.sequence import kernels, pair
from rnnlab.tuning import DIRECTIONS_MIN

SIZES = ("lstm,20,1,128,128;lstm,100,1,64,64;lstm,50,16,32,32;gru,50,16,32,32;"
         "lstm,100,1,128,128;gru,100,1,128,128;rnn,100,1,256,256;lstm,100,4,128,128;"
         "lstm,100,8,64,64")


def alternated(m, x, blocks=16, calls=25):
    """Median ms per call each way: blocks of ``calls`` calls, the two settings
    alternated block by block (this machine's speed drifts by tens of percent over
    seconds), each after a 0.2 s pause (the one-after-the-other block's projections run
    on OpenBLAS's two threads, which then spin ~0.1 s and take the worker's core: without
    the pause this measures that, see BENCHMARKS.md), the first 5 calls not timed."""
    ts = {True: [], False: []}
    for i in range(2 * blocks):
        on = i % 2 == 0
        pair.DIRECTIONS_MIN = 0 if on else 1 << 62
        time.sleep(0.2)             # OpenBLAS's threads, spinning after the last block, sleep
        pair._state.update(cool=0.0, low=0)
        for j in range(calls):
            t0 = time.perf_counter()
            m(x)
            if j >= 5:
                ts[on].append(time.perf_counter() - t0)
    pair.DIRECTIONS_MIN = DIRECTIONS_MIN
    return np.median(ts[True]) * 1e3, np.median(ts[False]) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=SIZES)
    args = ap.parse_args()
    print("kind    T   N    I    H      work  at once (ms)  one after the other   x")
    for spec in args.sizes.split(";"):
        kind, *dims = spec.split(",")
        T, N, I, H = map(int, dims)
        m = make_layer(kind, I, H, seed=0, bidirectional=True).eval()
        kernels.warm(m.family)
        x = np.random.default_rng(0).standard_normal((T, N, I)).astype(np.float32)
        with rnnlab.no_grad():
            a, b = alternated(m, x)
        work = T * N * m.family.num_gates * H * H
        print(f"{kind:5s} {T:4d} {N:3d} {I:4d} {H:4d} {work:9d}  {a:12.3f}  {b:19.3f}  "
              f"{b / a:4.2f}")


if __name__ == "__main__":
    main()
