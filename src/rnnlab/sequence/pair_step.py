"""Batch-1 steps on the pair's two threads (``layer.step`` and ``freeze().step``).

A step of a layer of 2^18 weights and more (GRU / LSTM at H = 256) is the time to read its
weights: 2 MB for an LSTM, more than one core's L2 holds with everything else. Split by
units over the pair (pair.py: the caller and rnnlab's one worker thread), each core reads
half, from its own cache. The pair's sequence loop meets at a counter every step inside
one compiled call; separate ``step`` calls cannot: a worker asleep between them takes
~30 us to wake, more than the step.

So after serving a step the worker keeps spinning (x86 ``pause``) for PAIR_STEP_SPIN
seconds, then sleeps. Steps called back to back meet it at an atomic counter
(_loops.ROWS_ONE: the caller posts the layer's arrays in ``BOX`` and computes the first
half of the units; the second half is claimed by whichever thread gets there first).
What keeps this from the spin fight of kernels.rows_step_for (numba's and OpenBLAS's
waiting threads taking each other's cores for ~0.1 s):

- the spin is bounded (PAIR_STEP_SPIN after the worker's last step), and it ends at once
  when a sequence call wants the worker (pair._worker bumps the box's generation);
- the caller never waits for a worker that has not claimed its half: a worker asleep,
  busy or without a core costs the caller the whole step on one thread, as before, never
  a result; the first step after a pause runs so while the worker wakes;
- when the worker, spinning, leaves the second half to the caller PAIR_STEP_LOW times
  running (it had no core: OpenBLAS's threads spin after a threaded BLAS call), or the
  caller waited long for it, or its spins end PAIR_STEP_LOW times running without a step
  (woken, it came too late and waited in vain: something slow runs between the steps),
  the pair's cool-down (pair.py) turns it off for
  PAIR_STEP_COOL s (5 ms: a passing hiccup costs ~200 steps on one thread), twice as long
  each time this comes again before 4 * PAIR_STEP_LOW steps running are served in time
  (up to 2^PAIR_STEP_BACKOFF times: a loop with a threaded BLAS call after every step
  then runs on one thread nearly all the time).

The same box, claims and spin serve an unrecorded batch's two halves of rows (``halves``:
one compiled call, _loops_in.SEQUENCE_IN, the worker spinning in it between calls),
keyed by the family's key negated, and a batch-1 sequence's two halves of units on the
pair (``pair_in``: _loops_in.PAIR_IN), keyed by the family's key + 2^32, so that a step
and a sequence never take each other's requests.

Where it runs: unrecorded steps of float32 layers without projection, at batch 1 to
FEW_ROWS, of PAIR_STEP_MIN weights and more, with numba, where the pair can run
(pair.possible) and ``rnnlab.set_num_threads`` is unset or 2 (1: never; more than 2: numba's
threads, rows_step_for); ``freeze(threads=1)`` never. One thread of the process at a time
(the pair's lock; another thread's steps meanwhile run on one thread). The numbers are
the one-thread row step's: the same units and dot products, bit for bit when half of H
is a multiple of 8 (the rows go eight per pass), else to float32 rounding. The first
step of a process measures the cycle counter's rate (a 5 ms sleep, once).
"""
import contextlib
import os
import time

import numpy as np

from ..tuning import (PAIR_LOW, PAIR_SPIN, PAIR_SPIN_SHARE, PAIR_STEP_BACKOFF,
                      PAIR_STEP_COOL, PAIR_STEP_LONG, PAIR_STEP_LOW, PAIR_STEP_SPIN,
                      PAIR_WAIT_SHARE)
from . import kernels, pair
from .blas import sgemm_address
from .linalg import kept_halves
from .pair import (B_BUDGET, B_GEN, B_SERVED, B_SHARE, B_SPIN, B_STATE, B_TOOK,  # BOX's
                   B_WAKE)                                                   # layout

BOX = pair.STEP_BOX
_BOX = memoryview(BOX)      # its words as Python ints (a read ~0.05 us, NumPy's ~0.3)
_D2, _D1 = np.zeros((1, 1), np.float32), np.zeros(1, np.float32)
_state = {"pid": None, "possible": False, "low": 0, "again": 0, "empty": 0,
          "good": 0, "keys": {}}


def possible():
    """Whether the pair can run steps in this process at all (pair.possible, numba); found
    once per process (a child of fork: _after_fork; asking the OS for the process id at
    every step cost ~0.5 us)."""
    if _state["pid"] is None or (_NO_FORK_HOOK and _state["pid"] != os.getpid()):
        _state.update(pid=os.getpid(), possible=pair.possible() and kernels.available())
    return _state["possible"]


def on():
    """Whether a step may take the pair now: possible, set_num_threads unset or 2, not
    cooling down."""
    threads = kernels.get_num_threads(explicit=True)
    return (possible() and (threads is None or threads == 2)
            and time.monotonic() >= pair._state["cool"])


def _key(fam):
    keys = _state["keys"]
    if id(fam) not in keys:
        keys[id(fam)] = (len(keys) + 1, fam)         # the family kept: its id stays its own
    return keys[id(fam)][0]


def _wake(kernel, key, dummies=None, spin=None):
    """Hand the worker a spin for key ``key`` (it serves the requests posted from then on
    until ``spin`` seconds, PAIR_STEP_SPIN by default, pass without one): a family's
    steps, or with ``dummies`` (the kernel's array arguments, not read) a sequence's
    halves (``halves``)."""
    BOX[B_WAKE] = 1
    BOX[B_BUDGET] = int((PAIR_STEP_SPIN if spin is None else spin) * pair.rate())
    gen = int(BOX[B_GEN])
    args = (_D2, _D2, _D2, _D2, _D2, _D1, _D1, _D2, _D2) if dummies is None else dummies

    def job():
        served = 0
        try:
            served = kernel(*args, 2, BOX, key, gen)
        finally:
            BOX[B_WAKE] = 0
            if dummies is None:
                _state["empty"] = 0 if served else _state["empty"] + 1
    job.steps = True                                 # the worker may be spinning for steps
    pair._post(job)


def _spinning(kernel, key, dummies=None, spin=None):
    """Whether the worker spins for ``key`` now; if not, and no wake is pending, it is
    woken for the next request (``_wake``'s arguments): this one runs alone."""
    spinning = _BOX[B_STATE] == key
    if not spinning and _BOX[B_WAKE] == 0:
        _wake(kernel, key, dummies, spin)
    return spinning


def _keep_off():
    """The caller moved onto the worker's CPU: they would take turns on one core
    (measured: 49 us steps in place of 30, 1 process in 6); the worker moves."""
    w = pair._state["worker"]
    if w is not None and w.cpus is not None:
        cpu = pair._this_cpu()
        if cpu in w.cpus:
            w.keep_off(cpu)


_D3 = np.zeros((1, 1, 1), np.float32)
_SEQ_DUMMIES = (_D3, _D2, _D1, _D2, _D1, _D2, _D2, False, _D3, _D2)


def halves(fam, kernel, args):
    """An unrecorded sequence's rows in two halves (``kernel``: the family's
    _loops_in.SEQUENCE_IN; ``args`` its arrays and reverse): the first here, the second on
    the worker, met at the step box's claim without Python or the GIL; after it the
    worker spins PAIR_SPIN for the next call's half. Both here (role 0) where the pair may
    not run now (pair.enabled, cooling down) or another thread holds it; the same bits
    either way. The cool-down is the steps' (``_account``: PAIR_STEP_LOW calls running
    whose second half a spinning worker left to the caller, or for which the caller
    waited longer than PAIR_WAIT_SHARE of its own time): a missed claim costs the second
    half to the caller, never a wait, so a passing hiccup (the worker preempted for a call or two,
    measured: ~1 call in 500 here) does not turn the pair off for 50 ms (run_both's
    two)."""
    lock = pair._state["lock"]
    if not pair.enabled() or pair.cooling() or not lock.acquire(blocking=False):
        kernel(*args, 0, BOX, 0, 0)
        return False
    try:
        key = -_key(fam)                  # a sequence's requests: never a family's steps
        _keep_off()
        spinning = _spinning(kernel, key, _SEQ_DUMMIES, PAIR_SPIN)
        t0 = time.perf_counter()
        waited = kernel(*args, 1, BOX, key, 0)
        wait = waited / pair.rate()
        _account(spinning, waited, wait > PAIR_WAIT_SHARE * (time.perf_counter() - t0 - wait))
        return waited > 0
    finally:
        lock.release()


_I1 = np.zeros(1, np.int64)
_PAIR_DUMMIES = (_D2, _D2, _D2, _D1, _D1, _D2, _D2, False, _D3, _D2, _D2, _D2, _I1, 0,
                 pair.NO_WT, pair.NO_WT)
_NO_KEPT = (pair.NO_WT, pair.NO_WT)
_PAIR_KEY = 1 << 32                   # a batch-1 sequence's requests: key + _PAIR_KEY


def pair_in(fam, kernel, args):
    """An unrecorded batch-1 sequence's units in two halves (``kernel``: the family's
    "pair", _loops_in.PAIR_IN; ``args`` its arrays and reverse up to gx0, gx1): the caller
    posts it in the step box and projects the first half (from more than a few rows in
    tiles from W_ih's halves in panels kept between calls, linalg.kept_halves); the
    worker, spinning in the same compiled function since the last call, claims the second
    half's projection and takes its side of every step, without Python or the GIL between
    the two (pair.run hands the worker a job through the queue: a wake and the GIL each
    way, ~35-60 us a call); after it the worker spins for the next call PAIR_SPIN or
    PAIR_SPIN_SHARE of this one's time, the longer. The worker not there when the
    caller's projection is done (the first call, or after a pause): the caller runs the
    call alone, on one thread (the worker is woken for the next one). OpenBLAS is set to
    one thread for the call only where it projects (no panels kept). The cool-down is
    the steps' (``_account``). False, having done nothing, when another thread holds the
    pair."""
    lock = pair._state["lock"]
    if not lock.acquire(blocking=False):
        return False
    try:
        pair_held(fam, kernel, args)
        return True
    finally:
        lock.release()


def pair_held(fam, kernel, args, sync=None):
    """``pair_in``'s call, the pair's lock held by the caller; ``sync``: its (3 T + 4,)
    int64 scratch to reuse (zeroed here), else a new one."""
    key = _key(fam) + _PAIR_KEY
    _keep_off()
    spinning = _spinning(kernel, key, _PAIR_DUMMIES, PAIR_SPIN)
    T, x2d, out = args[8].shape[0], args[0], args[8]
    kept = kept_halves(args[1], fam.num_gates, out.shape[2], x2d.shape[0]) or _NO_KEPT
    if sync is None:
        sync = np.zeros(3 * T + 4, np.int64)
    else:
        sync[:] = 0
    _BOX[B_SPIN] = int(PAIR_SPIN * pair.rate())     # the spinning worker's budget after
    _BOX[B_SHARE] = int(PAIR_SPIN_SHARE * 1024)     # the call, set by the kernel
    with (pair.one_blas_thread() if kept is _NO_KEPT      # projected by OpenBLAS
          else contextlib.nullcontext()):   # (pair.run); by the tiles: no call to it
        waited = kernel(*args, sync, sgemm_address(), *kept, 1, BOX, key, 0)
    pair._state["last"] = sync
    shared = _BOX[B_TOOK] >= PAIR_LOW * 2 * T       # the worker's halves, counted there
    _account(spinning, waited, waited > 0 and not shared)


def step(fam, kernel, x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new):
    """One layer's step on the pair (``kernel``: the family's ROWS_ONE, kernels.pair_step_for;
    the arrays as the row step takes them): ``steps`` for one layer. False, having done
    nothing, when another thread holds the pair."""
    return steps(_key(fam), ((kernel, None, (w_ih, w_hh, b_ih, b_hh)),), x, h[None],
                 c[None], h_new[None], c_new[None])


def steps(key, layers, x, h, c, h_new, c_new):
    """Every layer's step (stepper.compiled_steps; ``layers``: stepper.StepPlan.layers,
    per layer its pair step or None, its one-thread row step, its rows_w) under one hold
    of the pair's lock: the pair's where the layer has one (``key``: ``_key`` of its
    family), else the row step here. h, c, h_new, c_new (L, N, H) (c, c_new: h, h_new
    without a cell state). False, having done nothing, when another thread holds the
    pair."""
    lock = pair._state["lock"]
    if not lock.acquire(blocking=False):
        return False
    try:
        if _state["low"] or _BOX[B_STATE] != key:     # (else the worker served the last
            _keep_off()                                # step in time: on its own CPU)
        long = PAIR_STEP_LONG * pair.rate()
        for k, (kernel, one, w) in enumerate(layers):
            hn = h_new[k]
            if kernel is None:
                one(x, h[k], c[k], *w, hn, c_new[k], 0, kernels.NO_BOX, 0, 0)
            else:
                spinning = _spinning(kernel, key)
                waited = kernel(x, h[k], c[k], *w, hn, c_new[k], 1, BOX, key, 0)
                _account(spinning, waited, waited > long)
            x = hn
        return True
    finally:
        lock.release()


def _account(spinning, waited, long):
    """The cool-down's count after a request (a step, or a sequence's halves): low when
    the worker's last spins met no request, when it was spinning and left the second
    half to the caller, or when the caller waited ``long`` for it."""
    vain = _state["empty"] >= PAIR_STEP_LOW         # its last spins met no step
    if vain or (spinning and waited == 0) or long:
        _state["low"] = PAIR_STEP_LOW if vain else _state["low"] + 1
        _state["empty"] = _state["good"] = 0
        if _state["low"] >= PAIR_STEP_LOW:         # off, doubled each time running
            off = PAIR_STEP_COOL * 2 ** min(_state["again"], PAIR_STEP_BACKOFF)
            pair._state["cool"] = time.monotonic() + off
            _state["low"], _state["again"] = 0, _state["again"] + 1
    elif waited:                                   # the worker served it in time
        _state["low"], _state["good"] = 0, _state["good"] + 1
        if _state["good"] >= 4 * PAIR_STEP_LOW:    # and the requests before it: the
            _state["again"] = 0                    # cool-down starts short again


def served():
    """Requests (steps, and sequences' halves: ``halves``) whose second half the worker
    computed, since the process started (tests)."""
    return int(BOX[B_SERVED])


def _after_fork():
    BOX[:] = 0
    _state.update(pid=None, low=0, again=0, empty=0, good=0)


_NO_FORK_HOOK = not hasattr(os, "register_at_fork")
if not _NO_FORK_HOOK:
    os.register_at_fork(after_in_child=_after_fork)
