"""The compiled loops' products in register tiles (sequence/_tiles.py): every element one
fused multiply-add after another in k order, whichever tile or split computes it."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab.cells import FAMILIES
from rnnlab.nn import make_layer
from rnnlab.sequence import kernels, linalg
from torch_pairs import torch_pair

pytestmark = pytest.mark.skipif(not kernels.available(), reason="needs numba")


def _tiles():
    from rnnlab.sequence import _tiles
    return _tiles


def _exact(c, a, b):
    """c + a @ b as fma after fma in k order, each rounded once to float32 (Fractions)."""
    out = c.copy()
    for n in range(a.shape[0]):
        for j in range(b.shape[1]):
            s = Fraction(float(out[n, j]))
            for k in range(a.shape[1]):
                s = Fraction(float(np.float32(s + Fraction(float(a[n, k]))
                                              * Fraction(float(b[k, j])))))
            out[n, j] = np.float32(s)
    return out


def _data(M, K, J, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in ((M, J), (M, K), (K, J))]


@pytest.mark.parametrize("M, K, J", [(1, 1, 1), (3, 5, 7), (9, 6, 50), (17, 3, 33)])
def test_each_element_is_one_fma_after_another(M, K, J):
    c, a, b = _data(M, K, J)
    got = c.copy()
    _tiles().product(got, a, b)
    np.testing.assert_array_equal(got, _exact(c, a, b))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 19), st.integers(0, 40), st.integers(1, 75), st.integers(0, 3),
       st.booleans())
def test_the_bits_do_not_depend_on_tiles_or_splits(M, K, J, seed, special):
    """Every tile size (8, 4, 2, 1 rows; 32, 16 columns; the scalar loop past them), any
    split of the rows or columns, and the scalar path for other layouts: the same bits,
    NaN and inf as float32 arithmetic gives them."""
    c, a, b = _data(M, K, J, seed)
    if special and K:
        a[M // 2, K // 2] = np.nan
        b[K - 1, J - 1] = np.inf
    whole = c.copy()
    _tiles().product(whole, a, b)
    by_parts = c.copy()
    m, j = M // 3, J // 2
    for rows in (slice(0, m), slice(m, M)):
        for cols in (slice(0, j), slice(j, J)):
            part = np.ascontiguousarray(by_parts[rows, cols])
            _tiles().product(part, a[rows], np.ascontiguousarray(b[:, cols]))
            by_parts[rows, cols] = part
    strided = np.asfortranarray(c.copy())             # rows not contiguous: scalar loop
    _tiles().product(strided, a, b)
    np.testing.assert_array_equal(by_parts, whole)
    np.testing.assert_array_equal(strided, whole)
    with np.errstate(all="ignore"):
        ref = c.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(whole), np.isnan(ref.astype(np.float32)))
    ok = np.isfinite(ref)
    np.testing.assert_allclose(whole[ok], ref[ok], rtol=1e-4, atol=1e-4 * (K + 1))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 19), st.integers(0, 40), st.integers(1, 100), st.integers(0, 3),
       st.booleans())
def test_w_t_in_panels_gives_the_plain_layouts_bits(M, K, J, seed, special):
    """b as linalg.in_panels lays W^T out (panels of 32 columns, (P*K, 32), zeros past J):
    the same bits as b itself, for every tile, split of rows and the scalar loop (K = 1
    and J <= 32 included, where the two layouts meet)."""
    c, a, b = _data(M, K, J, seed)
    if special and K:
        a[M // 2, K // 2] = np.nan
        b[K - 1, J - 1] = np.inf
    bp = linalg.panels_of(np.ascontiguousarray(b.T))
    P = linalg.panel_count(J)
    assert bp.shape == (P * K, 32)
    np.testing.assert_array_equal(bp.reshape(P, K, 32).transpose(1, 0, 2).reshape(K, 32 * P),
                                  np.pad(b, ((0, 0), (0, 32 * P - J))))
    whole = c.copy()
    _tiles().product(whole, a, b)
    paneled = c.copy()
    m = M // 3
    for rows in (slice(0, m), slice(m, M)):
        part = np.ascontiguousarray(paneled[rows])
        _tiles().product(part, a[rows], bp)
        paneled[rows] = part
    strided = np.asfortranarray(c.copy())             # the scalar loop, in panels
    _tiles().product(strided, a, bp)
    np.testing.assert_array_equal(paneled, whole)
    np.testing.assert_array_equal(strided, whole)


@pytest.mark.parametrize("extra, layout", [(-1, "plain"), (3, "panels"), (3, "plain"),
                                           (257, "panels")])
@pytest.mark.parametrize("kc", [0, 256])
def test_sums_in_chunks_of_kc_rows_are_one_fma_after_another(extra, layout, kc):
    """8-row tiles take b by kc rows at a time (tuning.tile_plan: in L1 while every block
    passes) or all at once (0), going on from the stored sums: each element still one fma
    after another in k order, in both layouts, the rows past the 8-row blocks and the
    columns past the tiles included, whichever this CPU's KC."""
    K = 256 + extra
    c, a, b = _data(10, K, 35, seed=extra + 5)
    bp = linalg.panels_of(np.ascontiguousarray(b.T)) if layout == "panels" else b
    got = c.copy()
    _tiles().product_by(got, got, a, bp, kc)
    np.testing.assert_array_equal(got, _exact(c, a, b))
    if kc == _tiles().KC:
        again = c.copy()
        _tiles().product(again, a, bp)
        np.testing.assert_array_equal(again, got)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 19), st.sampled_from([0, 1, 7, 300]), st.integers(1, 75),
       st.integers(0, 3), st.booleans(), st.booleans())
def test_product_from_starts_the_sums_from_d(M, K, J, seed, panels, strided_d):
    """product_from(c, d, a, b): c = d + a @ b, the bits of copying d into c and adding
    a @ b there (the compiled loops' bias rows and projections start their sums from
    them so), d untouched; d may be c itself, or a view whose rows lie apart."""
    c, a, b = _data(M, K, J, seed)
    d_rows = np.random.default_rng(seed).standard_normal((M, J + 9)).astype(np.float32)
    d = d_rows[:, 3:3 + J] if strided_d else np.ascontiguousarray(d_rows[:, :J])
    d_before = d.copy()
    bp = linalg.panels_of(np.ascontiguousarray(b.T)) if panels and K else b
    want = d.copy()
    _tiles().product(want, a, bp)
    got = c.copy()
    _tiles().product_from(got, d, a, bp)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(d, d_before)
    same = d.copy()
    _tiles().product_from(same, same, a, bp)
    np.testing.assert_array_equal(same, want)


def test_product_from_with_no_k_is_d():
    """K = 0 (nothing to add): c = d, in every tile and the scalar loop (a and b views
    whose rows lie apart, as slices of the loops' arrays: the tiles' path)."""
    c, _, _ = _data(13, 0, 70)
    a, b = np.ones((13, 5), np.float32)[:, :0], np.ones((3, 70), np.float32)[:0]
    assert a.strides[1] == b.strides[1] == 4
    d = np.random.default_rng(1).standard_normal((13, 70)).astype(np.float32)
    _tiles().product_from(c, d, a, b)
    np.testing.assert_array_equal(c, d)


def test_the_tiles_plan_follows_the_cpu_numba_compiles_for():
    """AHEAD and KC are tuning.tile_plan of the CPU numba compiles for: the name in the
    key of numba's cache (a cache made for another CPU, with another plan, is not
    served)."""
    from numba.core.registry import cpu_target
    tiles, tuning = _tiles(), rnnlab.tuning
    assert tiles._target_cpu() == cpu_target.target_context.codegen().magic_tuple()[1]
    assert (tiles.AHEAD, tiles.KC) == tuning.tile_plan(tiles._target_cpu())
    assert tuning.tile_plan("sapphirerapids") == (tuning.TILE_AHEAD, tuning.TILE_KC)
    assert tuning.TILE_AHEAD > 0 and tuning.TILE_KC > 0
    assert tuning.tile_plan("znver4") == tuning.tile_plan("generic") == (0, 0)
    assert (tiles.tile_main_p is tiles.tile_main) == (tiles.AHEAD == 0)


def test_the_tiles_shapes_follow_the_features_numba_compiles_with():
    """32 vector registers (AVX-512) take 16 vectors of sums, AVX2's 16 at most 6 (their
    tiles spilled: tuning.tile_shapes), read from the features in numba's cache key."""
    from numba.core.registry import cpu_target
    tiles, tuning = _tiles(), rnnlab.tuning
    features = cpu_target.target_context.codegen().magic_tuple()[2].split(",")
    assert tiles._target_avx512() == ("+avx512f" in features)
    shapes = tuning.tile_shapes(tiles._target_avx512())
    assert ((tiles.ROWS, tiles.NV), tiles.NV4, tiles.NV2, tiles.NV1) == (
        shapes[0], shapes[1][1], shapes[2][1], shapes[3][1])
    assert tiles.PROJECT_ROWS % tiles.ROWS == 0
    for avx512, most in ((True, 16), (False, 6)):
        assert all(rows * nv <= most for rows, nv in tuning.tile_shapes(avx512))


def test_tiles_that_ask_ahead_give_the_same_bits():
    """The prefetching tiles (compiled here whatever this CPU's AHEAD) against the plain
    ones: the same bits, b in panels, K past the rows asked for ahead."""
    from numba import njit
    tiles = _tiles()
    for MR, NV in ((8, 2), (4, 4)):
        plain, ahead, step = tiles._tile(MR, NV), tiles._tile(MR, NV, 3 + MR), 16 * NV

        @njit
        def both(c1, c2, a, b, ps):
            for j in range(0, c1.shape[1], step):
                plain(c1, c1, a, b, 0, j, ps)
                ahead(c2, c2, a, b, 0, j, ps)
        c, a, b = _data(MR, 37, 128, seed=MR)
        panels = linalg.in_panels(np.ascontiguousarray(b.T).reshape(1, 128, 37), 0, 128)
        c1, c2 = c.copy(), c.copy()
        both(c1, c2, a, panels, 37 * 32)
        np.testing.assert_array_equal(c1, c2)
        assert not np.array_equal(c1, c)
        np.testing.assert_array_equal(c1, _exact(c, a, b))


@pytest.mark.parametrize("G, H, K, half", [(4, 6, 5, 0), (3, 64, 3, 1), (4, 70, 2, 1),
                                           (1, 33, 1, 0)])
def test_the_pairs_halves_in_panels(G, H, K, half):
    """linalg.kept_batch_halves, fill_batch_half: the half's units of every gate of W_ih,
    then of W_hh, each transposed into panels (batch_panels); the products from them are
    those from the plain layout."""
    rng = np.random.default_rng(H)
    w_ih = rng.standard_normal((G * H, K)).astype(np.float32)
    w_hh = rng.standard_normal((G * H, H)).astype(np.float32)
    lo, hi = linalg.half_units(H, half)
    buf = linalg.kept_batch_halves(w_ih, w_hh, G, H)[half]
    linalg.fill_batch_half(buf, w_ih, w_hh, G, H, half)
    out = linalg.batch_panels(buf, G, H, half, K)
    PI = linalg.panel_count(G * (hi - lo)) * K
    for w, part, k in ((w_ih, out[:PI], K), (w_hh, out[PI:], H)):
        plain = np.ascontiguousarray(w.reshape(G, H, k)[:, lo:hi].reshape(-1, k).T)
        x = rng.standard_normal((5, k)).astype(np.float32)
        got, want = np.zeros((5, plain.shape[1]), np.float32), np.zeros((5, plain.shape[1]),
                                                                        np.float32)
        _tiles().product(got, x, part)
        _tiles().product(want, x, plain)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(want, x @ plain, rtol=1e-5, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 40), st.integers(0, 40), st.integers(0, 1),
       st.integers(0, 10**6), st.sampled_from(["value", "nan", "-0", "same"]))
def test_kept_panels_are_w_ih_in_panels_after_any_edit(G, H, K, half, where, edit):
    """_kept.kept_panels (the pair's batch 1, linalg.kept_halves): the first call packs
    the half's rows of W_ih in panels (in_panels' layout, bit for bit); a call with the
    rows as they were packed returns the kept panels untouched (poisoned here: they stay
    so); an edit of any one element of the half's rows (a value, NaN, 0.0 <-> -0.0, which
    compare equal as floats) repacks them; an edit outside the half does not."""
    rng = np.random.default_rng(where)
    w = rng.standard_normal((G * H, K)).astype(np.float32)
    lo, hi = linalg.half_units(H, half)
    J, w3 = G * (hi - lo), w.reshape(G, H, K)
    buf = linalg.kept_halves(w, G, H, 100)[half]
    assert buf.shape == linalg.kept_shape(J, K)

    def kept():
        from rnnlab.sequence import _kept
        return _kept.kept_panels(buf, w, G, H, lo, hi - lo)
    np.testing.assert_array_equal(kept(), linalg.in_panels(w3, lo, hi))
    kept()[...] = np.nan                                    # poisoned: not repacked
    assert np.isnan(kept()).all() or J * K == 0
    if hi == lo or K == 0:
        return
    g, u, k = where % G, where % (hi - lo), where % K
    r = g * H + lo + u
    if edit == "value":
        w[r, k] += 1
    elif edit == "nan":
        w[r, k] = np.nan
    elif edit == "-0":
        w[r, k] = 0.0
        kept()
        w[r, k] = -0.0
    else:                                           # a row of the other half only
        other = g * H + (hi if half == 0 else lo - 1)
        if not 0 <= other - g * H < H:
            return
        w[other, k] += 1
        assert np.isnan(kept()).all()
        return
    np.testing.assert_array_equal(kept().view(np.int32),
                                  linalg.in_panels(w3, lo, hi).view(np.int32))


def _head(buf):
    return int(buf[0, :1].view(np.int32)[0])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.one_of(st.sampled_from([64, 96, 128, 160]), st.integers(16, 90)),
       st.one_of(st.sampled_from([32, 64, 96]), st.integers(16, 96)),
       st.one_of(st.sampled_from([64, 100, 150]), st.integers(13, 150)), st.integers(0, 1),
       st.integers(0, 10**6), st.sampled_from(["value", "nan", "-0", "other half", "none"]))
def test_projection_checked_among_its_multiply_adds(G, H, K, M, half, where, edit):
    """_kept.project_kept (the pair's batch-1 projection from kept panels): after a
    compare that found nothing changed (head 0), the next call compares the half's rows
    with their bits inside the projection's tiles (check_plan permitting); any edit of
    one element of the half's rows (a value, NaN, 0.0 -> -0.0) made between calls gives
    the projection of the edited weight, bit for bit as ``project`` from fresh panels,
    and sets the head (the next call compares first); an edit outside the half, or none,
    leaves the head 0 and the kept panels in use."""
    kept_mod = pytest.importorskip("rnnlab.sequence._kept")
    rng = np.random.default_rng(where)
    w = rng.standard_normal((G * H, K)).astype(np.float32)
    x = rng.standard_normal((M, K)).astype(np.float32)
    lo, hi = linalg.half_units(H, half)
    B, w3 = hi - lo, w.reshape(G, H, K)
    buf = linalg.kept_halves(w, G, H, M)[half]
    out = np.full((M, G * B), np.nan, np.float32)

    def want():
        got = np.empty_like(out)
        _tiles().project(got, x, linalg.in_panels(w3, lo, hi))
        return got.view(np.int32)
    assert _head(buf) == 1                              # nothing packed yet: compare first
    kept_mod.project_kept(out, x, buf, w, G, H, lo, B)
    np.testing.assert_array_equal(out.view(np.int32), want())
    kept_mod.project_kept(out, x, buf, w, G, H, lo, B)  # compared first, nothing changed
    assert _head(buf) == 0
    g, u, k = where % G, where % B, where % K
    r = g * H + lo + u
    if edit == "value":
        w[r, k] = w[r, k] + 1
    elif edit == "nan":
        w[r, k] = np.nan
    elif edit == "-0":
        w[r, k] = 0.0
        kept_mod.project_kept(out, x, buf, w, G, H, lo, B)
        kept_mod.project_kept(out, x, buf, w, G, H, lo, B)
        assert _head(buf) == 0
        w[r, k] = -0.0
    elif edit == "other half":
        w[g * H + (hi if half == 0 else lo - 1), k] += 1
    out[...] = np.nan
    kept_mod.project_kept(out, x, buf, w, G, H, lo, B)
    np.testing.assert_array_equal(out.view(np.int32), want())
    assert _head(buf) == (0 if edit in ("other half", "none") else 1)


@pytest.mark.parametrize("half", [0, 1])
def test_checked_projection_finds_an_edit_anywhere(half):
    """An edit of any element of the half's rows (every 13th here: each gate, the runs of
    every tile, the runs no tile takes, the last int32) between two calls whose compare
    runs among the multiply-adds is found there: the next call's projection is the edited
    weight's, bit for bit, and the head says the compare found it."""
    kept_mod = pytest.importorskip("rnnlab.sequence._kept")
    G, H, K = 4, 64, 64
    lo, hi = linalg.half_units(H, half)
    B = hi - lo
    M = next(m for m in range(100, 40, -1)            # some runs left to the loop after
             if kept_mod.check_plan(m, K, G, B)[0]    # the tiles (this CPU's tiles' shape)
             and (B * K // 16) % kept_mod.check_plan(m, K, G, B)[0])
    rng = np.random.default_rng(half)
    w = rng.standard_normal((G * H, K)).astype(np.float32)
    x = rng.standard_normal((M, K)).astype(np.float32)
    buf = linalg.kept_halves(w, G, H, M)[half]
    out, want = (np.empty((M, G * B), np.float32) for _ in range(2))
    for at in list(range(0, G * B * K, 13)) + [G * B * K - 1]:
        g, e = divmod(at, B * K)
        r, k = g * H + lo + e // K, e % K
        kept_mod.project_kept(out, x, buf, w, G, H, lo, B)
        kept_mod.project_kept(out, x, buf, w, G, H, lo, B)
        assert _head(buf) == 0
        w[r, k] = np.float32(at % 7 - 3.5)
        kept_mod.project_kept(out, x, buf, w, G, H, lo, B)
        _tiles().project(want, x, linalg.in_panels(w.reshape(G, H, K), lo, hi))
        assert _head(buf) == 1, (g, e)
        np.testing.assert_array_equal(out.view(np.int32), want.view(np.int32))


@pytest.mark.parametrize("G, H, K, M, planned", [            # planned: (AVX-512, AVX2)
    (4, 512, 512, 100, (True,) * 2), (4, 256, 256, 100, (True,) * 2),
    (3, 512, 512, 100, (True,) * 2), (4, 512, 512, 25, (False, True)),
    (4, 512, 512, 11, (False, False)), (4, 512, 512, 48, (True,) * 2),
    (4, 30, 5, 40, (False,) * 2), (1, 8, 16, 200, (False,) * 2),
    (3, 40, 64, 200, (False,) * 2), (2, 32, 64, 200, (True,) * 2)])
def test_check_plan_where_the_compare_hides(G, H, K, M, planned):
    """check_plan: every tile's runs one every 2^sh >= 2 steps, all tiles' runs within
    their K steps, each gate's rows covered but for fewer than n runs; no plan where a
    run would be due every step (LSTM H 512 at T = 25 with 8 x 32 tiles: slower than
    comparing first; AVX2's 6 x 16 tiles are 4 times as many, each with fewer runs),
    there are fewer tiles than gates, or the units are not whole panels of 32."""
    kept_mod = pytest.importorskip("rnnlab.sequence._kept")
    tiles_mod = _tiles()
    B = H // 2
    n, sh = kept_mod.check_plan(M, K, G, B)
    assert (n > 0) == planned[0 if tiles_mod._target_avx512() else 1]
    if n:
        tiles = (M // tiles_mod.ROWS) * (G * B // tiles_mod.COLS)
        runs = B * K // 16
        assert sh >= 1 and n << sh <= K < n << (sh + 1)
        assert G * (runs // n) <= tiles and runs - runs // n * n < n


@pytest.mark.parametrize("M", [1, 63, 64, 130])
def test_project_is_the_product_from_zero(M):
    """project(out, x, b): out = x @ b, by PROJECT_ROWS rows, whatever out held."""
    _, x, b = _data(M, 24, 40, seed=M)
    out = np.full((M, 40), np.nan, np.float32)
    _tiles().project(out, x, b)
    want = np.zeros((M, 40), np.float32)
    _tiles().product(want, x, b)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("cls", [rnnlab.LSTM, rnnlab.GRU, rnnlab.RNN])
@pytest.mark.parametrize("row_weights", [0, 1 << 30])
def test_large_batches_by_rows_or_by_units_equal_torch(cls, row_weights, monkeypatch):
    """Above COMPILED_LOOP_MAX (here 0) a batch takes the compiled loop by rows where W_hh
    has at most TILE_ROW_WEIGHTS weights a row, else the pair by units (or the driver's
    loop): torch's numbers either way, inference and training."""
    import torch
    monkeypatch.setattr(kernels, "COMPILED_LOOP_MAX", 0)
    monkeypatch.setattr(kernels, "TILE_ROW_WEIGHTS", row_weights)
    monkeypatch.setattr(linalg, "PAIR_GEMM_MIN", 0)
    tm, om = torch_pair(cls, {}, 6, 20, 1, 0)[1:]
    GH = om.weight_hh_l0.shape[0]
    by_rows = kernels.kernel_for(om.family, np.float32, 7, GH, 20, False) is not None
    assert by_rows == (row_weights > 0)
    assert linalg.gemm_rows(9, 7, GH, 20) == (row_weights == 0)
    x = np.random.default_rng(0).standard_normal((9, 7, 6)).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((9, 7, 20)).astype(np.float32)
    with rnnlab.no_grad():
        y0 = om(x)[0]
    y, _ = om.train()(x)
    om.backward(dy)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty, _ = tm(tx)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y0, ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(om.grads["weight_hh_l0"], tm.weight_hh_l0.grad.numpy(),
                               rtol=1e-4, atol=1e-4)


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(sorted(FAMILIES)), T=st.integers(8, 11), N=st.integers(5, 9),
       H=st.integers(1, 12), units=st.booleans(), reverse=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_every_family_on_the_batch_paths(kind, T, N, H, units, reverse, seed):
    """Every family with compiled units, a batch on the pair by halves of the units (each
    step projected there) or by rows in halves: the float64 NumPy path's numbers to
    float32 rounding."""
    from rnnlab.sequence import driver, halves, pair
    layer = make_layer(kind, 4, H, seed=seed, dtype=np.float32, bidirectional=reverse)
    x = np.random.default_rng(seed).standard_normal((T, N, 4)).astype(np.float32)
    old = (linalg.PAIR_GEMM_MIN, kernels.TILE_ROW_WEIGHTS, kernels.COMPILED_LOOP_MAX,
           halves.HALVES_MIN, halves.HALVES_STEP_MIN, driver.run_pair, halves.forward)
    linalg.PAIR_GEMM_MIN = kernels.COMPILED_LOOP_MAX = halves.HALVES_MIN = 0
    kernels.TILE_ROW_WEIGHTS, halves.HALVES_STEP_MIN = (0 if units else 1 << 40), 0
    pair._state["cool"] = 0.0
    taken = []
    driver.run_pair = lambda *a: taken.append("units") or old[5](*a)
    halves.forward = lambda *a: taken.append("rows") or old[6](*a)
    try:
        with rnnlab.no_grad():
            got = layer(x)[0]
    finally:
        (linalg.PAIR_GEMM_MIN, kernels.TILE_ROW_WEIGHTS, kernels.COMPILED_LOOP_MAX,
         halves.HALVES_MIN, halves.HALVES_STEP_MIN, driver.run_pair, halves.forward) = old
    if FAMILIES[kind].units is not None and pair.possible():
        assert set(taken) == {"units" if units else "rows"}, taken
    with rnnlab.no_grad():
        want = layer.to(np.float64)(x.astype(np.float64))[0]
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
