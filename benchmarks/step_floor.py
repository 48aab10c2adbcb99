"""Batch-1 steps against the weight-bandwidth floor, with each framework's default settings.

    python benchmarks/step_floor.py [--kinds rnn,gru,lstm] [--hidden 64,128,256]
                                    [--layers 1,2] [--rounds 1]

A batch-1 step reads every weight once (W_ih and W_hh of every layer: 4 * G * H * (I + H)
bytes per layer, I = H here), so it cannot take less than those bytes over the read
bandwidth of the cache level they live in. The bandwidth is measured here, one core, with
BLAS's sdot (threadpoolctl: 1 thread) over float32 arrays of each working-set size,
repeated (the best of 7 medians); the one-core floor is bytes / bandwidth(bytes), the
two-core floor (the weights split over both cores' caches, no synchronisation cost)
(bytes / 2) / bandwidth(bytes / 2). Then the step is timed as rnnlab bench times it (a
fresh process per framework and configuration, 200 warm-up steps, the median of 1500),
with every framework left at its defaults: no thread setting at all (rnnlab: layer.step and
layer.freeze().step; OpenBLAS then uses its default threads for the products it splits;
onnxruntime: its default intra-op threads, one per core).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def bandwidth(nbytes, reps=7):
    """One core's read bandwidth (bytes/s) over a float32 working set of nbytes."""
    from threadpoolctl import threadpool_limits
    n = max(1024, nbytes // 8)                       # two vectors of nbytes / 2 each
    a, b = np.ones(n, np.float32), np.ones(n, np.float32)
    inner = max(1, int(2e8 // max(nbytes, 1)))       # ~0.2 GB read per timing
    best = 0.0
    with threadpool_limits(1):
        np.dot(a, b)
        for _ in range(reps):
            ts = []
            for _ in range(5):
                t = time.perf_counter()
                for _ in range(inner):
                    np.dot(a, b)
                ts.append((time.perf_counter() - t) / inner)
            best = max(best, 8 * n / statistics.median(ts))
    return best


def weight_bytes(kind, H, L):
    G = {"rnn": 1, "gru": 3, "lstm": 4}[kind]
    return 4 * L * G * H * (2 * H)


def main():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    from rnnlab.tools.bench import _spawn_step
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kinds", default="rnn,gru,lstm")
    p.add_argument("--hidden", default="64,128,256")
    p.add_argument("--layers", default="1,2")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--steps", type=int, default=1500)
    args = p.parse_args()
    sizes = sorted({weight_bytes(k, int(h), int(n)) // d for k in args.kinds.split(",")
                    for h in args.hidden.split(",") for n in args.layers.split(",")
                    for d in (1, 2)})
    bw = {s: bandwidth(s) for s in sizes}
    print("one core's read bandwidth (BLAS sdot, float32), GB/s by working set:")
    print("  " + "  ".join(f"{s // 1024}KB {bw[s] / 1e9:.0f}" for s in sizes))
    print("us per batch-1 step; floor1 / floor2: weight bytes over one core's / two cores' "
          "read bandwidth\nstep, frozen: rnnlab's layer.step, layer.freeze().step; ort: "
          "onnxruntime; every framework at its default settings")
    print(f"{'kind':4s} {'L':>2s} {'H':>4s} {'KB':>6s} {'floor1':>7s} {'floor2':>7s} "
          f"{'step':>7s} {'frozen':>7s} {'ort':>7s}  step/floor1 ort/floor2 ort/step")
    tmp = tempfile.mkdtemp()
    from rnnlab.io import export_onnx
    from rnnlab.nn import make_layer
    for kind in args.kinds.split(","):
        for L in map(int, args.layers.split(",")):
            for H in map(int, args.hidden.split(",")):
                path = os.path.join(tmp, f"{kind}{L}{H}.onnx")
                export_onnx(make_layer(kind, H, H, num_layers=L, seed=0), path, states=True)
                res = {fw: [] for fw in ("rnnlab", "frozen", "onnxruntime")}
                for _ in range(args.rounds):
                    for fw in res:
                        res[fw].append(_spawn_step(fw, kind, H, L, args.steps, 0, path)
                                       ["median"] * 1e6)
                us = {fw: statistics.median(v) for fw, v in res.items()}
                nb = weight_bytes(kind, H, L)
                f1, f2 = nb / bw[nb] * 1e6, (nb // 2) / bw[nb // 2] * 1e6
                print(f"{kind:4s} {L:2d} {H:4d} {nb // 1024:6d} {f1:7.1f} {f2:7.1f} "
                      f"{us['rnnlab']:7.1f} {us['frozen']:7.1f} {us['onnxruntime']:7.1f}  "
                      f"{us['rnnlab'] / f1:11.1f} {us['onnxruntime'] / f2:10.1f} "
                      f"{us['onnxruntime'] / us['rnnlab']:8.2f}", flush=True)


if __name__ == "__main__":
    main()
