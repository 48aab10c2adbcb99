"""Two threads for one batch-1 sequence (or a large batch: linalg.gemm_rows): "the pair".

At batch 1 a step's time is reading W_hh (an LSTM at H = 256: 1 MB, ~12 us from one
core's cache). Split by units over two cores, each reads its half from its own cache,
where it stays from step to step. numba's and OpenBLAS's thread pools keep spinning after
a call and fight for the cores (kernels.py, rows_step_for); the pair is one daemon thread
of rnnlab's that sleeps on a queue between calls and spins only inside one.

A call takes the pair's lock (held by another thread: the caller runs its one-thread
loop), holds NumPy's OpenBLAS to one thread (its threads would spin after the projection
and take the cores: 52 ms instead of 1.5 at the 90th percentile); each thread projects the
input for its half of the units and runs its half of every step of _loops.SEQUENCE_PAIR,
meeting the other at an atomic counter per step (a half left unclaimed for a few
microseconds it takes too: time, never a result). A batch-1 call meets the worker in the
step box without Python or the GIL (pair_step.pair_in, _loops_in.PAIR_IN); a batch, or
any call without a 64-bit sgemm, through the queue (``run``: projections from Python,
``loop``).

The same worker runs the second direction of an unrecorded bidirectional layer while
the caller runs the first (``run_both``, ``directions_wanted``), and the second half of
a recorded batch's rows on the compiled loop (``rows_wanted``, halves.py): the
threads meet once, at the end, under the same rules (lock, OpenBLAS on one thread, the
caller takes over, the cool-down); after such a call the worker spins for PAIR_SPIN
before sleeping (a wake through the queue costs ~30 us), yielding its core at every look.
Batch-1 steps and an unrecorded batch's halves take it without the GIL (pair_step.py).

Where it runs (``wanted``, then ``pair_kernel``): float32, unrecorded, without lengths or
proj_size, PAIR_ROWS rows, PAIR_STEPS steps and W_hh of PAIR_MIN weights (PAIR_LONG_MIN
from PAIR_LONG_STEPS steps), or a large batch (linalg.gemm_rows), on Linux with NumPy's
OpenBLAS, numba, two usable CPUs, ``rnnlab.set_num_threads`` not 1. The numbers equal the
one-thread loop's to float32 rounding (BENCHMARKS.md)."""
import os
import platform
import queue
import sys
import threading
import time

import numpy as np

from ..tuning import (COMPILED_LOOP_MAX, COMPILED_RECORD_MAX, DIRECTIONS_MIN, PAIR_COOL,
                      PAIR_LONG_MIN, PAIR_LONG_STEPS, PAIR_LOW, PAIR_MIN, PAIR_ROWS,
                      PAIR_SPIN, PAIR_STEPS, PAIR_WAIT_SHARE, ROWS_SPLIT_MIN)
from . import kernels
from .blas import _blas, one_blas_thread, usable_cpus
from .linalg import (batch_panels, fill_batch_half, gemm_rows, half_units, kept_halves,
                     project_gates)

#: lock: one call at a time; cool: time.monotonic() until which the pair stays off (the
#: worker did not get a core in two calls running, counted by low); last: the last
#: call's sync array (who took which half)
_state = {"worker": None, "lock": threading.Lock(), "cool": 0.0, "last": None,
          "low": 0, "cooled": 0}

#: The pair's step box (pair_step.py, _loops.ROWS_ONE), an int64 array: requests posted,
#: the last request whose second half is claimed, the last one the worker finished, the
#: family key the worker spins for (0: none), the leave generation (bumped before every
#: sequence job, so that a worker spinning for steps leaves for it at once), the request's
#: family key, then the request's nine array addresses (x, h, c, w_ih, w_hh, b_ih, b_hh,
#: h_new, c_new), N, I, H, the spin's budget in ticks, a wake pending, requests served,
#: then T and reverse (_loops_in.SEQUENCE_IN's nine are x, w_ih_t, bias, w_hh_t, b_rest,
#: h0, c0, out, c_n), five more addresses and sgemm's (_loops_in.PAIR_IN's fourteen: x2d,
#: w_ih, w_hh, bias, b_rest, h0, c0, out, c_n, gx0, gx1, sync, wt0, wt1; wt's 0: none);
#: then for PAIR_IN's caller: the least spin in ticks and the share of its own time (in
#: 1024ths) it sets the budget from, and the steps' halves the worker took (it writes).
B_SEQ, B_CLAIM, B_DONE, B_STATE, B_GEN, B_FAM, B_ARGS = 0, 1, 2, 3, 4, 5, 6
B_N, B_I, B_H, B_BUDGET, B_WAKE, B_SERVED, B_T, B_REV = 15, 16, 17, 18, 19, 20, 21, 22
B_MORE, B_FN, B_SPIN, B_SHARE, B_TOOK = 23, 28, 29, 30, 31
STEP_BOX = np.zeros(B_TOOK + 1, np.int64)

#: The worker's board: jobs posted (``_post``).
BOARD = np.zeros(1, np.int64)


#: The kernel's wt0 / wt1 when its products are dot products (fn = 0)
NO_WT = np.zeros((0, 0), np.float32)

#: x86-64: the kernel's stores reach the other core in program order (the projection flag
#: set from Python relies on it) and spin loops pause (_atomics.cpu_relax reads it too)
X86_64 = platform.machine().lower() in ("x86_64", "amd64")


def possible():
    """Whether this process can run the pair (Linux x86-64, 2 CPUs, NumPy's OpenBLAS)."""
    return (sys.platform.startswith("linux") and X86_64 and usable_cpus() >= 2
            and bool(_blas()))


def enabled():
    """Whether the pair may run now: possible, and set_num_threads not set to 1."""
    threads = kernels.get_num_threads(explicit=True)
    return (threads is None or threads >= 2) and possible()


def wanted(fam, dtype, N, GH, H_out, has_proj, T):
    """Whether an unrecorded call of this shape is one for the pair (when it then runs
    alone, its projection still keeps OpenBLAS to one thread: see one_blas_thread)."""
    return _by_units(fam, dtype, N, GH, H_out, has_proj, T) and enabled()


def _by_units(fam, dtype, N, GH, H_out, has_proj, T):
    """``wanted`` by shape alone (whatever set_num_threads says): PAIR_ROWS rows, PAIR_STEPS
    steps, PAIR_MIN weights (dot products; PAIR_LONG_MIN from PAIR_LONG_STEPS steps), or a
    batch for OpenBLAS (linalg.gemm_rows)."""
    least = PAIR_MIN if T < PAIR_LONG_STEPS else min(PAIR_MIN, PAIR_LONG_MIN)
    return (dtype == np.float32 and not has_proj and N > 0 and fam.units is not None
            and ((N <= PAIR_ROWS and GH * H_out >= least and T >= PAIR_STEPS)
                 or gemm_rows(T, N, GH, H_out))
            and kernels.available())


def directions_wanted(fam, dtype, T, N, GH, H_out, has_proj):
    """Whether an unrecorded bidirectional layer's two directions should run at once, one
    per thread (``run_both``): each one's path is the single-threaded compiled loop
    (kernels.kernel_for; not a call the pair wants: two threads per step beat one thread
    per direction there) and the recurrent work of a direction, T * N * G*H * H_out
    multiply-adds, is at least DIRECTIONS_MIN (below it handing one direction to the
    worker costs more than it saves). By shape alone: under set_num_threads(1) the
    driver runs the same two one after the other."""
    return (T * N * GH * H_out >= DIRECTIONS_MIN and possible()
            and not _by_units(fam, dtype, N, GH, H_out, has_proj, T)
            and kernels.kernel_for(fam, dtype, N, GH, H_out, has_proj) is not None)


def rows_wanted(fam, dtype, T, N, GH, H_out, has_proj):
    """Whether a recorded call of N >= 3 rows on the compiled loop (kernels.kernel_for)
    should run its rows in two halves, one per thread (halves.py; its BPTT too): the rows
    of a batch never meet, so the threads meet once, at the end. From ROWS_SPLIT_MIN
    recurrent multiply-adds. Not for two rows (a row alone rounded otherwise before the
    register tiles; not measured since) nor for one unit (G*H = 1: the input projection is then
    OpenBLAS's matrix-vector product). By shape alone: where the pair may not run
    (set_num_threads(1)), the caller runs both halves, one after the other, so that the
    numbers never depend on the threads (OpenBLAS may round a row of a product by where
    it sits). Unrecorded calls: halves.unrecorded_wanted."""
    return (N >= 3 and GH > 1 and T * N * GH * H_out >= ROWS_SPLIT_MIN and possible()
            and kernels.kernel_for(fam, dtype, N, GH, H_out, has_proj,
                                   limit=loop_limit(True)) is not None)


def loop_limit(record):
    """N * G*H * H_out up to which a call takes the compiled loop (kernels.kernel_for):
    COMPILED_LOOP_MAX; a recorded call and its BPTT COMPILED_RECORD_MAX where the pair may
    run (``enabled``: their rows then run in halves; on one thread OpenBLAS's two-thread
    products win above COMPILED_LOOP_MAX: LSTM (100, 64, 256, 256) 194 against 150 ms)."""
    return COMPILED_RECORD_MAX if record and enabled() else COMPILED_LOOP_MAX


def pair_kernel(fam):
    """The compiled two-thread loop (kernels: "pair", _loops_in.PAIR_IN) for a call
    ``wanted`` says is one, or None (no kernel, or the pair is cooling down)."""
    if time.monotonic() < _state["cool"]:
        return None
    k = kernels.kernels(fam, "sequence")
    return None if k is None else k.get("pair")


def loop(kernel, gx0, gx1, w_hh, bias, b_rest, h0, c0, reverse, out, c_n, sync, p, wt0, wt1,
         x2d=NO_WT):
    """Thread p's side of SEQUENCE_PAIR (its arguments), both projections (batch 1) or
    both halves' packed weights (a batch) made."""
    kernel(x2d, NO_WT, w_hh, bias, b_rest, h0, c0, reverse, out, c_n, gx0, gx1, sync, 0,
           wt0, wt1, 3 + p, kernels.NO_BOX, 0, 0)


class _Worker:
    def __init__(self):
        self.jobs, self.pid = queue.SimpleQueue(), os.getpid()
        self.cpus, self.tid, started = None, None, threading.Event()
        threading.Thread(target=self._loop, args=(started,), name="rnnlab-pair",
                         daemon=True).start()
        started.wait()

    def keep_off(self, cpu):
        """Keep the worker off the caller's CPU (``cpu``; -1: unknown): woken on the
        waking CPU, it waits there behind the spinning caller while the other CPU idles
        (measured: 3.5 ms calls in place of 1.4 after the process slept 0.1 s)."""
        allowed = set(os.sched_getaffinity(0)) - {cpu}
        if cpu >= 0 and allowed and allowed != self.cpus:
            try:
                os.sched_setaffinity(self.tid, allowed)
            except OSError:
                return
            self.cpus = allowed

    def _loop(self, started):
        self.tid = threading.get_native_id()
        started.set()
        while True:
            job = self.jobs.get()
            try:
                job()
            except BaseException:           # never dies: the caller takes what is left
                pass
            spin = getattr(job, "spin", 0)  # run_both(spin=True): spin for the next job,
            job = None                      # (not holding the last call's arrays meanwhile)
            try:                            # waking costs ~30 us (measured)
                while spin and self.jobs.empty():
                    seen = int(BOARD[0])
                    if self.jobs.empty() and not _await(BOARD, 0, seen, spin):
                        break
            except BaseException:           # never dies: it sleeps on the queue instead
                pass


def _await(box, i, seen, budget):
    from ._compiled import await_change
    return await_change(box, i, seen, budget)


def rate():
    """The cycle counter's ticks per second (measured once: 5 ms)."""
    if _state.get("rate") is None:
        from ._compiled import now_ticks
        now_ticks()                 # loaded first: its first call may take milliseconds
        t0, k0 = time.perf_counter(), now_ticks()
        time.sleep(0.005)
        t1, k1 = time.perf_counter(), now_ticks()
        _state["rate"] = max((k1 - k0) / (t1 - t0), 1e6)
    return _state["rate"]


def _post(job):
    """Hand the worker ``job`` (lock held): queued, then BOARD[0] bumped (spinning: seen)."""
    _worker(leave_steps=not getattr(job, "steps", False)).jobs.put(job)
    BOARD[0] += 1


def _worker(leave_steps=True):
    if leave_steps:
        STEP_BOX[B_GEN] += 1
    w = _state["worker"]
    if w is None or w.pid != os.getpid():   # the first call, or a forked child
        w = _state["worker"] = _Worker()
    w.keep_off(_this_cpu())
    return w


def _this_cpu():
    """The CPU the calling thread runs on now (the C library's sched_getcpu), or -1."""
    if "getcpu" not in _state:
        import ctypes
        try:
            fn = ctypes.CDLL(None).sched_getcpu
            fn.restype, fn.argtypes = ctypes.c_int, []
        except (OSError, AttributeError):
            fn = None
        _state["getcpu"] = fn
    fn = _state["getcpu"]
    return -1 if fn is None else fn()


def _after_fork():
    _state.update(worker=None, lock=threading.Lock())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def run(kernel, x2d, w_ih, w_hh, bias, b_rest, h0, c0, reverse, out, c_n, gx, wt=None):
    """One direction of an unrecorded sequence on the pair. x2d (T*N, I) the input; the
    weights in torch's layout; bias (G*H,) b_ih with the folded b_hh, b_rest ((G-F)*H,),
    zeros without bias; h0, c0 (N, H) (c0: h0 without a cell state); out (T, N, H), c_n
    (N, H) receive the outputs and the last c. wt: None (batch 1: dot products from
    w_hh) or linalg.kept_batch_halves(w_ih, w_hh, G, H, ...) (a batch: each half's loop
    projects its rows of x2d step by step and makes its products in register tiles from
    them); gx, from the caller's lease, batch 1's halves' input projections (T*N, G*B), B
    = H // 2 and H - H // 2 (a batch: empty; from more than PROJECT_FEW_ROWS rows in
    register tiles from linalg.kept_halves' panels), each thread its own. All float32,
    C-contiguous. False, having done nothing, when another thread has the pair."""
    lock = _state["lock"]
    if not lock.acquire(blocking=False):
        return False
    try:
        with one_blas_thread():
            G, H, I = w_ih.shape[0] // out.shape[2], out.shape[2], w_ih.shape[1]
            tail = (NO_WT, NO_WT) if wt is None else (
                *(batch_panels(wt[k], G, H, k, I) for k in (0, 1)), np.ascontiguousarray(x2d))
            kept = (wt is None and kept_halves(w_ih, G, H, x2d.shape[0])) or (None, None)
            _run(kernel, x2d, w_ih, (w_hh, bias, b_rest, h0, c0, reverse, out, c_n), gx,
                 tail, kept, wt)
        return True
    finally:
        lock.release()


def run_both(first, second, spin=False):
    """(first(), second()): second on the worker thread while first runs here (the two
    directions of a bidirectional layer, directions_wanted; the two halves of a batch,
    rows_wanted). Nothing is shared between the two but the caller's arguments, read
    only, and what each writes alone. spin=True: the caller spins for the worker's
    result before sleeping, and the worker for the next job after it (PAIR_SPIN each:
    calls of a few hundred microseconds do not pay two wakes of ~30 us). When another
    thread holds the pair, or the worker has not started second when first is done,
    second runs here after first; failed in the worker, it runs here again (its error is
    then the caller's). Never returns while the worker still runs second.

    The pair's cool-down applies: a call where the worker did not get a core (it never
    started second, or the caller waited longer than PAIR_WAIT_SHARE of its own time) counts as
    a low share, and after two running the next PAIR_COOL seconds of calls run one after
    the other, on one OpenBLAS thread too (see one_blas_thread)."""
    lock = _state["lock"]
    if not lock.acquire(blocking=False):
        return first(), second()
    try:
        with one_blas_thread():         # each one's projection on one thread (as _run)
            if time.monotonic() < _state["cool"]:
                _state["both"] = None
                return first(), second()
            claim, done, box = threading.Lock(), threading.Event(), {}
            flag = np.zeros(1, np.int64)

            def job():
                if claim.acquire(blocking=False):
                    try:
                        box["result"] = second()
                    finally:
                        flag[0] = 1
                        done.set()

            job.spin = int(PAIR_SPIN * rate()) if spin else 0
            _post(job)
            t0 = time.monotonic()
            try:
                a = first()
            finally:
                t1 = time.monotonic()
                if not claim.acquire(blocking=False):   # the worker took it: wait, spinning
                    if not (spin and _await(flag, 0, 0, job.spin)):     # at first
                        done.wait()
            _state["both"] = "result" in box            # who ran second (tests)
            _count_share(_state["both"] and time.monotonic() - t1 <= PAIR_WAIT_SHARE * (t1 - t0))
            return a, (box["result"] if _state["both"] else second())
    finally:
        lock.release()


def _count_share(good):
    """After two calls running where the worker did not get a core: PAIR_COOL s off,
    doubled each time again before a call is served in time (to 32x: a core that stays
    taken, by another process or OpenBLAS's spinning threads, is not tried every call)."""
    if good:
        _state["low"] = _state["cooled"] = 0
        return
    _state["low"] += 1
    if _state["low"] >= 2:                      # twice running: not a one-off hiccup
        _state["cool"] = time.monotonic() + PAIR_COOL * (1 << min(_state["cooled"], 5))
        _state["low"], _state["cooled"] = 0, _state["cooled"] + 1


def cooling():
    """Whether the pair is cooling down (``_count_share``)."""
    return time.monotonic() < _state["cool"]


def _run(kernel, x2d, w_ih, args, gx, tail, kept, wt):
    T, H = args[-2].shape[0], args[-2].shape[2]
    w3 = w_ih.reshape(w_ih.shape[0] // H, H, w_ih.shape[1])
    sync = np.zeros(3 * T + 4, np.int64)  # claims, halves done, projection 1, here, proj. 0
    claim = threading.Lock()

    def project(half):        # each half's, without the GIL (BLAS, project_few: nogil)
        if wt is not None:    # a batch: the half's rows of W_ih and W_hh (its loop projects)
            fill_batch_half(wt[half], w_ih, args[0], w3.shape[0], H, half)
        else:
            project_gates(x2d, w3, *half_units(H, half), gx[half],     # into the half's
                          kept[half])                                 # rows (linalg: how)

    def second():
        try:
            project(1)
            sync[3 * T] = 1                      # after the products (x86 keeps the order)
        except BaseException:
            sync[3 * T] = 2
            raise

    def job():
        if claim.acquire(blocking=False):
            second()
        loop(kernel, *gx, *args, sync, 1, *tail)

    _post(job)
    try:
        project(0)
    except BaseException:
        sync[3 * T + 3] = 2                      # the worker must not wait for them
        if claim.acquire(blocking=False):
            sync[3 * T] = 2
        raise
    sync[3 * T + 3] = 1                          # the worker may take half 0 from now on
    if claim.acquire(blocking=False):            # the worker has not started its half
        second()
    loop(kernel, *gx, *args, sync, 0, *tail)
    if sync[3 * T] != 1:                         # the worker's projection failed: alone
        project(1)
        sync = np.zeros(3 * T + 4, np.int64)
        sync[3 * T] = sync[3 * T + 3] = 1
        loop(kernel, *gx, *args, sync, 0, *tail)
    _state["last"] = sync                       # who took which half (tests, bench)
    _count_share(np.count_nonzero(sync[:2 * T] == 2) >= PAIR_LOW * 2 * T)
