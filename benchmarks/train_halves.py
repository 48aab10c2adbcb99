"""A training call (forward + backward) with a batch's rows in halves (halves.py) and
without, each in its own fresh process, alternated:
`python benchmarks/train_halves.py KIND T,N,I,H [--rounds 4]`. Prints each way's median
over the rounds of each process's median of 40 calls (after 5 untimed), and the spread.
Not in one process: the products of the calls without halves leave OpenBLAS's second
thread spinning, which then takes the worker's core (halves.py), so the two ways would
measure each other."""
import argparse
import subprocess
import sys

CHILD = """
import sys, time, numpy as np, rnnlab
from rnnlab.sequence import pair
kind, size, halves = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
T, N, I, H = map(int, size.split(","))
if not halves:
    pair.ROWS_SPLIT_MIN = 1 << 62
m = getattr(rnnlab, kind.upper())(I, H, dtype=np.float32).train()
x = np.random.default_rng(0).standard_normal((T, N, I)).astype(np.float32)
g = np.random.default_rng(1).standard_normal((T, N, H)).astype(np.float32)
times = []
for i in range(45):
    t0 = time.perf_counter()
    m(x)
    m.backward(g)
    times.append(time.perf_counter() - t0)
print(1e3 * float(np.median(times[5:])))
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kind")
    p.add_argument("size")
    p.add_argument("--rounds", type=int, default=4)
    a = p.parse_args()
    got = {"whole": [], "halves": []}
    for _ in range(a.rounds):
        for way in got:
            out = subprocess.run([sys.executable, "-c", CHILD, a.kind, a.size,
                                  "1" if way == "halves" else "0"],
                                 capture_output=True, text=True, check=True).stdout
            got[way].append(float(out.split()[-1]))
    line = [f"{a.kind} {a.size} training:"]
    for way, times in got.items():
        times.sort()
        line.append(f"{way} {times[len(times) // 2]:.2f} ms ({times[0]:.2f}-{times[-1]:.2f})")
    print("  ".join(line))


if __name__ == "__main__":
    main()
