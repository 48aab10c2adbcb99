"""How far apart two CPUs are: the round trip of one cache line between two threads, each
pinned to one of them (``round_trip_ns``).

Why it is measured: on a virtual machine the host may move the virtual CPUs between
physical cores. On the AMD EPYC VM of BENCHMARKS.md the two CPUs passed a line back and
forth in ~70 ns for seconds at a time (cores sharing an L3) and in ~340 ns at other times
(cores that do not); every framework's two-thread work slowed down in the far phases
(torch's small LSTM training 0.88 -> 1.6 ms, rnnlab's 0.68 -> 1.1). ``rnnlab bench``
reads it between its processes so that frameworks are compared in the same phase
(tools/rounds.py). Needs numba (the ``fast`` extra) for two threads that run without the
GIL.
"""
import os
import threading
import time

import numpy as np
from numba import njit

from ._atomics import atomic_load, atomic_xchg

#: Round trips a reading times, and the readings of which the fastest is kept
TRIPS, TRIES = 2000, 3
#: Polls of the line after which a side gives up (the other thread is not running: its
#: CPU busy with other work; ~0.05-0.2 s), and tells the other side so in the line
PATIENCE = 1 << 24


@njit(nogil=True, cache=True)
def _side(line, parity, trips, patience):
    """One thread's part: wait until line[0] holds this thread's turn, pass it on. 0, or
    -1 when either side gave up waiting (line[1] set)."""
    for k in range(trips):
        turn = 2 * k + parity
        polls = 0
        while atomic_load(line, 0) != turn:
            polls += 1
            if polls > patience or (polls & 1023) == 0 and atomic_load(line, 1) != 0:
                atomic_xchg(line, 1, 1)
                return -1
        atomic_xchg(line, 0, turn + 1)
    return 0


def round_trip_ns(trips=TRIPS, tries=TRIES, cpus=None):
    """Nanoseconds for one int64 to go from a thread on one CPU to a thread on another
    and back (the fastest of ``tries`` readings of ``trips`` round trips each); cpus: the
    two CPUs (default: the first two this process may run on). None where the process
    may run on one CPU only, where a thread may not run on its CPU, or when a side waited
    in vain (the other CPU busy with other work). The calling thread's CPU affinity is
    restored."""
    mine = os.sched_getaffinity(0)
    here, there = cpus if cpus is not None else (sorted(mine) + [None, None])[:2]
    if there is None or here == there:
        return None
    best = None
    try:
        try:
            os.sched_setaffinity(0, {here})
        except OSError:                                     # not a CPU this thread may use
            return None
        for _ in range(tries):
            line = np.zeros(8, np.int64)     # slots 0, 1 in one cache line (16-aligned)

            def other():
                try:
                    os.sched_setaffinity(0, {there})        # this thread only
                except OSError:
                    line[1] = 1                             # no reading: both sides stop
                _side(line, 1, trips, PATIENCE)
            worker = threading.Thread(target=other, daemon=True)
            worker.start()
            start = time.perf_counter()
            gave_up = _side(line, 0, trips, PATIENCE)
            worker.join()
            if gave_up or line[1]:
                return None
            ns = (time.perf_counter() - start) / trips * 1e9
            best = ns if best is None else min(best, ns)
    finally:
        os.sched_setaffinity(0, mine)
    return best
