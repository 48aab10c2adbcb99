"""Parameters on a cache line or 16 bytes past one (NumPy's placement), one process.

    python benchmarks/alignment.py LSTM 100,1,256,256 [--train] [--blocks 30]

Two layers with the same values, one whose parameters start on a 64-byte boundary (what
rnnlab allocates, sequence/pool.py) and one whose parameters start 16 bytes past one
(what NumPy's allocator gives a large array); their calls alternate in blocks of 10 (the
order flips every block), so that both see the same machine. Prints each one's median of
the blocks' medians and the median ratio 16-past / aligned with its quartiles (> 1:
aligned faster). In one process, because this machine's noise between processes
(10-50%) is larger than the effect.
"""
import argparse
import statistics
import time

import numpy as np

import rnnlab


def placed(a, offset):
    """A copy of ``a`` starting ``offset`` bytes past a 64-byte boundary."""
    buf = np.empty(a.nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    out = np.ndarray(a.shape, a.dtype, buf, start)
    out[...] = a
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["RNN", "GRU", "LSTM"])
    p.add_argument("size", help="T,N,I,H")
    p.add_argument("--train", action="store_true", help="forward + backward, not inference")
    p.add_argument("--blocks", type=int, default=30)
    a = p.parse_args()
    T, N, I, H = map(int, a.size.split(","))
    x = np.random.default_rng(0).standard_normal((T, N, I)).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((T, N, H)).astype(np.float32)
    layers = {}
    for name, offset in (("aligned", 0), ("16 past", 16)):
        m = getattr(rnnlab, a.kind)(I, H, seed=0).train(a.train)
        for n, w in list(m.named_parameters()):
            m._parameters[n] = placed(w, offset)        # the live arrays themselves
        layers[name] = m

    def call(m):
        m(x)
        if a.train:
            m.backward(dy)
            m.zero_grad()
    for m in layers.values():
        for _ in range(10):
            call(m)
    res = {k: [] for k in layers}
    for b in range(a.blocks):
        for k in (list(layers) if b % 2 else list(layers)[::-1]):
            ts = []
            for _ in range(10):
                t0 = time.perf_counter()
                call(layers[k])
                ts.append(time.perf_counter() - t0)
            res[k].append(statistics.median(ts))
    r = [u / v for u, v in zip(res["16 past"], res["aligned"])]
    q = statistics.quantiles(r, n=4)
    print(f"{a.kind} ({a.size}) {'train' if a.train else 'infer'}: "
          + ", ".join(f"{k} {statistics.median(v) * 1e3:.3f} ms" for k, v in res.items())
          + f"; 16 past / aligned {statistics.median(r):.3f} ({q[0]:.3f}-{q[2]:.3f})")


if __name__ == "__main__":
    main()
