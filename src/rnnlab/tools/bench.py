"""Benchmark rnnlab against torch on the CPU: one process, interleaved repetitions, medians,
the same thread count on both sides (torch.set_num_threads and threadpoolctl for NumPy's
BLAS). Used by ``rnnlab bench`` and benchmarks/bench.py.

Each timed call is preceded by an untimed call of the same side: torch's OpenMP threads and
OpenBLAS's threads keep spinning for a while after their last call, so a call timed right
after the other library's runs against its spinning threads on a 2-core machine (LSTM(32)
forward: 7.4 ms timed right after torch vs 1.6 ms alone); a pause instead leaves the
threads asleep and slow to wake (torch's LSTM(32) training step went from 1.9 to 74 ms).
With the untimed call first, both sides are timed with their own threads running and the
other's idle, as in a training loop.

Cost model: per layer and direction a forward step costs 2*N*G*H*(I+H)
FLOPs; a training step (forward + backward) 6*N*G*H*(I+H)*T.
"""
import os
import statistics
import time

import numpy as np

from ..cells import by_kind
from ..nn import make_layer

FAMILIES = ("rnn", "gru", "lstm")
SIZES = [(100, 64, 256, 256), (200, 128, 512, 512)]


def blas_info():
    """Which BLAS kernel NumPy runs (threadpoolctl), as a short string."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    rows = [f"{i.get('internal_api')} {i.get('version')} {i.get('architecture', '')} "
            f"threads={i.get('num_threads')}" for i in threadpool_info() if i["user_api"] == "blas"]
    return "; ".join(rows) or "no BLAS found"


def _limit_threads(n):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=n, user_api="blas")


def sgemm_gflops(n=1024, reps=5):
    """Measured float32 matmul peak of this machine at the current thread count."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / min(times) / 1e9


def flops(kind, T, N, I, H, training):
    G = by_kind(kind).num_gates
    return (6 if training else 2) * N * G * H * (I + H) * T


def run(kinds=("rnn", "gru", "lstm"), sizes=SIZES, reps=7, threads=None, warmup=1,
        torch_too=True, print_fn=print):
    """Times training steps and inference forwards; returns a list of result dicts."""
    torch = None
    if torch_too:
        try:
            import torch
        except ImportError:
            print_fn("torch not installed: timing rnnlab only")
    threads = threads or os.cpu_count()
    limiter = _limit_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    peak = sgemm_gflops()
    print_fn(f"threads={threads}  sgemm peak {peak:.0f} GFLOP/s"
             + (f"  torch {torch.__version__}" if torch is not None else ""))
    print_fn(f"numpy BLAS: {blas_info()}"[:100])
    results = []
    for kind in kinds:
        for T, N, I, H in sizes:
            fns = _workloads(kind, T, N, I, H, torch)
            for what in ("train", "infer"):
                times = {name: [] for name in fns if fns[name]}
                for _ in range(warmup):
                    for name in times:
                        fns[name][what]()
                for _ in range(reps):                      # interleaved
                    for name in times:
                        fns[name][what]()                  # untimed: own threads up, other's idle
                        t0 = time.perf_counter()
                        fns[name][what]()
                        times[name].append(time.perf_counter() - t0)
                med = {name: statistics.median(v) for name, v in times.items()}
                fl = flops(kind, T, N, I, H, what == "train")
                row = dict(kind=kind, T=T, N=N, I=I, H=H, what=what, threads=threads,
                           ours_ms=med["rnnlab"] * 1e3,
                           ours_gflops=fl / med["rnnlab"] / 1e9, peak_gflops=peak)
                if "torch" in med:
                    row.update(torch_ms=med["torch"] * 1e3, speedup=med["torch"] / med["rnnlab"])
                results.append(row)
                print_fn(format_row(row))
    if limiter is not None:
        limiter.restore_original_limits()
    return results


def _workloads(kind, T, N, I, H, torch):
    """{"rnnlab": {"train": f, "infer": f}, "torch": {...}} for one family and size."""
    rng = np.random.default_rng(0)
    ours = make_layer(kind, I, H, seed=0)
    infer_ours = make_layer(kind, I, H, seed=0).eval()
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    dy = rng.standard_normal((T, N, H)).astype(np.float32)

    def ours_train():
        ours(x)
        ours.backward(dy)

    fns = {"rnnlab": {"train": ours_train, "infer": lambda: infer_ours(x)}, "torch": {}}
    if torch is not None:
        tm = getattr(torch.nn, by_kind(kind).torch_class)(I, H)
        tx = torch.from_numpy(x).requires_grad_(True)
        tdy = torch.from_numpy(dy)

        def torch_train():
            out, _ = tm(tx)
            out.backward(tdy)

        def torch_infer():
            with torch.no_grad():
                tm(tx)
        fns["torch"] = {"train": torch_train, "infer": torch_infer}
    return fns


def format_row(r):
    s = (f"{r['kind']:4s} {r['what']:5s} {r['T']},{r['N']},{r['I']},{r['H']:<12} "
         f"rnnlab {r['ours_ms']:8.2f} ms {r['ours_gflops']:5.1f} GF/s")
    if "torch_ms" in r:
        s += f"  torch {r['torch_ms']:8.2f} ms  torch/rnnlab {r['speedup']:5.2f}x"
    return s
