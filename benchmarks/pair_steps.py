"""Per-step cost of a batch-1 sequence: the one-thread compiled loop against the pair's
loop (sequence/pair.py) on both threads and on one (the other never comes), without the
input projection (the same gate inputs for all three). One process, T = 1000 steps per
call, median of 7 calls; float32; numba required.

    python benchmarks/pair_steps.py [--sizes 128,256,512]

Also prints whole unrecorded calls (100, 1, H, H), the pair on and off
(``rnnlab.set_num_threads(1)``), after a quiet pause of 0.3 s before each block (the
worker then starts on another CPU; see BENCHMARKS.md)."""
import argparse
import threading
import time

import numpy as np

import rnnlab
from rnnlab.cells import by_mode
from rnnlab.sequence import kernels, pair


def _median_us(fn, T, reps=7):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return np.median(ts) / T * 1e6


def per_step(mode, H, T=1000):
    fam = by_mode(mode)
    G, F = fam.num_gates, fam.fold
    rng = np.random.default_rng(0)
    gx = (rng.standard_normal((T, 1, G * H)) * 0.1).astype(np.float32)
    w_hh = (rng.standard_normal((G * H, H)) / np.sqrt(H)).astype(np.float32)
    w_t = np.ascontiguousarray(w_hh.T)
    bias, b_rest = np.zeros(G * H, np.float32), np.zeros((G - F) * H, np.float32)
    h0, c_n = np.zeros((1, H), np.float32), np.zeros((1, H), np.float32)
    out = np.empty((T, 1, H), np.float32)
    halves = [np.ascontiguousarray(gx.reshape(T, G, H)[:, :, lo:hi]).reshape(T, -1)
              for lo, hi in ((0, H // 2), (H // 2, H))]      # (T, G*B): the pair's layout
    k = kernels.kernels(fam, "sequence")
    one, two = k.get("forward"), k.get("pair")

    def single():
        one(gx, w_t, kernels.NO_BIAS, b_rest, h0, h0, False, out, c_n, False, kernels.NO_STORE,
            False, 0, 1)

    def sync():
        s = np.zeros(3 * T + 4, np.int64)
        s[3 * T] = s[3 * T + 3] = 1                 # both halves' projections ready
        return s
    dots = (pair.NO_WT, pair.NO_WT, 0)              # batch 1: dot products from W_hh

    def both():
        s = sync()
        args = (*halves, w_hh, bias, b_rest, h0, h0, False, out, c_n, s)
        t = threading.Thread(target=two, args=args + (1, *dots))
        t.start()
        two(*args, 0, *dots)
        t.join()

    def alone():
        two(*halves, w_hh, bias, b_rest, h0, h0, False, out, c_n, sync(), 0, *dots)
    for f in (single, both, alone):
        f()
    return [_median_us(f, T) for f in (single, both, alone)]


def whole_calls(cls, H, reps=200):
    m = cls(H, H, dtype=np.float32, seed=0)
    x = np.random.default_rng(1).standard_normal((100, 1, H)).astype(np.float32)
    res = {}
    with rnnlab.no_grad():
        for setting in (None, 1, None, 1):
            kernels._state["threads"] = setting
            pair._state["cool"] = 0.0
            time.sleep(0.3)
            for _ in range(20):
                m(x)
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                m(x)
                ts.append(time.perf_counter() - t0)
            res.setdefault(setting, []).append(np.median(ts) * 1e3)
    kernels._state["threads"] = None
    return min(res[None]), min(res[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128,256,512")
    sizes = [int(h) for h in ap.parse_args().sizes.split(",")]
    if not (kernels.available() and pair.possible()):
        raise SystemExit("needs numba, Linux x86-64, two CPUs and NumPy's OpenBLAS")
    print("us per step, batch 1, T = 1000, no input projection; KB: W_hh")
    print("kind   H     KB  one-thread loop  pair (2 threads)  pair alone")
    for mode, name in (("RNN_TANH", "rnn"), ("GRU", "gru"), ("LSTM", "lstm")):
        for H in sizes:
            G = by_mode(mode).num_gates
            a, b, c = per_step(mode, H)
            print(f"{name:5s} {H:4d} {G * H * H * 4 // 1024:6d} {a:16.2f} {b:17.2f} {c:11.2f}")
    print("whole calls (100, 1, H, H), unrecorded, ms (best of 2 blocks of 200 medians):")
    for cls in (rnnlab.RNN, rnnlab.GRU, rnnlab.LSTM):
        for H in sizes:
            on, off = whole_calls(cls, H)
            print(f"{cls.__name__.lower():5s} {H:4d}  pair {on:6.3f}  one thread {off:6.3f}"
                  f"  {off / on:5.2f}x")


if __name__ == "__main__":
    main()
