"""A/B: this checkout's rnnlab against another source tree, in one process, interleaved.

    git archive HEAD~1 src/rnnlab | tar -x -C /tmp/old      # the tree to compare with
    python benchmarks/ab.py /tmp/old/src GRU 100,64,256,256 --reps 9

Prints median ms of inference and of a training step for both trees. This machine's noise
is 10-50% between runs, so only an interleaved A/B like this one can judge a change.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def load(src):
    """Import the rnnlab package found under ``src``, as a fresh module."""
    for name in [m for m in sys.modules if m == "rnnlab" or m.startswith("rnnlab.")]:
        del sys.modules[name]
    sys.path.insert(0, str(src))
    try:
        import rnnlab
    finally:
        sys.path.pop(0)
    return rnnlab


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("other", help="a src directory holding another rnnlab package")
    p.add_argument("kind", choices=["RNN", "GRU", "LSTM"], help="layer class")
    p.add_argument("size", help="T,N,I,H")
    p.add_argument("--reps", type=int, default=7, help="interleaved repetitions")
    args = p.parse_args()
    T, N, I, H = (int(v) for v in args.size.split(","))
    here = load(Path(__file__).resolve().parent.parent / "src")
    other = load(args.other)
    x = np.random.default_rng(0).standard_normal((T, N, I)).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((T, N, H)).astype(np.float32)
    mods = {"this": getattr(here, args.kind)(I, H, seed=0),
            "other": getattr(other, args.kind)(I, H, seed=0)}
    for what in ("infer", "train"):
        times = {k: [] for k in mods}
        for _ in range(args.reps + 1):
            for k, m in mods.items():
                m.train(what == "train")             # inference in eval mode
                t0 = time.perf_counter()
                m(x)
                if what == "train":
                    m.backward(dy)
                times[k].append(time.perf_counter() - t0)
        print(f"{args.kind} {args.size} {what}: " + ", ".join(
            f"{k} {statistics.median(v[1:]) * 1e3:.1f} ms" for k, v in times.items()))


if __name__ == "__main__":
    main()
