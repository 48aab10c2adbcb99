"""Calls whose two halves meet in the step box without Python or the GIL: an unrecorded
batch's rows in two halves with the input projected inside the loop (SEQUENCE_IN), and a
batch-1 sequence's units in two halves (PAIR_IN, the pair's loop with both projections
made here). Templates that _compiled.specialise compiles per family, as _loops' (the same
open names: G, F, S, HAS_C, FORWARD_UNITS; SEQ_IN_ROWS, inlined, and _loops.SEQUENCE_PAIR,
compiled on its own and called: _compiled.HELPERS, CALLED). Where they run:
halves.unrecorded_wanted, pair.wanted (batch 1); the Python side: pair_step.halves,
pair_step.pair_in.
"""
# ruff: noqa: F821
# flake8: noqa: F821
import numpy as np
from numba import carray

from ..tuning import PROJECT_FEW_MIN, PROJECT_FEW_ROWS, SEQ_IN_CHUNK
from ._atomics import (address, atomic_add, atomic_cas, atomic_load, atomic_xchg, cpu_relax,
                       f32_at, i64_at, sched_yield, sgemm_nt, ticks)
from ._compiled import _copy, _recurrent, _wait_for, f32, inline, project_few, wide
from ._kept import kept_rows, project_kept
from ._tiles import PANEL, panel_rows
from .pair import (B_ARGS, B_BUDGET, B_CLAIM, B_DONE, B_FAM, B_FN, B_GEN, B_H, B_I, B_MORE,
                   B_N, B_REV, B_SEQ, B_SERVED, B_SHARE, B_SPIN, B_STATE, B_T, B_TOOK,
                   B_WAKE)


# The step box's protocol (pair.py's layout), shared by _loops.ROWS_ONE (a step's halves
# of units), SEQUENCE_IN (a batch's halves of rows) and PAIR_IN (a batch-1 sequence's
# halves of units): a caller posts a request s (its arrays: _post_nine; B_SEQ: s - 1 -> s)
# and claims its second half after its own (B_CLAIM: s - 1 -> s, which only request s can
# win); a worker spinning for the caller's key claims it first or not.

@inline
def _enter(box, key):
    """A worker starts spinning for ``key``: returns the requests posted so far (a request
    posted before it came is claimed all the same; only a newer one of another key is a
    reason to leave)."""
    seen = atomic_load(box, B_SEQ)
    atomic_xchg(box, B_STATE, key)
    atomic_xchg(box, B_WAKE, 0)
    return seen


@inline
def _look(box, key, gen, seen, last):
    """One look of a spinning worker: (s, seen) with s the request it claimed, 0 none yet
    (it paused and yielded its core: a thread waiting for that core gets it at once), -1
    leave (box[B_GEN] is no longer ``gen``, a request of another key came, or
    box[B_BUDGET] ticks passed since ``last`` without one)."""
    if atomic_load(box, B_GEN) != gen:
        return -1, seen
    s = atomic_load(box, B_SEQ)
    if s != seen:                                   # posted since the last look
        seen = s
        if box[B_FAM] != key:                       # another key's request
            return -1, seen
    if atomic_load(box, B_CLAIM) != s - 1 or box[B_FAM] != key:   # nothing of its own
        cpu_relax()
        sched_yield()
        return (-1 if ticks() - last > box[B_BUDGET] else 0), seen
    if atomic_cas(box, B_CLAIM, s - 1, s) != s - 1:
        return 0, seen
    return s, seen


@inline
def _claim_or_wait(box, s):
    """The caller of request s, its own half done: 0 when it claimed the second half (the
    worker did not come in time: it runs that half too), else the ticks it waited for the
    worker's half + 1."""
    if atomic_cas(box, B_CLAIM, s - 1, s) == s - 1:
        return 0
    t0 = ticks()
    _wait_for(box, B_DONE, s, -1)
    return ticks() - t0 + 1


@inline
def _post_nine(box, a0, a1, a2, a3, a4, a5, a6, a7, a8):
    """A caller's request: its nine arrays' addresses into box[B_ARGS:B_ARGS + 9]."""
    box[B_ARGS], box[B_ARGS + 1], box[B_ARGS + 2] = address(a0), address(a1), address(a2)
    box[B_ARGS + 3], box[B_ARGS + 4] = address(a3), address(a4)
    box[B_ARGS + 5], box[B_ARGS + 6] = address(a5), address(a6)
    box[B_ARGS + 7], box[B_ARGS + 8] = address(a7), address(a8)


@inline
def _served(box, s):
    """The worker finished request s's second half."""
    atomic_xchg(box, B_DONE, s)
    atomic_add(box, B_SERVED, 1)


@inline
def seq_in_steps(T, R, GH, I):
    """Steps whose input projections SEQ_IN_ROWS makes at once: as many as fit
    SEQ_IN_CHUNK bytes (R rows of G*H float32 a step, and of their I inputs: a wide input
    does not grow the block of input rows either), at least 1, at most T."""
    return max(1, min(T, SEQ_IN_CHUNK // max(4 * R * max(GH, I), 1)))


def SEQ_IN_ROWS(x, w_ih_t, bias, w_hh_t, b_rest, h0, c0, reverse, out, c_n, lo, hi):
    """Rows lo:hi (lo even) of an unrecorded call with the input projection made inside
    the loop (SEQUENCE_IN): every C steps the next C steps' rows are copied into one
    block (xc) and projected at once into a scratch (bias + x W_ih^T in register tiles,
    _recurrent), then each step adds h W_hh^T as SEQUENCE does; no gx array of all steps.
    C = seq_in_steps(...): up to SEQ_IN_CHUNK bytes of projections, so W_ih^T is read once
    per C steps, not between every two reads of W_hh^T (tuning.SEQ_IN_CHUNK). Each row's
    sums are the same however the rows are grouped: the same bits for any C."""
    T, H, I = x.shape[0], out.shape[2], x.shape[2]
    GH = G * H
    FH = F * H
    R = hi - lo
    C = seq_in_steps(T, R, GH, I)
    A = np.empty((R, GH), f32)
    X = np.empty((C * R, GH), f32)
    BX = np.empty((C * R, GH), f32)
    xc = np.empty((C * R, I), f32)
    for n in range(C * R):
        _copy(BX[n], bias, 0)
    u = np.empty(GH + S * H, f32)
    cs = np.empty(H, f32)
    for n in range(lo, hi if HAS_C else lo):
        _copy(c_n[n], c0[n], 0)
    for s in range(T):
        t = T - 1 - s if reverse else s
        b = s % C
        if b == 0:                                  # the next C steps' rows, projected
            c = min(C, T - s)
            for q in range(c):
                tq = t - q if reverse else t + q
                for n in range(R):
                    _copy(xc[q * R + n], x[tq, lo + n], 0)
            _recurrent(X[:c * R], BX[:c * R], b_rest, xc[:c * R], w_ih_t, GH, False)
        Xs = X[b * R:(b + 1) * R]
        prev = h0 if s == 0 else out[t + 1 if reverse else t - 1]
        _recurrent(A, Xs, b_rest, prev[lo:hi], w_hh_t, FH, False)
        for n in range(lo, hi):
            FORWARD_UNITS(A[n - lo], Xs[n - lo], prev[n], c_n[n], u, out[t, n], cs, 0, H, H,
                          False)
            if HAS_C:
                _copy(c_n[n], cs, 0)


def SEQUENCE_IN(x, w_ih_t, bias, w_hh_t, b_rest, h0, c0, reverse, out, c_n, role, box, key,
                gen):
    """An unrecorded call of N >= 3 rows with the input projection inside the loop
    (SEQ_IN_ROWS): x (T, N, I); w_ih_t, w_hh_t: W_ih^T (I, G*H), W_hh^T (H, G*H) in
    panels (linalg.in_panels: (P*I, 32), (P*H, 32), P = ceil(G*H / 32)); bias (G*H,)
    b_ih with the folded b_hh, b_rest ((G-F)*H,) the rest (zeros without bias); h0, c0,
    c_n (N, H) (c0: h0 without a cell state); out (T, N, H). Its rows in two halves, 0:m
    and m:N (m = halves.first_half(N), even: the whole call's bits), in one of three
    roles, as ROWS_ONE's steps (the same box and claims, its requests marked by ``key``):

    - role 0: both halves here, one after the other. Returns 0.
    - role 1, the caller: posts the arrays' addresses in ``box``, runs rows 0:m, then
      claims m:N: won (the worker did not come in time), runs them too and returns 0;
      lost, waits for the worker's half and returns the ticks waited + 1.
    - role 2, the worker: spins for requests of ``key`` and claims their second halves,
      until box[B_BUDGET] ticks pass without one, a request of another key is posted or
      box[B_GEN] is no longer ``gen``. Returns the halves it ran. Its own array arguments
      are not read.

    No Python and no GIL between the two threads: a posted request is met by a spinning
    worker in well under a microsecond (a job through the pair's queue: a wake and two
    GIL hand-overs, 30-50 us each way here)."""
    wide()                              # 512-bit lanes (_compiled.wide)
    s, stage, res, seen = atomic_load(box, B_SEQ) + 1, 0, 0, -1
    N = x.shape[1]
    m = 2 * ((N + 2) // 4)
    lo, hi = 0, N
    if role == 1:
        _post_nine(box, x, w_ih_t, bias, w_hh_t, b_rest, h0, c0, out, c_n)
        box[B_N], box[B_I], box[B_H], box[B_FAM] = N, x.shape[2], out.shape[2], key
        box[B_T], box[B_REV] = x.shape[0], 1 if reverse else 0
        atomic_add(box, B_SEQ, 1)                         # posted: the worker may claim
        hi = m
    elif role == 2:
        seen = _enter(box, key)
    last = ticks()
    while True:
        if role == 2:
            s, seen = _look(box, key, gen, seen, last)
            if s < 0:
                break
            if s == 0:
                continue
            T, N, I, H = box[B_T], box[B_N], box[B_I], box[B_H]
            GH = G * H
            x = carray(f32_at(box[B_ARGS]), (T, N, I))
            w_ih_t = carray(f32_at(box[B_ARGS + 1]), (panel_rows(GH, I), PANEL))   # panels
            bias = carray(f32_at(box[B_ARGS + 2]), (GH,))
            w_hh_t = carray(f32_at(box[B_ARGS + 3]), (panel_rows(GH, H), PANEL))
            b_rest = carray(f32_at(box[B_ARGS + 4]), (GH - F * H,))
            h0 = carray(f32_at(box[B_ARGS + 5]), (N, H))
            c0 = carray(f32_at(box[B_ARGS + 6]), (N, H))
            out = carray(f32_at(box[B_ARGS + 7]), (T, N, H))
            c_n = carray(f32_at(box[B_ARGS + 8]), (N, H))
            reverse = box[B_REV] != 0
            lo, hi = 2 * ((N + 2) // 4), N
        elif stage == 1:
            if role == 0:
                break
            res = _claim_or_wait(box, s)
            if res:                                       # the worker has it: done
                break
            lo, hi = m, N
        elif stage == 2:
            break
        if role == 0:
            lo, hi = 0, N
        SEQ_IN_ROWS(x, w_ih_t, bias, w_hh_t, b_rest, h0, c0, reverse, out, c_n, lo, hi)
        stage += 1
        if role == 0:
            break
        if role == 2:
            _served(box, s)
            res += 1
            last = ticks()
    if role == 2:
        atomic_xchg(box, B_STATE, 0)
    return res


@inline
def _project_half(x2d, w_ih, gx, kept, G, H, half, fn):
    """gx = x2d @ (the rows of W_ih of half ``half``'s units, gate by gate).T: (T*N, G*B),
    as pair.run's projection (linalg.project_gates): register tiles from the half's panels
    kept between calls (``kept`` not empty: _kept.project_kept, linalg.kept_halves),
    project_few for a few rows, else one OpenBLAS product a gate (sgemm at address ``fn``)
    from W_ih's rows as they are."""
    M, I = x2d.shape
    lo = 0 if half == 0 else H // 2
    B = gx.shape[1] // G
    # (G read at run time for project_kept: as the family's literal it compiled it again
    # for each family, ~5 s each; one version serves all)
    if kept.shape[0] > 0:
        project_kept(gx, x2d, kept, w_ih, w_ih.shape[0] // H, H, lo, B)
    elif 2 <= M <= PROJECT_FEW_ROWS and M * B > PROJECT_FEW_MIN:
        project_few(gx, x2d, w_ih.reshape(G, H, I), lo, lo + B)
    else:
        for g in range(G):
            sgemm_nt(fn, M, B, I, x2d, I, w_ih[g * H + lo:], I, gx[:, g * B:], G * B)


def PAIR_IN(x2d, w_ih, w_hh, bias, b_rest, h0, c0, reverse, out, c_n, gx0, gx1, sync, fn,
            wt0, wt1, role, box, key, gen):
    """The unrecorded time loop of one direction by units on the pair (_loops.SEQUENCE_PAIR,
    called from here), the kernel "pair". x2d (T*N, I), w_ih (G*H, I), w_hh
    (G*H, H) torch's layout; bias, b_rest, h0, c0, out, c_n, sync (3 T + 4,), wt0, wt1 as
    SEQUENCE_PAIR's; gx0, gx1 (T*N, G*B) each half's input projection (empty for a
    batch: SEQUENCE_PAIR projects x2d's rows as it goes); fn the address of
    OpenBLAS's cblas_sgemm (blas.sgemm_address) for the projections of roles 0-2.
    C-contiguous float32. In one of five roles:

    - role 3 + p: thread p of pair.run (the job through the queue; pair.loop): the loop
      alone, the projections (batch 1) or wt0, wt1 (a batch) made by the Python side;
      w_ih not read, x2d only by a batch's loop.
    - without Python or the GIL between the threads (a batch-1 sequence, pair_step.pair_in;
      sync zeros; wt0, wt1 empty or linalg.kept_halves' buffers, each half's projection
      then in tiles from its rows of W_ih in panels kept between calls), as SEQUENCE_IN's
      roles, the same box and claims:
      role 0: both projections here, then the loop alone (it takes both halves of every
      step). Returns 0.
      role 1, the caller: posts the arrays' addresses, projects half 0, then claims half
      1's projection: won (no worker came in time), projects it too and runs the loop
      alone, returning 0; lost, runs its side of the loop (p = 0) with the worker's, then
      waits until the worker is done with every array, returning the ticks waited + 1.
      Either way it then counts the steps' halves the worker took into box[B_TOOK] and
      sets the spinning worker's budget for the next call: box[B_SHARE] / 1024 of its
      own ticks, at least box[B_SPIN] (what Python did after the call: ~25-60 us there,
      the caches cold after the loop).
      role 2, the worker: spins for requests of ``key``; a claimed one: half 1's
      projection, its side of the loop (p = 1), done. Returns the requests it served.

    The loop's own rules hold in every role: a half the other thread has not claimed in
    time is taken (time, never a result), so the caller alone always finishes."""
    wide()                              # 512-bit lanes (_compiled.wide)
    s, res, seen, alone = atomic_load(box, B_SEQ) + 1, 0, -1, role == 0
    start = ticks()
    p = role - 3 if role >= 3 else (1 if role == 2 else 0)
    T, H = out.shape[0], out.shape[2]
    if role == 1:
        _post_nine(box, x2d, w_ih, w_hh, bias, b_rest, h0, c0, out, c_n)
        box[B_MORE], box[B_MORE + 1], box[B_MORE + 2] = (address(gx0), address(gx1),
                                                         address(sync))
        box[B_MORE + 3] = address(wt0) if wt0.shape[0] > 0 else 0
        box[B_MORE + 4] = address(wt1) if wt1.shape[0] > 0 else 0
        box[B_N], box[B_I], box[B_H], box[B_FAM] = out.shape[1], x2d.shape[1], H, key
        box[B_T], box[B_REV], box[B_FN] = T, 1 if reverse else 0, fn
        atomic_add(box, B_SEQ, 1)                         # posted: the worker may claim
    elif role == 2:
        seen = _enter(box, key)
    last = ticks()
    while True:                 # one call site of each helper: each site of a called
        if role == 2:           # function is optimised again (compile time)
            s, seen = _look(box, key, gen, seen, last)
            if s < 0:
                break
            if s == 0:
                continue
            T, N, I, H = box[B_T], box[B_N], box[B_I], box[B_H]
            GH, B0, B1 = G * H, H // 2, H - H // 2
            x2d = carray(f32_at(box[B_ARGS]), (T * N, I))
            w_ih = carray(f32_at(box[B_ARGS + 1]), (GH, I))
            w_hh = carray(f32_at(box[B_ARGS + 2]), (GH, H))
            bias = carray(f32_at(box[B_ARGS + 3]), (GH,))
            b_rest = carray(f32_at(box[B_ARGS + 4]), (GH - F * H,))
            h0 = carray(f32_at(box[B_ARGS + 5]), (N, H))
            c0 = carray(f32_at(box[B_ARGS + 6]), (N, H))
            out = carray(f32_at(box[B_ARGS + 7]), (T, N, H))
            c_n = carray(f32_at(box[B_ARGS + 8]), (N, H))
            gx0 = carray(f32_at(box[B_MORE]), (T * N, G * B0))
            gx1 = carray(f32_at(box[B_MORE + 1]), (T * N, G * B1))
            sync = carray(i64_at(box[B_MORE + 2]), (3 * T + 4,))
            kept = box[B_MORE + 3] != 0
            wt0 = carray(f32_at(box[B_MORE + 3]), (kept_rows(G * B0, I) if kept else 0, PANEL))
            wt1 = carray(f32_at(box[B_MORE + 4]), (kept_rows(G * B1, I) if kept else 0, PANEL))
            reverse, fn = box[B_REV] != 0, box[B_FN]
        half = p
        while role < 3:         # the caller: half 0, then half 1 unless the worker has it
            _project_half(x2d, w_ih, gx0 if half == 0 else gx1, wt0 if half == 0 else wt1,
                          G, H, half, fn)
            atomic_xchg(sync, 3 * T + 3 if half == 0 else 3 * T, 1)
            if half == 1:
                break
            if role == 1:
                alone = atomic_cas(box, B_CLAIM, s - 1, s) == s - 1
                if not alone:
                    break
            half = 1
        SEQUENCE_PAIR(gx0, gx1, w_hh, bias, b_rest, h0, c0, reverse, out, c_n, sync, p, wt0,
                      wt1, x2d)
        if role != 2:
            break
        _served(box, s)
        res += 1
        last = ticks()
    if role == 2:
        atomic_xchg(box, B_STATE, 0)
        return res
    if role != 1:
        return 0
    if not alone:
        t0 = ticks()
        _wait_for(box, B_DONE, s, -1)
        res = ticks() - t0 + 1
    took = 0
    for i in range(2 * T):
        took += 1 if sync[i] == 2 else 0
    box[B_TOOK] = took
    box[B_BUDGET] = max(box[B_SPIN], ((ticks() - start) * box[B_SHARE]) >> 10)
    return res
