"""Unrecorded batch-1 sequences on the pair met in the step box (pair_step.pair_in): one
compiled call, _loops_in.PAIR_IN (the kernel "pair"), in which the caller posts the
arrays' addresses and projects the first half of the units while the worker, spinning in
the same compiled function since the last call, claims the second half's projection and
takes its side of every step; no job through the queue, no Python between the two. The
loop is the queue's (pair.run: _loops.SEQUENCE_PAIR), so the numbers are its numbers,
bit for bit, whoever took which half: the worker, the caller after the worker did not
come, or the caller alone (role 0)."""
import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab import tuning
from rnnlab import GRU, LSTM, RNN
from rnnlab.cells import FAMILIES
from rnnlab.sequence import blas, driver, kernels, pair, pair_step
from torch_pairs import (count_planned_calls, equal_bits, one_thread, three_calls_equal_torch,
                         torch_pair, until_the_worker_serves, worker_spinning)

needs_pair = pytest.mark.skipif(
    not (kernels.available() and pair.possible() and blas.sgemm_address()),
    reason="the pair runs on Linux x86-64, 2 CPUs, NumPy's OpenBLAS with a 64-bit sgemm")


@pytest.fixture
def boxed(monkeypatch, small):
    """The pair for any size (``small``), the worker spinning long after each call (so
    that it meets the next one); yields the list of what each pair_step.pair_in call
    returned (``small`` counts the queue's calls too)."""
    monkeypatch.setattr(pair_step, "PAIR_SPIN", 2.0)
    ran, real = [], driver.pair_in

    def counted(*a):
        ran.append(real(*a))
        return ran[-1]
    monkeypatch.setattr(driver, "pair_in", counted)
    count_planned_calls(monkeypatch, ran)
    yield ran
    pair_step.BOX[pair_step.B_GEN] += 1                      # the worker stops spinning


def _queue(m, *args, monkeypatch):
    """m(*args) unrecorded on the queue's path (pair.run), as before the step box."""
    with monkeypatch.context() as mp:
        mp.setattr(driver, "sgemm_address", lambda: 0)
        with rnnlab.no_grad():
            return m(*args)


@needs_pair
@pytest.mark.parametrize("cls, kw", [(LSTM, {}), (GRU, {}), (RNN, {"nonlinearity": "relu"}),
                                     (GRU, {"bias": False})])
def test_layers_equal_torch_and_the_queues_path(cls, kw, boxed, monkeypatch):
    """Two layers, both directions (each on the pair in turn), three calls: torch's
    numbers; then the same calls on the queue's path: the same bits."""
    om, calls, results = three_calls_equal_torch(cls, kw, T=8, N=1)
    assert len(boxed) == 3 * 4 and all(boxed), boxed
    for args, got in zip(calls, results):
        equal_bits(got, _queue(om, *args, monkeypatch=monkeypatch))


@needs_pair
def test_back_to_back_calls_meet_the_spinning_worker(boxed, monkeypatch):
    """Calls running: the worker, spinning after each, claims the next one's second half;
    every result is the queue's path's, bit for bit, and the one-thread path's to float32
    rounding."""
    m = LSTM(8, 24, dtype=np.float32, seed=0)
    xs = [np.random.default_rng(s).standard_normal((60, 1, 8)).astype(np.float32)
          for s in range(10)]
    want = [_queue(m, x, monkeypatch=monkeypatch) for x in xs]
    for _ in range(5):               # (the worker's CPU may be taken a while: torch's
        served = pair_step.served()  # OpenMP threads spin on after the tests before)
        with rnnlab.no_grad():
            for x, w in zip(xs, want):
                equal_bits(m(x), w)
        if pair_step.served() > served:
            break
        time.sleep(0.2)
    assert pair_step.served() > served and all(boxed)
    np.testing.assert_allclose(m(xs[0])[0], one_thread(m, xs[0])[0], rtol=1e-5, atol=1e-6)


@needs_pair
@pytest.mark.parametrize("rows, one", [(tuning.PROJECT_FEW_ROWS + 3, False), (2, True)])
def test_openblas_set_to_one_thread_only_where_it_projects(rows, one, boxed, monkeypatch):
    """Rows enough for panels kept between calls: both projections are the tiles', so
    OpenBLAS's thread count is left alone (setting it and back cost ~20-50 us a call
    after the loop has pushed Python out of the caches); two rows, which OpenBLAS's sgemm
    projects: OpenBLAS on one thread for the call, as pair.run."""
    held, real = [], pair.one_blas_thread

    def counting():
        held.append(True)
        return real()
    monkeypatch.setattr(pair, "one_blas_thread", counting)
    m = GRU(6, 40, seed=0)
    x = np.random.default_rng(0).standard_normal((rows, 1, 6)).astype(np.float32)
    with rnnlab.no_grad():
        got = m(x)
    assert boxed == [True] and bool(held) == one
    np.testing.assert_allclose(got[0], one_thread(m, x)[0], rtol=1e-5, atol=1e-6)


@needs_pair
@pytest.mark.parametrize("cls, T, H", [(GRU, 6, 400), (LSTM, 12, 200), (RNN, 7, 600)])
def test_a_few_steps_project_by_the_compiled_kernel(cls, T, H, boxed, monkeypatch):
    """A few steps into many outputs a half (T <= PROJECT_FEW_ROWS, T * B >
    PROJECT_FEW_MIN): each half's projection by _compiled.project_few inside the kernel,
    as the queue's path does from Python: torch's numbers, the queue's bits."""
    torch, tm, om = torch_pair(cls, {}, 5, H, 1)
    assert T <= tuning.PROJECT_FEW_ROWS and T * (H // 2) > tuning.PROJECT_FEW_MIN
    x = np.random.default_rng(3).standard_normal((T, 1, 5)).astype(np.float32)
    with rnnlab.no_grad():
        got = om(x)
    with torch.no_grad():
        ty, _ = tm(torch.from_numpy(x))
    np.testing.assert_allclose(got[0], ty.numpy(), rtol=1e-5, atol=2e-6)
    equal_bits(got, _queue(om, x, monkeypatch=monkeypatch))
    assert boxed == [True]


def _kernel_args(fam, T, H, I, seed=0):
    rng = np.random.default_rng(seed)
    f, G = np.float32, fam.num_gates
    x2d = rng.standard_normal((T, I)).astype(f)
    w_ih = rng.standard_normal((G * H, I)).astype(f)
    w_hh = (rng.standard_normal((G * H, H)) * 0.3).astype(f)
    bias = rng.standard_normal(G * H).astype(f)
    b_rest = rng.standard_normal(G * H - fam.fold * H).astype(f)
    h0, c0 = rng.standard_normal((1, H)).astype(f), rng.standard_normal((1, H)).astype(f)
    return x2d, w_ih, w_hh, bias, b_rest, h0, c0


def _call(kernel, args, role, key):
    f, (GH, H), T = np.float32, args[2].shape, args[0].shape[0]
    G = GH // H
    out, c_n = np.full((T, 1, H), np.nan, f), np.full((1, H), np.nan, f)
    gx = (np.empty((T, G * (H // 2)), f), np.empty((T, G * (H - H // 2)), f))
    sync = np.zeros(3 * T + 4, np.int64)
    with blas.one_blas_thread():
        r = kernel(*args, False, out, c_n, *gx, sync, blas.sgemm_address(), pair.NO_WT,
                   pair.NO_WT, role, pair_step.BOX if role else kernels.NO_BOX, key, 0)
    return r, out, c_n, sync


@needs_pair
def test_the_kernels_roles_give_the_same_bits():
    """The kernel itself (T = 300): role 0 (both projections and halves here); role 1 with
    no worker spinning (the caller claims the second projection, runs alone, returns 0);
    role 1 with the worker spinning for the family's key (it claims, the caller waits for
    it at the end, returns the ticks waited + 1, the worker's served count goes up, and
    the worker took halves of steps). The same bits each time."""
    fam = FAMILIES["gru"]
    kernel = kernels.kernels(fam, "sequence").get("pair")
    args = _kernel_args(fam, 300, 21, 5)
    key = pair_step._key(fam) + pair_step._PAIR_KEY
    _, out0, c0, sync0 = _call(kernel, args, 0, 0)
    assert (sync0[:600] == 1).all()                         # all by the caller
    with pair._state["lock"]:
        pair_step.BOX[pair_step.B_GEN] += 1          # a worker spinning from before leaves
        assert worker_spinning(0)
        r, out, c_n, _ = _call(kernel, args, 1, key)
        assert r == 0
        equal_bits((out, c_n), (out0, c0))
        pair_step._wake(kernel, key, pair_step._PAIR_DUMMIES, 30.0)
        try:
            assert worker_spinning(key), "the worker never started spinning"
            (r, _, _, sync), served = until_the_worker_serves(
                lambda: _call(kernel, args, 1, key),
                lambda res: equal_bits(res[1:3], (out0, c0)))
            assert r > 0 and pair_step.served() == served + 1
            assert (sync[:600] == 2).any() and (sync[600:900] == 2).all()
        finally:
            pair_step.BOX[pair_step.B_GEN] += 1      # it leaves
        assert worker_spinning(0), "the worker kept spinning"


@needs_pair
def test_a_worker_that_never_comes_leaves_the_call_to_the_caller(small, monkeypatch):
    """The worker never starts (its jobs lost): every call runs alone, on the caller,
    with the same bits; nothing waits, and no wake is posted again while one is pending."""
    m = GRU(4, 10, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((30, 1, 4)).astype(np.float32)
    want = _queue(m, x, monkeypatch=monkeypatch)
    posted = []
    pair_step.BOX[pair_step.B_GEN] += 1
    assert worker_spinning(0)
    time.sleep(0.05)                     # the worker's last job ended (its wake cleared)
    assert pair_step.BOX[pair_step.B_WAKE] == 0
    monkeypatch.setattr(pair, "_post", posted.append)
    try:
        with rnnlab.no_grad():
            for _ in range(3):
                equal_bits(m(x), want)
                assert (pair._state["last"][:60] == 1).all()
    finally:
        pair_step.BOX[pair_step.B_WAKE] = 0                  # no wake pending after all
    assert len(posted) == 1 and small == [True] * 4          # the queue's call, then 3


@needs_pair
@settings(max_examples=10, deadline=None)
@given(st.sampled_from(["lstm", "gru", "rnn", "rnn_relu"]), st.integers(2, 40),
       st.integers(2, 33), st.booleans(), st.booleans(), st.sampled_from([None, "nan", "big"]))
def test_any_shape_equals_the_queue_and_one_thread(kind, T, H, bias, reverse, edit):
    """Whatever T (a few rows: the compiled projection; more: OpenBLAS's), H (odd: halves
    of different sizes), bias and direction: the queue's bits (but for one unit a half
    and a few rows: its last bit, NumPy's matrix-vector product against OpenBLAS's sgemm)
    and the one-thread path's numbers; NaN and overflow go through quietly (warnings as
    errors) as there."""
    from rnnlab.nn import make_layer
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(pair, "PAIR_MIN", 0)
        mp.setattr(pair, "PAIR_STEPS", 2)
        mp.setattr(pair_step, "PAIR_STEP_COOL", 0.0)
        mp.setitem(kernels._state, "threads", None)
        pair._state.update(cool=0.0, low=0)
        m = make_layer(kind, 5, H, bias=bias, dtype=np.float32, seed=T,
                       direction="reverse" if reverse else "forward")
        x = np.random.default_rng(H).standard_normal((T, 1, 5)).astype(np.float32)
        if edit == "nan":
            x[T // 2, 0, 1] = np.nan
        elif edit == "big":
            x[T // 2, 0] = 1e30
        boxed = []
        real = driver.pair_in
        mp.setattr(driver, "pair_in", lambda *a: boxed.append(real(*a)) or boxed[-1])
        count_planned_calls(mp, boxed)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with rnnlab.no_grad():
                got = m(x)
            queue = _queue(m, x, monkeypatch=mp)
            alone = one_thread(m, x)
    finally:
        mp.undo()
    assert boxed == [True]
    if H // 2 > 1 or T * (H // 2) > tuning.PROJECT_FEW_MIN:
        equal_bits(got, queue)
    else:       # one unit a half, a few rows: the queue's projection is NumPy's matmul (a
        flat = [got[0], *np.atleast_1d(got[1])], [queue[0], *np.atleast_1d(queue[1])]
        for a, b in zip(*flat, strict=True):   # matrix-vector product there), the box's
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)   # OpenBLAS's sgemm:
    np.testing.assert_array_equal(np.isnan(got[0]), np.isnan(alone[0]))   # the last bit
    np.testing.assert_array_equal(np.isinf(got[0]), np.isinf(alone[0]))
    sane = np.abs(alone[0]) < 1e6        # (a ReLU's 1e30-sized sums differ in their order)
    np.testing.assert_allclose(got[0][sane], alone[0][sane], rtol=1e-5, atol=1e-6)


@needs_pair
def test_the_worker_spins_a_share_of_a_long_calls_time(boxed, monkeypatch):
    """After a call the worker spins for the next one PAIR_SPIN or PAIR_SPIN_SHARE of the
    call's own time, the longer (the Python between two long calls outlasted a fixed
    spin: one call in ten ran alone): the budget it reads at each look."""
    monkeypatch.setattr(pair_step, "PAIR_SPIN", 1e-6)
    monkeypatch.setattr(pair_step, "PAIR_SPIN_SHARE", 0.5)
    m = LSTM(64, 64, seed=0).train(False)
    x = np.random.default_rng(0).standard_normal((400, 1, 64)).astype(np.float32)
    m(x)                                     # the first call's one-time costs
    t0 = time.perf_counter()
    m(x)
    took = time.perf_counter() - t0
    assert boxed == [True, True]
    budget = pair_step.BOX[pair_step.B_BUDGET] / pair.rate()
    assert 0.5 * took >= budget > 0.5 * took / 4, (budget, took)   # the kernel's share
    monkeypatch.setattr(pair_step, "PAIR_SPIN", 2.0)
    m(x[:8])
    assert pair_step.BOX[pair_step.B_BUDGET] / pair.rate() == pytest.approx(2.0, rel=1e-6)


@needs_pair
def test_the_caller_counts_the_workers_halves_in_the_kernel(boxed, monkeypatch):
    """After the loop the caller's kernel counts the steps' halves the worker took into
    the box (B_TOOK: what the cool-down's share reads; NumPy's count after the call cost
    ~20-40 us with the caches cold): the count of 2s among the sync words of the halves,
    some once the worker served a call, none in a call the caller ran alone."""
    m = LSTM(32, 64, seed=0).train(False)
    x = np.random.default_rng(0).standard_normal((200, 1, 32)).astype(np.float32)
    counts = []
    for _ in range(50):
        served = pair_step.served()
        m(x)
        sync = pair._state["last"]
        counts.append(int(pair_step.BOX[pair.B_TOOK]))
        assert counts[-1] == np.count_nonzero(sync[:400] == 2)
        if pair_step.served() > served and counts[-1] > 0:
            break
        time.sleep(0.02)
    assert counts[-1] > 0, counts
    monkeypatch.setattr(pair_step, "_wake", lambda *a: None)     # no worker: alone, every
    pair_step.BOX[pair_step.B_GEN] += 1                         # half the caller's
    t0 = time.monotonic()
    while pair_step.BOX[pair_step.B_STATE] != 0:
        assert time.monotonic() - t0 < 5
        time.sleep(0.001)
    m(x)
    assert (pair._state["last"][:400] == 1).all() and pair_step.BOX[pair.B_TOOK] == 0
