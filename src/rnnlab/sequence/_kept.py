"""Weights kept in panels between unrecorded calls, and the check that they are still the
weights' (the pair's batch 1: linalg.kept_halves, kept_panels_of; compiled, without the
GIL). Every call compares the weight's rows with the bits its panels were packed from,
bit for bit (integers: NaN and -0.0 as they are), and packs them again when any differs:
a weight written in place is never read stale.

A kept buffer, (kept_rows(J, K), PANEL) float32: a head row (its first int32: 1 when the
next call compares before it projects, 0 when the last compare found nothing changed),
the bits of the rows (bit_rows), then the rows in panels (linalg.in_panels' layout).

``project_kept`` is the projection from such a buffer. When the last compare found no
change it projects from the panels first, by the blocks' register tiles (8 x 32 with
AVX-512) that also compare the rows with their bits, a run of 16 int32 every 2^sh
multiply-add steps (the reads of 4 MB at H 512 among a projection bound by its
multiply-adds, not before it: BENCHMARKS.md, "The compare among the multiply-adds"); a
change found there: the panels are packed again, the head set, and the projection made
again from them. So a changed weight costs one projection more, once; the calls after it
compare first until one finds no change.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types

from ._tiles import (COLS, LANES, NV, PANEL, PROJECT_ROWS, ROWS, _tile, panel_rows, prefetch,
                     product, project)

#: rows before the bits in a kept buffer (linalg.KEPT_HEAD, the Python side's)
HEAD = 1

#: runs of 16 int32 a checking tile asks for ahead of the one it compares (scratch
#: fuse.py, LSTM H 512's half, T = 100, one thread, us after a 64 MB pass: none 1088,
#: 8 runs 1048, 32 runs 1014; the compare before the projection 1126)
CHECK_AHEAD = 32


def compare_run(context, builder, sig, args, k, seen):
    """A checking tile's side work in its k loop (_tiles._tile's ``check``): when k is a
    multiple of 2^sh and i = k >> sh < n, run i of wv and of bv (16 int32 each, from wo
    and bo on) XORed and ORed into ``seen`` (the running OR's phi); each asks for the run
    CHECK_AHEAD runs on. Returns the OR after it, the builder in the loop's last block."""
    i64 = ir.IntType(64)
    ivec = ir.VectorType(ir.IntType(32), LANES)
    iptr = ivec.as_pointer()
    wv, bv = (context.make_array(sig.args[x])(context, builder, args[x]) for x in (7, 8))
    wo, bo, n, sh = (context.cast(builder, args[x], sig.args[x], types.int64)
                     for x in (9, 10, 11, 12))
    i = builder.ashr(k, sh)
    due = builder.and_(builder.icmp_signed("==", builder.and_(
        k, builder.sub(builder.shl(i64(1), sh), i64(1))), i64(0)),
        builder.icmp_signed("<", i, n))
    head = builder.block
    run = builder.append_basic_block("tile.check")
    on = builder.append_basic_block("tile.on")
    builder.cbranch(due, run, on)
    builder.position_at_end(run)
    at = builder.mul(i, i64(LANES))
    got = []
    for arr, off in ((wv, wo), (bv, bo)):
        p0 = builder.gep(arr.data, [off])
        got.append(builder.load(builder.bitcast(builder.gep(p0, [at]), iptr), align=4))
        prefetch(builder, builder.gep(p0, [builder.add(at, i64(CHECK_AHEAD * LANES))]))
    ored = builder.or_(seen, builder.xor(*got))
    builder.branch(on)
    builder.position_at_end(on)
    after = builder.phi(ivec)
    after.add_incoming(seen, head)
    after.add_incoming(ored, run)
    return after


#: the checking tile, the blocks' shape (ROWS x COLS: 8 x 32 with AVX-512, 6 x 16 with AVX2
#: alone; one call site: each site of an intrinsic is its code again, compile time); it
#: does not ask for b ahead (_tiles.AHEAD, on CPUs with two multiply-add units: not
#: measured there with the compare)
tile_checked = _tile(ROWS, NV, check=compare_run)


@njit(cache=True, inline="always")
def bit_rows(J, K):
    """Rows of PANEL that hold the bits of W (K, J) in a kept buffer: its J columns', K a
    column (linalg._bit_rows)."""
    return (J * K + PANEL - 1) // PANEL


@njit(cache=True, inline="always")
def kept_rows(J, K):
    """Rows of a kept buffer for W (K, J): the head, W's bits (bit_rows), then W in
    panels (panel_rows)."""
    return HEAD + bit_rows(J, K) + panel_rows(J, K)


@njit(cache=True, inline="always")
def head_of(buf):
    """The head of a kept buffer as int32 (its first: 1, compare first; 0, not)."""
    return buf[:HEAD].reshape(HEAD * PANEL).view(np.int32)


@njit(cache=True, error_model="numpy", nogil=True)
def kept_panels(buf, w, G, H, lo, B):
    """The panels (panel_rows(G*B, K), PANEL) of W = the rows g*H + lo + u of w (G*H, K)
    (g < G, u < B: a half's units, gate after gate), transposed (linalg.in_panels' layout),
    kept between calls in ``buf`` (kept_rows(G*B, K), PANEL) float32, compared first
    (``packed_again``); the head says whether they were packed again."""
    S = bit_rows(G * B, w.shape[1])
    panels = buf[HEAD + S:]
    head_of(buf)[0] = packed_again(buf[HEAD:HEAD + S], panels, w, G, H, lo, B)
    return panels


@njit(cache=True, error_model="numpy", nogil=True)
def packed_again(seen, panels, w, G, H, lo, B):
    """Whether the panels were packed again: the rows (as ``kept_panels``) are compared
    with the bits in the rows of ``seen`` (S, PANEL) first: all the same, the kept panels
    are W's (False); else both are rewritten (True)."""
    K, J = w.shape[1], G * B
    bits = seen.reshape(seen.shape[0] * PANEL).view(np.int32)
    now = w.view(np.int32)
    diff = 0
    for g in range(G):
        for u in range(B):
            r, o = g * H + lo + u, (g * B + u) * K
            for k in range(K):
                diff |= now[r, k] ^ bits[o + k]
    if diff == 0:
        return False
    for g in range(G):
        for u in range(B):
            r, o = g * H + lo + u, (g * B + u) * K
            for k in range(K):
                bits[o + k] = now[r, k]
    out = panels.reshape(panels.shape[0] * PANEL).view(np.int32)
    for p in range(panels.shape[0] // max(K, 1)):
        for j in range(PANEL):
            col = p * PANEL + j
            for k in range(K):
                out[(p * K + k) * PANEL + j] = bits[col * K + k] if col < J else 0
    return True


@njit(cache=True, error_model="numpy", nogil=True)
def project_kept(out, x, buf, w, G, H, lo, B):
    """out (M, G*B) = x (M, K) @ W^T, W the rows of w (G*H, K) that ``kept_panels`` takes,
    from their panels kept in ``buf``: checked among the multiply-adds when the last
    compare found no change and the plan allows (``check_plan``), else compared first
    (the module's docstring). The same bits either way (``project``'s)."""
    K = x.shape[1]
    S = bit_rows(G * B, K)
    n, sh = check_plan(x.shape[0], K, G, B)
    if head_of(buf)[0] == 0 and n > 0:
        if project_checked(out, x, buf[HEAD + S:], np.ascontiguousarray(w),
                           buf[HEAD:HEAD + S], G, H, lo, B, n, sh) == 0:
            return
    project(out, x, kept_panels(buf, w, G, H, lo, B))


@njit(cache=True, inline="always")
def check_plan(M, K, G, B):
    """(n, sh): each checking tile compares n runs of 16 int32, one every 2^sh steps of
    its K; n = 0: no plan (fewer than ROWS rows, fewer tiles than gates, rows of fewer than
    16 int32 in all, units G*B not whole panels of 32 (the last columns would take the
    products' code for strided arrays: compile time), or a run due more often than every
    other step: the compare then bound by memory, not hidden: at T = 25 slower than
    comparing first, 481 against 413 us after a 64 MB pass, scratch fuse.py)."""
    tiles = (M // ROWS) * (G * B // COLS)
    per_gate = tiles // G
    runs = B * K // LANES
    if per_gate == 0 or runs == 0 or G * B % PANEL:
        return 0, 0
    n = (runs + per_gate - 1) // per_gate
    if 2 * n > K:
        return 0, 0
    sh = 1
    while n << (sh + 1) <= K:
        sh += 1
    return n, sh


@njit(cache=True, error_model="numpy", nogil=True)
def project_checked(out, x, panels, w, seen, G, H, lo, B, n, sh):
    """out = x @ panels (``project``'s bits) and the compare of the rows of w (C-contiguous)
    that the panels hold with their bits in ``seen``: nonzero when any differs. (n, sh):
    check_plan's plan (n > 0). The blocks' tiles (ROWS x COLS) compare, each its n
    runs of one gate's rows, block by block of PROJECT_ROWS rows as ``project``; the rest
    of each gate's rows (fewer than n runs) and the last rows after them (G*B whole
    panels: check_plan)."""
    M, K = x.shape
    J = G * B
    wv = w.reshape(w.size).view(np.int32)
    bv = seen.reshape(seen.size).view(np.int32)
    acc = np.zeros(LANES, np.int32)
    mb, nj = M - M % ROWS, J // COLS
    per = (B * K // LANES) // n             # runs of n a gate's rows give
    ps, t = K * PANEL, 0
    out[:] = 0
    for m0 in range(0, mb, PROJECT_ROWS):
        for jj in range(nj):
            for m in range(m0, min(m0 + PROJECT_ROWS, mb), ROWS):
                g, s = t // per, t % per
                runs = n if g < G else 0
                wo = ((g * H + lo) * K + s * n * LANES) if runs else 0
                bo = (g * B * K + s * n * LANES) if runs else 0
                tile_checked(out, out, x, panels, m, jj * COLS, ps, wv, bv, wo, bo, runs, sh,
                           acc)
                t += 1
    if mb < M:
        product(out[mb:], x[mb:], panels)
    diff = 0
    for q in range(LANES):
        diff |= acc[q]
    for g in range(G):                      # the runs no tile took, and the last int32
        for e in range(per * n * LANES, B * K):
            diff |= wv[(g * H + lo) * K + e] ^ bv[g * B * K + e]
    return diff
