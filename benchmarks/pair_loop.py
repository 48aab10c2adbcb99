"""The pair's batch-1 loop alone (_loops.SEQUENCE_PAIR: both projections made, no Python
between the steps), two threads, one process: us per step.

    python benchmarks/pair_loop.py LSTM 512 --steps 1000 --calls 20

Each call runs `pair.loop` for thread 1 in a Python thread and for thread 0 here, as the
queue's path does; prints the median call's time divided by the steps, and the share of
steps' halves the second thread took (0.50: each thread its own half every step). To
compare two trees, alternate fresh processes, the other tree by PYTHONPATH:

    git archive HEAD~1 src/rnnlab | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src rnnlab warmup
    for i in 1 2 3; do python benchmarks/pair_loop.py LSTM 512
                       PYTHONPATH=/tmp/old/src python benchmarks/pair_loop.py LSTM 512; done
"""
import argparse
import inspect
import statistics
import threading
import time

import numpy as np

from rnnlab.cells import by_kind
from rnnlab.sequence import pair
from rnnlab.sequence.linalg import half_units

#: pair.loop's last arguments, batch 1 (dot products): wt0, wt1 empty (before 2026-12-06
#: a third, the sgemm address, 0; kept so that older trees can be compared)
TAIL = ((pair.NO_WT, pair.NO_WT) if "x2d" in inspect.signature(pair.loop).parameters
        else (pair.NO_WT, pair.NO_WT, 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", help="RNN, GRU or LSTM")
    ap.add_argument("hidden", type=int)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=20)
    a = ap.parse_args()
    fam = by_kind(a.kind.lower())
    k = pair.pair_kernel(fam)
    if k is None:
        raise SystemExit("no compiled pair kernel here (pip install 'rnnlab[fast]')")
    T, H, G, f32 = a.steps, a.hidden, fam.num_gates, np.float32
    rng = np.random.default_rng(0)
    w_hh = (rng.standard_normal((G * H, H)) * 0.05).astype(f32)
    bias, b_rest = np.zeros(G * H, f32), np.zeros(G * H - fam.fold * H, f32)
    h0, c0 = np.zeros((1, H), f32), np.zeros((1, H), f32)
    gx = [rng.standard_normal((T, G * (hi - lo))).astype(f32)
          for lo, hi in (half_units(H, 0), half_units(H, 1))]
    out, c_n = np.empty((T, 1, H), f32), np.empty((1, H), f32)

    def call():
        sync = np.zeros(3 * T + 4, np.int64)
        sync[3 * T] = sync[3 * T + 3] = 1                # both projections ready
        args = (k, *gx, w_hh, bias, b_rest, h0, c0, False, out, c_n, sync)
        other = threading.Thread(target=pair.loop, args=args + (1, *TAIL))
        other.start()
        pair.loop(*args, 0, *TAIL)
        other.join()
        return sync
    for _ in range(5):
        call()
    times = []
    for _ in range(a.calls):
        t0 = time.perf_counter()
        sync = call()
        times.append(time.perf_counter() - t0)
    taken = float(np.mean(sync[:2 * T] == 2))
    print(f"{a.kind} H {H}: {statistics.median(times) / T * 1e6:.2f} us a step "
          f"(second thread's share {taken:.2f})")


if __name__ == "__main__":
    main()
