"""A training call (forward + backward) with a batch's rows in halves (halves.py) and
without, alternated in one process: `python benchmarks/train_halves.py KIND T,N,I,H`.
Prints the median of 60 calls each way, three times."""
import sys
import time

import numpy as np

import rnnlab
from rnnlab.sequence import pair

kind, size = sys.argv[1], sys.argv[2]
T, N, I, H = map(int, size.split(","))
m = getattr(rnnlab, kind.upper())(I, H, dtype=np.float32).train()
x = np.random.default_rng(0).standard_normal((T, N, I)).astype(np.float32)
g = np.random.default_rng(1).standard_normal((T, N, H)).astype(np.float32)


def run():
    m(x)
    m.backward(g)


for _ in range(3):
    for label, least in (("whole", 1 << 62), ("halves", 0)):
        pair.ROWS_SPLIT_MIN = least
        for _ in range(5):
            run()
        times = []
        for _ in range(60):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        print(f"{kind} {size} {label} {1e3 * np.median(times):.3f} ms", end="   ")
    print()
