"""A batch-1 decoder loop: a 2-layer GRU(256) step, then a threaded BLAS output matmul
(1 x 256 @ 256 x 30000, a vocabulary-sized head), with ``freeze()``, with
``freeze(threads=2)`` and with ``layer.step`` after ``rnnlab.set_num_threads(2)``. Shows
the fight between numba's OpenMP threads and OpenBLAS's idle threads, and what
``OPENBLAS_THREAD_TIMEOUT`` does to it:

    python benchmarks/mixed_steps.py                              # OpenBLAS's default
    OPENBLAS_THREAD_TIMEOUT=4 python benchmarks/mixed_steps.py    # idle threads sleep

Each stepper: 50 warm-up iterations, then the median of 300 (step + matmul) and of 300
steps alone. float32, with numba (the ``fast`` extra); without it every stepper is the
same single-threaded step.
"""
import os
import time

import numpy as np

import rnnlab


def median_us(fn, reps):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def main():
    rng = np.random.default_rng(0)
    model = rnnlab.GRU(256, 256, num_layers=2, seed=0).to(np.float32).eval()
    w_out = rng.standard_normal((256, 30000)).astype(np.float32)
    x = rng.standard_normal((1, 256)).astype(np.float32)
    print(f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset')}")
    for name, stepper, threads in (("freeze()", model.freeze(), 1),
                                   ("freeze(threads=2)", model.freeze(threads=2), 1),
                                   ("set_num_threads(2)", model, 2)):
        rnnlab.set_num_threads(threads)        # layer.step's own threads
        state = [None]

        def step():
            y, state[0] = stepper.step(x, state[0])
            return y

        def step_and_head():
            return step() @ w_out

        for _ in range(50):
            step_and_head()
        both = median_us(step_and_head, 300)
        alone = median_us(step, 300)
        rnnlab.set_num_threads(1)
        print(f"{name:18s} step + output matmul {both / 1e3:7.3f} ms   step alone "
              f"{alone:6.1f} us")


if __name__ == "__main__":
    main()
