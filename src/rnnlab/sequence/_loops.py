"""The loop shapes of the compiled kernels, written once for every family: templates that
_compiled.specialise compiles per family (kernels.py says where each runs). Each leaves
these names open, bound per family: G, F, S, CB (ints: gates, folded gates, store blocks,
c' block), HAS_C, DIRECT (bools: a cell state; a direct path from h to h'), FORWARD_UNITS
and BACK_UNITS (the family's scalar units; their rows' layouts: cells/family.py). A unit
loop writes into few arrays, its flags constants per call site, so that LLVM vectorises
it (many arrays, or a runtime flag: up to 25% slower); ``wide()`` first: in 512-bit lanes.
"""
# ruff: noqa: F821
# flake8: noqa: F821
import numpy as np
from numba import carray, prange

from ..tuning import PAIR_STEAL
from ._atomics import atomic_add, atomic_cas, atomic_load, atomic_xchg, f32_at, ticks
from ._compiled import _copy, _recurrent, _rowdots, _wait_for, f32, inline, wide
from ._loops_in import PAIR_IN, SEQ_IN_ROWS, SEQUENCE_IN  # noqa: F401  (_compiled.SHAPES)
from ._loops_in import _claim_or_wait, _enter, _look, _post_nine, _served
from ._tiles import panel_rows
from .pair import B_ARGS, B_FAM, B_H, B_I, B_N, B_SEQ, B_STATE

def SEQUENCE(gx, w_hh_t, bias, b_rest, h0, c0, reverse, out, c_n, rows, store, record,
             lo, hi):
    """The time loop of one direction. gx (T, N, G*H): x W_ih^T; bias (G*H,): b_ih with the
    b_hh of the folded gates, added to gx step by step (empty: none, or gx has it; one
    pass while gx[t] is hot, not NumPy's pass over all of gx: LSTM (50, 16, 32, 32) 18 us
    less of 0.29 ms); w_hh_t (H_out, G*H), or with rows=True W_hh itself (G*H, H_out);
    b_rest: the b_hh of the other gates ((G-F)*H, zeros without bias); h0, c0 (N, H)
    (c0: any (N, H) array without a cell state); out (T, N, H) the outputs; c_n (N, H)
    receives the last c. record=True leaves the gate values in gx and the stored values in
    store (T, N, S*H), the NumPy step's layout (store is not touched otherwise). Only rows
    lo:hi are read and written (lo even: rows are computed in pairs from lo, as the whole
    call pairs them, so a range gives the whole call's bits; halves.py)."""
    wide()
    T, N, GH = gx.shape
    H = GH // G
    FH = F * H
    A = np.empty((hi - lo, GH), f32)
    u = np.empty(GH + S * H, f32)
    cs = np.empty(H, f32)
    for n in range(lo, hi if HAS_C else lo):     # (_copy: not c_n[lo:hi] = c0[lo:hi])
        _copy(c_n[n], c0[n], 0)
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev = h0 if s == 0 else out[t + 1 if reverse else t - 1]
        if bias.shape[0] > 0:
            for n in range(lo, hi):
                for j in range(GH):
                    gx[t, n, j] += bias[j]
        _recurrent(A, gx[t][lo:hi], b_rest, prev[lo:hi], w_hh_t, FH, rows)
        for n in range(lo, hi):
            if record:                 # a constant flag each: LLVM drops the dead stores
                FORWARD_UNITS(A[n - lo], gx[t, n], prev[n], c_n[n], u, out[t, n], cs, 0, H,
                              H, True)
                _copy(gx[t, n], u, 0)
                _copy(store[t, n], u, GH)
            else:
                FORWARD_UNITS(A[n - lo], gx[t, n], prev[n], c_n[n], u, out[t, n], cs, 0, H,
                              H, False)
            if HAS_C:                  # c' aside first: c_n[n] as both c and c' keeps
                _copy(c_n[n], cs, 0)   # LLVM from vectorising the units (measured 3x)


def SEQUENCE_PAIR(gx0, gx1, w_hh, bias, b_rest, h0, c0, reverse, out, c_n, sync, p, wt0, wt1,
                  x2d):
    """The unrecorded time loop of one direction run by two threads at once (pair.py),
    each calling it with its p (0 or 1). Every step's units are two halves; a thread
    claims its own half first (sync[2 s + half]: 0 -> 1 + p), then, if the other thread has
    not claimed the other half within PAIR_STEAL spins, that one too, so that either
    thread alone finishes the call (a thread that is late or not running costs time, never
    a wrong or missing result). sync[2 T + s] counts the halves done; nobody starts step
    s + 1 before both halves of step s are written. sync[3 T]: the second half's input
    projection, 0 (being computed), 1 (ready) or 2 (failed: return at once), sync[3 T +
    3] the first half's (and, for a batch, each half's packed rows of W_hh with it);
    sync[3 T + 1 + p]: thread p has arrived (until the other has, a thread takes both
    halves at once). gx0, gx1 (T*N, G*B0 / G*B1): each half's x W_ih^T, without biases,
    a row per step and batch row, its gates one after the other (B0 = H // 2 units, B1
    the rest); w_hh (G*H, H) torch's layout (each half reads its own rows, which stay in
    its core's cache); bias (G*H,): b_ih with the folded b_hh; b_rest ((G-F)*H,); h0, c0
    (N, H) (c0: any (N, H) array without a cell state); out (T, N, H); c_n (N, H) the last
    c. wt0, wt1 empty: each row's products from W_hh by dot products (batch 1: the half
    of W_hh stays in L2); else a batch of rows, gx0 and gx1 empty and x2d (T*N, I) the
    input: each half projects its step's rows of x2d and makes the products of all rows at
    once, both in register tiles (_tiles.product: no projection of every step written out
    and read back: both threads' memory traffic slowed it), from wt0 / wt1: the half's
    rows of W_ih, transposed, gate by gate, then of W_hh, in panels (batch_panels)."""
    wide()
    T, N, H = out.shape
    FH = F * H
    Bm = H - H // 2
    a, xa = np.empty(G * Bm, f32), np.empty(G * Bm, f32)
    batch = gx0.shape[0] == 0
    I, R = (x2d.shape[1], N) if batch else (0, 0)
    A, X = np.empty(R * G * Bm, f32), np.empty(R * G * Bm, f32)
    bx = np.empty((2, R * G * Bm), f32)       # each half's biases, gate after gate: b_ih
    brest = np.empty((2, G * Bm), f32)        # with the folded b_hh, and the rest of b_hh
    for hf in range(2 if batch else 0):
        B, lo = (H // 2, 0) if hf == 0 else (Bm, H // 2)
        for g in range(G):
            for jj in range(B):
                for n in range(R):
                    bx[hf, (n * G + g) * B + jj] = bias[g * H + lo + jj]
                if g >= F:
                    brest[hf, (g - F) * B + jj] = b_rest[(g - F) * H + lo + jj]
    u = np.empty((G + S) * Bm, f32)
    cs = np.empty(Bm, f32)
    hv = np.empty(H, f32)
    atomic_xchg(sync, 3 * T + 1 + p, 1)                # here
    _wait_for(sync, 3 * T, 1, -1)
    if atomic_load(sync, 3 * T) != 1:
        return
    _wait_for(sync, 3 * T + 3, 1, -1)        # the first half's too: the worker may come
    if atomic_load(sync, 3 * T + 3) != 1:    # first and take both halves of a step
        return
    for s in range(T if batch else 0):       # a batch (the batch-1 loop below is kept
        t = T - 1 - s if reverse else s      # apart: in one loop it ran ~3% slower)
        prev = h0 if s == 0 else out[t + 1 if reverse else t - 1]
        cprev = c0 if s == 0 else c_n
        for k in range(2):
            half = p if k == 0 else 1 - p
            if _claimed(sync, T, s, k, half, p):
                PAIR_BATCH(X, A, bx[half], brest[half], x2d[t * N:t * N + N],
                           wt0 if half == 0 else wt1, I, prev, cprev, out[t], c_n, u, cs,
                           0 if half == 0 else H // 2, H // 2 if half == 0 else Bm)
                atomic_add(sync, 2 * T + s, 1)
        _wait_for(sync, 2 * T + s, 2, -1)
    for s in range(0 if batch else T):
        t = T - 1 - s if reverse else s
        prev = h0 if s == 0 else out[t + 1 if reverse else t - 1]
        cprev = c0 if s == 0 else c_n
        back = s % 2 == 1       # W_hh's rows backwards every other step (_rowdots)
        for k in range(2):
            half = p if k == 0 else 1 - p
            if not _claimed(sync, T, s, k, half, p):
                continue
            gx = gx0 if half == 0 else gx1
            lo = 0 if half == 0 else H // 2
            B = gx.shape[1] // G        # the units work on rows of their own (offset 0):
            for n in range(N):          # LLVM vectorises them only so (measured 3x)
                tn = t * N + n
                _copy(hv, prev[n], 0)   # h here first: the other half's lines all at once
                for q in range(G):
                    g = G - 1 - q if back else q
                    r0 = g * H + lo
                    _rowdots(a, g * B, w_hh, r0, B, hv, back)
                    if g < F:
                        for jj in range(B):
                            a[g * B + jj] += gx[tn, g * B + jj] + bias[r0 + jj]
                    else:
                        for jj in range(B):
                            a[g * B + jj] += b_rest[r0 + jj - FH]
                            xa[g * B + jj] = gx[tn, g * B + jj] + bias[r0 + jj]
                FORWARD_UNITS(a, xa, prev[n, lo:lo + B], cprev[n, lo:lo + B], u,
                              out[t, n, lo:lo + B], cs, 0, B, B, False)
                if HAS_C:
                    _copy(c_n[n, lo:lo + B], cs, 0)
            atomic_add(sync, 2 * T + s, 1)
        _wait_for(sync, 2 * T + s, 2, -1)


@inline
def _claimed(sync, T, s, k, half, p):
    """Whether thread p takes half ``half`` of step s (k = 0: its own, claimed at once;
    k = 1: the other's, if that thread has not claimed it within PAIR_STEAL spins)."""
    if k == 1 and atomic_load(sync, 3 * T + 2 - p) != 0:   # the other one is here:
        _wait_for(sync, 2 * s + half, 1, PAIR_STEAL)          # its half first
    if k == 1 and atomic_load(sync, 2 * s + half) != 0:   # taken: no write to the
        return False                                      # line the other reads
    return atomic_cas(sync, 2 * s + half, 0, 1 + p) == 0  # 1 + p: who took it


def PAIR_BATCH(X, A, bx, brest, x_t, wt, I, prev, cprev, out_t, c_n, u, cs, lo, B):
    """One half's step of a batch on the pair (SEQUENCE_PAIR): bias + x_t W_ih^T into X,
    + h W_hh^T into A, in register tiles, then the units, as SEQUENCE_IN's step. Compiled
    on its own (_compiled.CALLED): inside SEQUENCE_PAIR it cost the batch-1 loop ~4%."""
    wide()
    N = prev.shape[0]
    Xh = X[:N * G * B].reshape(N, G * B)
    Ah = A[:N * G * B].reshape(N, G * B)
    PI = panel_rows(G * B, I)                             # W_ih's panels' rows (in_panels)
    _recurrent(Xh, bx[:N * G * B].reshape(N, G * B), brest, x_t, wt[:PI], G * B, False)
    _recurrent(Ah, Xh, brest, prev, wt[PI:], F * B, False)
    for n in range(N):
        FORWARD_UNITS(Ah[n], Xh[n], prev[n, lo:lo + B], cprev[n, lo:lo + B], u,
                      out_t[n, lo:lo + B], cs, 0, B, B, False)
        if HAS_C:
            _copy(c_n[n, lo:lo + B], cs, 0)


def SEQUENCE_BACK(dout, has_dout, dh, dc, acts, store, h0, c0, out, w_hh, reverse, dgx, dgr,
                  lo, hi):
    """BPTT of one direction. dout (T, N, H) upstream gradient of the outputs (read only
    when has_dout); dh (N, H), dc (N, H) (any (N, H) array without a cell state): the
    gradients from after the last step, updated in place to those of h0 and c0; acts,
    store: the recording forward's gx and store; h0, c0, out: its states; w_hh: W_hh
    (G*H, H) in panels (linalg.in_panels of W_hh^T); dgx (T, N, G*H) receives d(x W_ih^T
    + b_ih), dgr (T, N, (G-F)*H) the d(h W_h + b_h) of the gates past F. Only rows lo:hi
    (lo even, as SEQUENCE's)."""
    wide()
    T, N, GH = acts.shape
    H = GH // G
    FH = F * H
    XB = GH + H
    u = np.empty(XB + GH - FH, f32)
    dht = np.empty(H, f32)
    dcs = np.empty(H, f32)
    Dg = np.empty((N, GH), f32)
    Dd = np.empty((N, H), f32)
    Z = np.zeros(H, f32)
    for s in range(T):
        t = s if reverse else T - 1 - s                  # the forward's steps, last first
        p = t + 1 if reverse else t - 1
        for n in range(lo, hi):
            for j in range(H):
                dht[j] = dh[n, j] + dout[t, n, j] if has_dout else dh[n, j]
            hp = h0[n] if s == T - 1 else out[p, n]
            cp = c0[n] if s == T - 1 or not HAS_C else store[p, n, CB * H:(CB + 1) * H]
            d = dgx[t, n] if FH == GH and not DIRECT else u
            BACK_UNITS(dht, dc[n], acts[t, n], store[t, n], hp, cp, d, dcs, H)
            if HAS_C:                  # dc_prev aside first, as SEQUENCE's c': dc[n] as
                _copy(dc[n], dcs, 0)   # both dc and dc_prev kept the units scalar
            if FH < GH or DIRECT:
                _copy(dgx[t, n, :FH], u, 0)
            if FH < GH:                                  # d gh: [folded | the others]
                _copy(Dg[n], u, 0)
                _copy(dgx[t, n, FH:], u, XB)
                _copy(dgr[t, n], u, FH)
            if DIRECT:
                _copy(Dd[n], u, GH)
        _recurrent(dh[lo:hi], Dd[lo:hi], Z, (Dg if FH < GH else dgx[t])[lo:hi], w_hh,
                   H if DIRECT else 0, False)            # dh = direct + d gh W_hh


def STEP(gx, gh, bias, b_rest, h, c, h_new, store):
    """One step of N rows (the driver's own loop, where BLAS does the matmuls) with the
    family step's arguments: gx = x W_ih^T, gh = h W_hh^T without biases; bias (G*H,):
    b_ih with the folded b_hh; b_rest ((G-F)*H,): the other b_hh. Leaves the gate values
    in gx and the stored values in store, as the NumPy step."""
    wide()
    N, GH = gx.shape
    H = GH // G
    FH = F * H
    a, xa = np.empty(GH, f32), np.empty(GH, f32)
    u, cs = np.empty(GH + S * H, f32), np.empty(H, f32)
    for n in range(N):
        for k in range(FH):            # first the sums (inside the unit loop: 7x slower)
            a[k] = (gx[n, k] + bias[k]) + gh[n, k]
        for k in range(FH, GH):
            a[k] = gh[n, k] + b_rest[k - FH]
            xa[k] = gx[n, k] + bias[k]
        FORWARD_UNITS(a, xa, h[n], c[n], u, h_new[n], cs, 0, H, H, True)
        _copy(gx[n], u, 0)
        _copy(store[n], u, GH)                           # c' among them


def BACK_STEP(dh_new, dc_new, acts, store, h, c, dgx, dgr, direct, dc_prev):
    """One back step of N rows with the family back's results: dgx, dgr, the direct dh
    and dc_prev (cell state only)."""
    wide()
    N, GH = acts.shape
    H = GH // G
    FH = F * H
    XB = GH + H
    u = np.empty(XB + GH - FH, f32)
    for n in range(N):
        d = dgx[n] if FH == GH and not DIRECT else u
        BACK_UNITS(dh_new[n], dc_new[n], acts[n], store[n], h[n], c[n], d, dc_prev[n],
                   H)
        if FH < GH or DIRECT:
            _copy(dgx[n, :FH], u, 0)
        if FH < GH:
            _copy(dgx[n, FH:], u, XB)
            _copy(dgr[n], u, FH)
        if DIRECT:
            _copy(direct[n], u, GH)


def CELL(ax, ah, has_h, b_ih, b_hh, h, c, h_new, c_new):
    """The gates of one step from BLAS's products (layer.step and freeze() at batch 1-4):
    ax = x W_ih^T (N, G*H), ah = h W_hh^T (read only with has_h; without it ax is
    [x | h] [W_ih | W_hh]^T, folded families only); b_ih, b_hh (G*H,) (zeros without
    bias); h, c (N, H) (c: any (N, H) array without a cell state). Writes h_new (and
    c_new)."""
    wide()
    N, GH = ax.shape
    H = GH // G
    FH = F * H
    a, xa = np.empty(GH, f32), np.empty(GH, f32)
    u = np.empty(GH + S * H, f32)
    for n in range(N):
        if has_h:                                        # torch's sum
            for k in range(FH):
                a[k] = (ax[n, k] + b_ih[k]) + (ah[n, k] + b_hh[k])
        else:
            for k in range(FH):
                a[k] = (ax[n, k] + b_ih[k]) + b_hh[k]
        for k in range(FH, GH):
            a[k] = ah[n, k] + b_hh[k]
            xa[k] = ax[n, k] + b_ih[k]
        FORWARD_UNITS(a, xa, h[n], c[n], u, h_new[n], c_new[n], 0, H, H, False)


def ROWS_BLOCK(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, lo, hi):
    """Units lo..hi - 1 of one step of a few rows (ROWS, ROWS_ONE): reads only those
    units' rows of the weights."""
    N, H = h.shape
    GH = G * H
    FH = F * H
    a, xa = np.empty(GH, f32), np.empty(GH, f32)
    u = np.empty(GH + S * H, f32)
    for n in range(N):
        for k0 in range(0, GH, H):
            _rowdots(xa, k0 + lo, w_ih, k0 + lo, hi - lo, x[n], False)
            _rowdots(a, k0 + lo, w_hh, k0 + lo, hi - lo, h[n], False)
            for k in range(k0 + lo, k0 + hi):
                if k < FH:
                    a[k] = xa[k] + a[k] + (b_ih[k] + b_hh[k])
                else:
                    a[k] = a[k] + b_hh[k]
                    xa[k] = xa[k] + b_ih[k]
        FORWARD_UNITS(a, xa, h[n], c[n], u, h_new[n], c_new[n], lo, hi, H, False)


def ROWS(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, P):
    """One step of a few rows from the weights in torch's layout (w_ih (G*H, I), w_hh
    (G*H, H), biases (G*H,), zeros when absent), the units in P blocks over numba's
    threads (prange). Each block reads only its units' weight rows (half the weights each
    on 2 cores: a 2-layer GRU at H = 256, 3 MB, then fits in the cores' own caches). Dot
    products summed in any order (reassoc)."""
    H = h.shape[1]
    for p in prange(P):
        ROWS_BLOCK(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, p * H // P,
                   (p + 1) * H // P)


def ROWS_ONE(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, role, box, key, gen):
    """ROWS in the calling thread, in one of three roles (one call site of ROWS_BLOCK, so
    that the family's units are compiled once):

    - role 0: the whole step (the small layers' step, kernels.row_step_for). Returns 0.
    - role 1, the pair's caller (pair_step.py): posts the request (the arrays' addresses)
      in ``box`` (layout: pair.py, B_*) for family ``key``, computes the first half of
      the units, then claims the second (box[B_CLAIM]: s - 1 -> s, which only request s
      can win): won, it computes that half too and returns 0; lost, the worker has it:
      waits for it, returns the ticks waited + 1.
    - role 2, the worker: spins (pause) for requests of family ``key`` and claims their
      second halves, reading the arrays from the addresses; leaves when box[B_BUDGET]
      ticks pass without one, when a request of another family is posted, or when
      box[B_GEN] is no longer ``gen`` (a sequence call wants the worker). Returns the
      requests it served. Its own array arguments are not read. Between requests it
      yields the core (sched_yield) at every look: a thread waiting for that core (the
      caller's BLAS threads, another process) gets it at once."""
    N, H = h.shape
    I = x.shape[1]
    s, lo, hi, stage, out, seen = atomic_load(box, B_SEQ) + 1, 0, H, 0, 0, -1
    if role == 1:
        _post_nine(box, x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new)
        box[B_N], box[B_I], box[B_H], box[B_FAM] = N, I, H, key
        atomic_add(box, B_SEQ, 1)                         # posted: the worker may claim
        hi = H // 2
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
            N, I, H = box[B_N], box[B_I], box[B_H]
            GH = G * H
            x = carray(f32_at(box[B_ARGS]), (N, I))
            h = carray(f32_at(box[B_ARGS + 1]), (N, H))
            c = carray(f32_at(box[B_ARGS + 2]), (N, H))
            w_ih = carray(f32_at(box[B_ARGS + 3]), (GH, I))
            w_hh = carray(f32_at(box[B_ARGS + 4]), (GH, H))
            b_ih = carray(f32_at(box[B_ARGS + 5]), (GH,))
            b_hh = carray(f32_at(box[B_ARGS + 6]), (GH,))
            h_new = carray(f32_at(box[B_ARGS + 7]), (N, H))
            c_new = carray(f32_at(box[B_ARGS + 8]), (N, H))
            lo, hi = H // 2, H
        elif stage == 1:
            if role == 0:
                break
            out = _claim_or_wait(box, s)
            if out:                                       # the worker has it: done
                break
            lo, hi = H // 2, H
        elif stage == 2:
            break
        ROWS_BLOCK(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, lo, hi)
        stage += 1
        if role == 2:
            _served(box, s)
            out += 1
            last = ticks()
    if role == 2:
        atomic_xchg(box, B_STATE, 0)
    return out
