"""A/B: this checkout's rnnlab against another source tree, alternated in fresh processes.

    git archive HEAD~1 src/rnnlab | tar -x -C /tmp/old      # the tree to compare with
    python benchmarks/ab.py /tmp/old/src GRU 100,64,256,256 --reps 9
    python benchmarks/ab.py /tmp/old/src LSTM 50,16,32,32 --reps 5 --calls 200 --warm 0.3 --infer

Each repetition runs one fresh process per tree (the order alternates), each timing
inference (eval mode) and a training step (forward + backward; --zero-grad: zero_grad()
first; --infer: inference alone) as the median of --calls calls after one untimed call
(--warm S: untimed calls for S seconds first, as rnnlab bench's 0.3 s). Prints, per tree, the
median of those medians and their range. Two trees cannot share one process: rnnlab imports some modules at first use,
and a second copy under the same name would answer them. This machine's noise is
10-50% between runs, so only an alternated A/B like this one can judge a change.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = """
import json, statistics, sys, time
import numpy as np
import rnnlab
kind, (T, N, I, H), calls = sys.argv[1], map(int, sys.argv[2].split(",")), int(sys.argv[3])
zero = sys.argv[4] == "1"
warm, whats = float(sys.argv[5]), sys.argv[6].split(",")
x = np.random.default_rng(0).standard_normal((T, N, I)).astype(np.float32)
dy = np.random.default_rng(1).standard_normal((T, N, H)).astype(np.float32)
m = getattr(rnnlab, kind)(I, H, seed=0)
out = {}
for what in whats:
    m.train(what == "train")
    t_end = time.perf_counter() + warm
    while time.perf_counter() < t_end:
        m(x)
        if what == "train":
            m.backward(dy)
    times = []
    for _ in range(calls + 1):
        t0 = time.perf_counter()
        if zero and what == "train":
            m.zero_grad()
        m(x)
        if what == "train":
            m.backward(dy)
        times.append(time.perf_counter() - t0)
    out[what] = statistics.median(times[1:])
print(json.dumps(out))
"""


def run(src, kind, size, calls, zero=False, warm=0.0, whats=("infer", "train")):
    """{"infer": s, "train": s} measured in a fresh process importing rnnlab from src."""
    env = dict(os.environ, PYTHONPATH=str(src))
    r = subprocess.run([sys.executable, "-c", _CHILD, kind, size, str(calls), str(int(zero)),
                        str(warm), ",".join(whats)], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"the process for {src} failed: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("other", help="a src directory holding another rnnlab package")
    p.add_argument("kind", choices=["RNN", "GRU", "LSTM"], help="layer class")
    p.add_argument("size", help="T,N,I,H")
    p.add_argument("--reps", type=int, default=7, help="alternated pairs of processes")
    p.add_argument("--calls", type=int, default=9, help="timed calls per process")
    p.add_argument("--zero-grad", action="store_true",
                   help="zero_grad() before each training call, as an optimizer loop "
                        "(default: the gradients accumulate, as rnnlab bench's)")
    p.add_argument("--warm", type=float, default=0.0,
                   help="seconds of untimed calls before the timed ones (default 0)")
    p.add_argument("--infer", action="store_true", help="time inference alone")
    args = p.parse_args()
    whats = ("infer",) if args.infer else ("infer", "train")
    trees = {"this": Path(__file__).resolve().parent.parent / "src",
             "other": Path(args.other).resolve()}
    got = {k: [] for k in trees}
    for rep in range(args.reps):
        for k in (("this", "other") if rep % 2 == 0 else ("other", "this")):
            got[k].append(run(trees[k], args.kind, args.size, args.calls, args.zero_grad,
                              args.warm, whats))
    for what in whats:
        print(f"{args.kind} {args.size} {what}: " + ", ".join(
            f"{k} {statistics.median(r[what] for r in v) * 1e3:.2f} ms "
            f"({min(r[what] for r in v) * 1e3:.2f}-{max(r[what] for r in v) * 1e3:.2f})"
            for k, v in got.items()))


if __name__ == "__main__":
    main()
