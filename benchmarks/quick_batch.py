"""The shorter path for a batch (nn/quick.py, sequence/pair_call.BatchCall) against the
general path, in one process: unrecorded calls of one float32 layer on one batch,
the two paths alternated in blocks (the general path by quick.forward declining),
warm-up excluded; prints the medians of the blocks' medians (us) and the quartiles of
general / quick per block.

    python benchmarks/quick_batch.py [T,N,I,H] [RNN|GRU|LSTM] [--blocks 30]
"""
import argparse

import numpy as np

import rnnlab
from lstm_breakdown import median_ms
from rnnlab.nn import quick


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shape", nargs="?", default="50,16,32,32", help="T,N,I,H")
    ap.add_argument("kind", nargs="?", default="LSTM", choices=["RNN", "GRU", "LSTM"])
    ap.add_argument("--blocks", type=int, default=30)
    a = ap.parse_args()
    T, N, I, H = (int(v) for v in a.shape.split(","))
    rnnlab.set_num_threads(2)
    m = getattr(rnnlab, a.kind)(I, H, seed=0).eval()
    x = np.random.default_rng(0).standard_normal((T, N, I)).astype(np.float32)
    real = quick.forward
    m(x)
    call = m.__dict__.get("_quick")
    taken = "none" if call is None else type(call.call).__name__
    reps = max(20, int(2e5 / (T * N * H * H * 4 / 1e3 + 100)))
    rows = []
    try:
        for _ in range(a.blocks):
            med = []
            for f in ((lambda *args: None), real):
                quick.forward = f
                for _ in range(10):
                    m(x)
                med.append(median_ms(lambda: m(x), reps))
            rows.append(med)
    finally:
        quick.forward = real
    r = np.array(rows) * 1e3
    q = np.percentile(r[:, 0] / r[:, 1], [25, 50, 75])
    print(f"{a.kind} ({T}, {N}, {I}, {H}) plan: {taken}; general {np.median(r[:, 0]):.1f} us,"
          f" quick {np.median(r[:, 1]):.1f} us; general / quick {q[1]:.3f} "
          f"({q[0]:.3f}-{q[2]:.3f}), {a.blocks} blocks of {reps} calls")


if __name__ == "__main__":
    main()
