"""A batch-1 decoder loop: a 2-layer GRU(256) step, then a threaded BLAS output matmul
(1 x 256 @ 256 x 30000, a vocabulary-sized head), with each way of stepping: one thread
(``freeze(threads=1)``), the pair's step (``freeze()`` and ``layer.step`` with
set_num_threads unset or 2: the caller and rnnlab's worker thread, which spins for the
next step for 100 us after serving one, sequence/pair_step.py) and numba's threads
(``freeze(threads=3)``). Shows the fight between waiting threads and OpenBLAS's idle
threads, and what ``OPENBLAS_THREAD_TIMEOUT`` does to it:

    python benchmarks/mixed_steps.py                              # OpenBLAS's default
    OPENBLAS_THREAD_TIMEOUT=4 python benchmarks/mixed_steps.py    # idle threads sleep
    python benchmarks/mixed_steps.py --vocab 1024                 # a head BLAS keeps on
                                                                  # one thread

Each stepper: 50 warm-up steps, the median of 300 steps alone, a 0.2 s pause, 50 warm-up
iterations, the median of 300 (step + matmul). float32, with numba (the ``fast`` extra);
without it every stepper is the same single-threaded step. Each process reads its rows
10-30% apart from the next: compare runs, or alternate in one process.
"""
import argparse
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=30000, help="the head's outputs")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    model = rnnlab.GRU(256, 256, num_layers=2, seed=0).to(np.float32).eval()
    w_out = rng.standard_normal((256, args.vocab)).astype(np.float32)
    x = rng.standard_normal((1, 256)).astype(np.float32)
    print(f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset')}, "
          f"output matmul 1 x 256 @ 256 x {args.vocab}")
    for name, make, threads in (("freeze(threads=1)", lambda: model.freeze(threads=1), 1),
                                ("freeze(), the pair", lambda: model.freeze(), 2),
                                ("layer.step, the pair", lambda: model, 2),
                                ("freeze(threads=3)", lambda: model.freeze(threads=3), 3)):
        rnnlab.set_num_threads(threads)
        stepper = make()
        state = [None]

        def step():
            y, state[0] = stepper.step(x, state[0])
            return y

        def step_and_head():
            return step() @ w_out

        for _ in range(50):
            step()
        alone = median_us(step, 300)
        time.sleep(0.2)
        for _ in range(50):
            step_and_head()
        both = median_us(step_and_head, 300)
        print(f"{name:20s} step + output matmul {both / 1e3:7.3f} ms   step alone "
              f"{alone:6.1f} us")
        time.sleep(0.2)                        # the previous stepper's threads settle
    rnnlab.set_num_threads(1)


if __name__ == "__main__":
    main()
