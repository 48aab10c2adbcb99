"""The pair (sequence/pair.py): unrecorded batch-1 sequences on two threads.

The kernel's schedule is not up to the test (which thread takes which half of a step
depends on the machine), so every schedule is checked for the same numbers: both threads,
either thread alone (the other never comes), the projection flag's failure, and whole
layers against torch and against the one-thread path."""
import os
import select
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab import GRU, LSTM, RNN
from rnnlab.cells import by_mode
from rnnlab.sequence import blas, kernels, linalg, pair
from torch_pairs import edit_both, in_threads, three_calls_equal_torch, torch_pair

needs_pair = pytest.mark.skipif(not (kernels.available() and pair.possible()),
                                reason="the pair runs on Linux x86-64, 2 CPUs, OpenBLAS")


def _kernel_args(mode, T, H, seed, N=1):
    fam = by_mode(mode)
    G, F = fam.num_gates, fam.fold
    rng = np.random.default_rng(seed)
    f = lambda *s: (rng.standard_normal(s) * 0.5).astype(np.float32)    # noqa: E731
    gx, w_hh, bias, b_rest = f(T, N, G * H), f(G * H, H), f(G * H), f((G - F) * H)
    h0, c0 = f(N, H), f(N, H)
    halves = [np.ascontiguousarray(gx.reshape(T * N, G, H)[:, :, lo:hi]).reshape(T * N, -1)
              for lo, hi in ((0, H // 2), (H // 2, H))]          # (T*N, G*B): gate by gate
    return fam, halves, (w_hh, bias, b_rest, h0, c0)


def _one_thread(fam, halves, rest, T, H, reverse):
    """The single-thread compiled loop on the same numbers."""
    w_hh, bias, b_rest, h0, c0 = rest
    G, N = fam.num_gates, h0.shape[0]
    gx = np.concatenate([h.reshape(T * N, G, -1) for h in halves], axis=2).reshape(T, N, G * H)
    gx = gx + bias
    out, c_n = np.empty((T, N, H), np.float32), np.empty((N, H), np.float32)
    k = kernels.kernels(fam, "sequence").get("forward")
    k(np.ascontiguousarray(gx), np.ascontiguousarray(w_hh.T), kernels.NO_BIAS, b_rest, h0,
      c0 if fam.has_cell_state else h0, reverse, out, c_n, False, kernels.NO_STORE, False,
      0, N)
    return out, c_n


def _products(w_hh, how, halves=None):
    """pair.loop's last arguments: dot products from W_hh (batch 1), or a batch's products
    and projections in register tiles from the halves' packed rows of W_ih and W_hh, the
    input x2d made of the halves' projections and W_ih the identity (x2d @ I = x2d, every
    sum exact); with it, the halves' projections for the loop are empty."""
    if how == "dots":
        return halves, (pair.NO_WT, pair.NO_WT)
    GH, H = w_hh.shape
    T_N = halves[0].shape[0]
    x2d = np.concatenate([h.reshape(T_N, GH // H, -1) for h in halves], axis=2)
    x2d = np.ascontiguousarray(x2d.reshape(T_N, GH))
    eye, G = np.eye(GH, dtype=np.float32), GH // H
    kept = linalg.kept_batch_halves(eye, w_hh, G, H)
    for k in (0, 1):
        linalg.fill_batch_half(kept[k], eye, w_hh, G, H, k)
    wt = [linalg.batch_panels(kept[k], G, H, k, GH) for k in (0, 1)]
    return [h[:0] for h in halves], (*wt, x2d)


@needs_pair
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
@pytest.mark.parametrize("who", ["both", "only 0", "only 1"])
@pytest.mark.parametrize("how", ["dots", "tiles"])
def test_every_schedule_gives_the_one_thread_numbers(mode, who, how):
    """Batch 1 (dot products) and a batch of 5 rows (one product per half and step, from
    the packed halves, in register tiles): whoever takes which half, the one-thread
    loop's numbers."""
    N = 1 if how == "dots" else 5
    T, H = 7, 9                                  # odd H: halves of 4 and 5 units
    fam, halves, rest = _kernel_args(mode, T, H, 3, N)
    k = kernels.kernels(fam, "sequence").get("pair")
    for reverse in (False, True):
        out, c_n = np.full((T, N, H), np.nan, np.float32), np.empty((N, H), np.float32)
        c0 = rest[4] if fam.has_cell_state else rest[3]
        sync = np.zeros(3 * T + 4, np.int64)
        sync[3 * T] = sync[3 * T + 3] = 1              # both projections ready
        given, tail = _products(rest[0], how, halves)
        args = (*given, rest[0], rest[1], rest[2], rest[3], c0, reverse, out, c_n, sync)
        with blas.one_blas_thread():
            if who == "both":
                t = threading.Thread(target=pair.loop, args=(k, *args, 1, *tail))
                t.start()
                pair.loop(k, *args, 0, *tail)
                t.join()
            else:
                pair.loop(k, *args, int(who[-1]), *tail)
        ref, ref_c = _one_thread(fam, halves, rest, T, H, reverse)
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
        if fam.has_cell_state:
            np.testing.assert_allclose(c_n, ref_c, rtol=1e-5, atol=1e-6)
        assert set(np.unique(sync[:2 * T])) <= {1, 2} and (sync[2 * T:3 * T] == 2).all()


@needs_pair
def test_a_failed_projection_writes_nothing():
    fam, halves, rest = _kernel_args("GRU", 4, 6, 0)
    k = kernels.kernels(fam, "sequence").get("pair")
    out = np.full((4, 1, 6), 7.0, np.float32)
    sync = np.zeros(16, np.int64)
    sync[12] = 2
    pair.loop(k, *halves, *rest[:4], rest[3], False, out, np.empty((1, 6), np.float32), sync,
              0, *_products(rest[0], "dots")[1])
    assert (out == 7.0).all() and (sync[:12] == 0).all()


@needs_pair
def test_the_worker_waits_for_the_first_halfs_projection():
    """The worker may reach the loop before the caller has projected the first half (a
    slow or descheduled caller): it then waits (sync[3 T + 3]) and never takes a step's
    first half from a projection still being written."""
    T, H = 6, 8
    fam, halves, rest = _kernel_args("LSTM", T, H, 5)
    k = kernels.kernels(fam, "sequence").get("pair")
    ready = halves[0].copy()
    halves[0][...] = np.nan                                    # still being written
    out, c_n = np.empty((T, 1, H), np.float32), np.empty((1, H), np.float32)
    sync = np.zeros(3 * T + 4, np.int64)
    sync[3 * T] = 1                                            # the worker's own is done
    t = threading.Thread(target=pair.loop, args=(k, *halves, *rest, False, out, c_n, sync, 1,
                                                 *_products(rest[0], "dots")[1]))
    t.start()
    time.sleep(0.05)
    assert t.is_alive() and (sync[:3 * T] == 0).all()          # waiting, nothing taken
    halves[0][...] = ready
    sync[3 * T + 3] = 1
    t.join(10)
    ref, ref_c = _one_thread(fam, halves, rest, T, H, False)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c_n, ref_c, rtol=1e-5, atol=1e-6)


@needs_pair
@pytest.mark.parametrize("cls, kw", [(LSTM, {}), (GRU, {}), (RNN, {"nonlinearity": "relu"}),
                                     (GRU, {"bias": False})])
def test_layers_on_the_pair_equal_torch(cls, kw, small):
    three_calls_equal_torch(cls, kw, T=8, N=1)              # zeros, given, unbatched
    assert len(small) == 3 * 4 and all(small)               # 4 directions per call


@needs_pair
@pytest.mark.parametrize("cls, kw", [(LSTM, {}), (GRU, {}), (RNN, {"nonlinearity": "relu"}),
                                     (GRU, {"bias": False, "batch_first": True})])
def test_batches_on_the_pair_equal_torch(cls, kw, small, monkeypatch):
    """A batch of more than FEW_ROWS rows, PAIR_GEMM_MIN multiply-adds a step and
    TILE_ROW_WEIGHTS weights a row (here any) runs on the pair by halves of the units,
    each step's products from the halves' rows of W_hh in panels in register tiles (each
    thread checks its own half, linalg.fill_batch_half); the unbatched call, batch 1, by
    dot products."""
    monkeypatch.setattr(linalg, "PAIR_GEMM_MIN", 0)
    monkeypatch.setattr(kernels, "TILE_ROW_WEIGHTS", 0)
    packed = []
    real = linalg.fill_batch_half
    monkeypatch.setattr(pair, "fill_batch_half", lambda *a: packed.append(a[5]) or real(*a))
    three_calls_equal_torch(cls, kw, T=8, N=6)
    assert len(small) == 3 * 4 and all(small), small
    assert sorted(packed) == [0] * 8 + [1] * 8, packed      # each half once a direction


def test_batches_by_units_or_by_rows():
    """A batch above PAIR_GEMM_MIN goes to the pair by units where W_hh has more than
    TILE_ROW_WEIGHTS weights a row, to the compiled loop by rows where it has fewer, and
    up to FEW_ROWS rows to neither (the driver's loop); at least PAIR_GEMM_STEPS steps."""
    by_units = linalg.gemm_rows
    assert by_units(100, 8, 1024, 256) and by_units(100, 16, 2048, 512)
    assert by_units(100, 5, 1536, 384)
    assert not by_units(100, 64, 1024, 256) and not by_units(100, 64, 2048, 512)
    assert not by_units(100, 4, 2048, 512) and not by_units(100, 1, 1024, 256)
    assert not by_units(7, 8, 1024, 256) and not by_units(100, 16, 512, 128)
    if kernels.available():
        fam, f32 = by_mode("LSTM"), np.float32
        assert kernels.kernel_for(fam, f32, 64, 1024, 256, False) is not None
        assert kernels.kernel_for(fam, f32, 128, 2048, 512, False) is not None
        assert kernels.kernel_for(fam, f32, 8, 1024, 256, False) is None
        assert kernels.kernel_for(fam, f32, 4, 2048, 512, False) is None


@needs_pair
@pytest.mark.parametrize("cls, N, queue", [(LSTM, 1, False), (GRU, 1, True), (LSTM, 6, True),
                                           (RNN, 6, True)])
def test_w_ih_in_panels_and_edited_in_place(cls, N, queue, small, monkeypatch):
    """Each thread projects its input in register tiles from its half's rows of W_ih in
    panels kept between calls and compared with W_ih bit for bit each call: batch 1's
    (linalg.kept_halves, in the step box or through the queue), a batch's with its half
    of W_hh (kept_batch_halves; its loop projects step by step). torch's
    numbers, also after the weights are edited in place between calls (NaN into W_ih, W_hh
    halved): nothing read stale."""
    from rnnlab.sequence import driver, pool
    if queue:
        monkeypatch.setattr(driver, "sgemm_address", lambda: 0)
    monkeypatch.setattr(linalg, "PAIR_GEMM_MIN", 0)          # a batch of 6 on the pair too
    monkeypatch.setattr(kernels, "TILE_ROW_WEIGHTS", 0)
    ways = []
    real = driver.run_pair
    monkeypatch.setattr(driver, "run_pair", lambda *a: ways.append(a[12] is not None)
                        or real(*a))
    torch, tm, om = torch_pair(cls, {}, 5, 6, 2, 0, bidirectional=True)
    x = np.random.default_rng(1).standard_normal((20, N, 5)).astype(np.float32)
    pool.KEPT.clear()
    for edit in (None, "nan", "scale", None):
        edit_both(torch, tm, om, edit, (2, 3))
        with rnnlab.no_grad():
            y, h = om(x)
        with torch.no_grad():
            ty, th = tm(torch.from_numpy(x))
        np.testing.assert_allclose(y, ty.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h[0] if cls is LSTM else h, (th[0] if cls is LSTM else th)
                                   .numpy(), rtol=1e-5, atol=1e-6)
    assert np.isnan(y).any() and all(small) and len(small) == 16
    assert ways == ([N > 1] * 16 if queue else [])
    assert len(pool.KEPT) == 4                    # each layer and direction's W_ih (and W_hh)
    assert {tag for _, tag in pool.KEPT} == {"halves" if N == 1 else "batch"}
    rnnlab.empty_cache()
    assert not pool.KEPT


@needs_pair
def test_the_halves_projections_come_from_the_pool(small):
    """The general path (here: hx a list, which the shorter path of nn/quick.py leaves to
    it; that one keeps its own scratch, tests/test_quick.py) leases the halves' input
    projections from the module's pool from the second call on (fresh ones faulted ~200
    pages a call in at LSTM (100, 1, 512, 512)), and reused buffers change no number."""
    m = LSTM(16, 64, dtype=np.float32).eval()
    x = np.random.default_rng(0).standard_normal((100, 1, 16)).astype(np.float32)
    hx = [np.zeros((1, 1, 64), np.float32)] * 2
    first = m(x, hx)[0].copy()
    pool, asked, missed = m._records.pool, [], []
    get = pool._get

    def counting(key):
        arr = get(key)
        (asked if arr is not None else missed).append(key)
        return arr
    pool._get = counting
    m(2 * x, hx)
    again = m(x, hx)[0]
    halves = ((100, 4 * 32), np.dtype(np.float32).str)          # (T * N, G * H // 2)
    assert asked.count(halves) == 4 and missed == [], (asked, missed)
    assert len(small) == 3 and all(small), small
    np.testing.assert_array_equal(again, first)


@needs_pair
@settings(max_examples=8, deadline=None)
@given(st.sampled_from([LSTM, GRU, RNN]), st.integers(1, 12), st.integers(2, 40),
       st.booleans(), st.booleans(), st.sampled_from([1, 2, 5, 7]), st.booleans())
def test_the_pair_equals_the_one_thread_path(cls, T, H, bias, nan, N, units):
    """Whatever the sizes (batch 1 by dot products, more rows by products in register
    tiles, by halves of the units or, units False, of the rows where there are enough):
    the same numbers as set_num_threads(1) (float32 rounding), and NaN goes through as
    there."""
    pair._state["cool"] = 0.0
    kernels._state["threads"] = None
    old = pair.PAIR_MIN, pair.PAIR_COOL, linalg.PAIR_GEMM_MIN, kernels.TILE_ROW_WEIGHTS
    pair.PAIR_MIN, pair.PAIR_COOL, linalg.PAIR_GEMM_MIN = 0, 0.0, 0
    kernels.TILE_ROW_WEIGHTS = 0 if units else 1 << 40
    try:
        m = cls(3, H, bias=bias, dtype=np.float32, seed=T)
        x = np.random.default_rng(H).standard_normal((T, N, 3)).astype(np.float32)
        if nan:
            x[T // 2, N - 1, 1] = np.nan
        with rnnlab.no_grad():
            y2, s2 = m(x)
            rnnlab.set_num_threads(1)
            y1, s1 = m(x)
    finally:
        pair.PAIR_MIN, pair.PAIR_COOL, linalg.PAIR_GEMM_MIN, kernels.TILE_ROW_WEIGHTS = old
        kernels._state["threads"] = None
    np.testing.assert_allclose(y2, y1, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.isnan(y2), np.isnan(y1))


@needs_pair
def test_off_when_one_thread_is_asked_or_cooling_down_or_busy(small):
    m = LSTM(3, 4, dtype=np.float32, seed=0)
    x = np.ones((5, 1, 3), np.float32)
    with rnnlab.no_grad():
        want = m(x)[0]
        assert small == [True]
        rnnlab.set_num_threads(1)
        np.testing.assert_allclose(m(x)[0], want, rtol=1e-6)
        assert small == [True]                            # not even asked
        kernels._state["threads"] = None
        pair._state["cool"] = float("inf")
        m(x)
        assert small == [True]
        pair._state["cool"] = 0.0
        with pair._state["lock"]:                         # another thread has it
            np.testing.assert_allclose(m(x)[0], want, rtol=1e-6)
        assert small == [True, False]


@needs_pair
def test_openblas_threads_are_put_back(small):
    get, put = pair._blas()
    before = get()
    m = GRU(3, 4, dtype=np.float32, seed=0)
    with rnnlab.no_grad():
        m(np.ones((5, 1, 3), np.float32))
        pair._state["cool"] = float("inf")
        m(np.ones((5, 1, 3), np.float32))                 # alone, one BLAS thread
    pair._state["cool"] = 0.0
    assert get() == before


@needs_pair
def test_a_low_share_cools_the_pair_down(monkeypatch, small):
    """A call where the worker took almost nothing turns the pair off for PAIR_COOL s (the
    queue's path, pair.run; the step box's, test_pair_in.py)."""
    monkeypatch.setattr(pair, "PAIR_COOL", 60.0)
    monkeypatch.setattr("rnnlab.sequence.driver.sgemm_address", lambda: 0)
    m = LSTM(3, 4, dtype=np.float32, seed=0)
    x = np.ones((40, 1, 3), np.float32)
    monkeypatch.setattr(pair, "_worker", lambda **kw: type("W", (), {"jobs": _Sink()})())
    with rnnlab.no_grad():
        y = m(x)[0]                                        # the worker never comes
        assert pair._state["cool"] < pair.time.monotonic()    # once: a hiccup
        m(x)
    assert pair._state["cool"] > pair.time.monotonic() + 30
    assert (pair._state["last"][:80] == 1).all()
    with rnnlab.no_grad():
        # alone while cooling down: the one-thread loop, its sums in another order than
        # the pair's dot products (1.1e-6 relative apart on an Intel Xeon, session 20)
        np.testing.assert_allclose(m(x)[0], y, rtol=1e-5, atol=1e-7)
    assert small == [True, True]


class _Sink:
    def put(self, job):
        pass


@needs_pair
@pytest.mark.filterwarnings("ignore:os.fork")     # JAX's threads (other tests): unused here
def test_a_forked_child_gets_its_own_worker(small):
    m = GRU(3, 4, dtype=np.float32, seed=0)
    x = np.ones((6, 1, 3), np.float32)
    with rnnlab.no_grad():
        want = m(x)[0]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                           # the child
        try:
            with rnnlab.no_grad():
                ok = np.allclose(m(x)[0], want, rtol=1e-6)
            ok = ok and small[-1] and pair._state["worker"].pid == os.getpid()
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    readable, _, _ = select.select([r], [], [], 120)
    got = os.read(r, 1) if readable else b"timeout"
    if not readable:
        os.kill(pid, 9)
    os.waitpid(pid, 0)
    assert got == b"1"


@needs_pair
def test_callers_on_many_threads_get_their_numbers_and_blas_back(small):
    """Four threads at once: one has the pair, the others run alone; every result is its
    own, and OpenBLAS's thread count is what it was before."""
    get, _ = pair._blas()
    before = get()
    layers = [LSTM(3, 5, dtype=np.float32, seed=s) for s in range(4)]
    xs = [np.random.default_rng(s).standard_normal((30, 1, 3)).astype(np.float32)
          for s in range(4)]
    with rnnlab.no_grad():
        rnnlab.set_num_threads(1)
        want = [m(x)[0] for m, x in zip(layers, xs)]
        kernels._state["threads"] = None
    got = [None] * 4

    def work(i):
        with rnnlab.no_grad():
            for _ in range(20):
                got[i] = layers[i](xs[i])[0]
    assert not in_threads(work, 4) and get() == before
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert True in small


@needs_pair
def test_without_compiled_kernels_nothing_changes(monkeypatch):
    """No numba (or RNNLAB_KERNELS=numpy): no pair, and OpenBLAS keeps its threads for the
    projection (a one-thread hold would only slow the NumPy path down)."""
    fam = by_mode("LSTM")
    assert pair.wanted(fam, np.float32, 1, 4 * 256, 256, False, 100) in (True, False)
    monkeypatch.setitem(kernels._state, "numba", False)
    monkeypatch.setitem(kernels._state, "threads", None)
    assert not pair.wanted(fam, np.float32, 1, 4 * 256, 256, False, 100)
    m = LSTM(3, 256, dtype=np.float32, seed=0)
    with rnnlab.no_grad(), kernels.disabled():
        y = m(np.ones((3, 1, 3), np.float32))[0]
    assert y.shape == (3, 1, 256) and np.isfinite(y).all()
