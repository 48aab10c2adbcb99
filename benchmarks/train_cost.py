"""What a training step costs beyond the recurrent layer, and how long the documented
``rnnlab train adding`` takes.

    python benchmarks/train_cost.py [--reps 12]

1. At (T, N, I, H) = (100, 64, 256, 256), float32: GRU forward + backward alone vs the
   same plus a Linear(256, 10) head on every step and cross-entropy (forward, loss,
   backward), interleaved in one process (each timed call after an untimed one of the
   same kind), medians over the repetitions after the first two.
2. ``rnnlab train adding --seq-len 50`` with its defaults, wall time in a fresh process.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import rnnlab
from rnnlab import losses


def head_overhead(reps):
    T, N, I, H, C = 100, 64, 256, 256, 10
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    y = rng.integers(0, C, T * N)
    dy = rng.standard_normal((T, N, H)).astype(np.float32)
    gru, head = rnnlab.GRU(I, H, seed=0), rnnlab.Linear(H, C, seed=0)

    def layer_only():
        gru(x)
        gru.backward(dy)

    def with_head():
        out, _ = gru(x)
        loss, d = losses.cross_entropy(head(out).reshape(-1, C), y)
        gru.backward(head.backward(d.reshape(T, N, C)))
    times = {"layer": [], "layer+head+loss": []}
    for _ in range(reps):
        for name, f in (("layer", layer_only), ("layer+head+loss", with_head)):
            f()
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v[2:]) * 1e3 for k, v in times.items()}
    spread = {k: (min(v[2:]) * 1e3, max(v[2:]) * 1e3) for k, v in times.items()}
    for k in med:
        print(f"{k:16s} {med[k]:7.1f} ms (min {spread[k][0]:.1f}, max {spread[k][1]:.1f})")
    print(f"head + loss overhead: {100 * (med['layer+head+loss'] / med['layer'] - 1):.1f}%")


def train_adding():
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "rnnlab", "train", "adding", "--seq-len",
                              "50", "--out", d], capture_output=True, text=True, check=True)
        print(f"rnnlab train adding --seq-len 50: {time.perf_counter() - t0:.1f} s wall; "
              + res.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=12)
    args = p.parse_args()
    head_overhead(args.reps)
    train_adding()
