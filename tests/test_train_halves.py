"""Recorded calls (training) of 3 rows or more on the compiled loops, their rows in two
halves (halves.py): the recording forward's and BPTT's time loops, the input projection
and the weight and input gradients' products, each half on its own thread. Every result
and every gradient equals the one-thread call's to the bit, and torch's to float32's
tolerance."""
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab import GRU, LSTM, RNN
from rnnlab.sequence import bptt, halves, kernels, pair
from torch_pairs import (SPLIT_CASES, batch_inputs, equal_bits, failing_on_the_worker,
                         torch_pair, who_ran_second)

needs_pair = pytest.mark.skipif(not (kernels.available() and pair.possible()),
                                reason="the pair runs on Linux x86-64, 2 CPUs, OpenBLAS")


@pytest.fixture
def ran(monkeypatch):
    """The halves for any size (the threshold is for speed only); yields who ran each
    second half (True: the worker)."""
    monkeypatch.setattr(pair, "ROWS_SPLIT_MIN", 0)
    who = who_ran_second(monkeypatch, 0.01)
    yield who
    pair._state.update(cool=0.0, low=0)


def trained(m, x, state, d_out, d_state, threads=None):
    """One recorded forward and backward with rnnlab.set_num_threads(threads)'s setting:
    (output, final state, the input and state gradients, every parameter gradient)."""
    kernels._state["threads"] = threads
    try:
        m.train().zero_grad()
        out, final = m(x, state)
        back = m.backward(d_out, *(d_state if isinstance(d_state, tuple) else (d_state,)))
    finally:
        kernels._state["threads"] = None
    return out.copy(), final, back, {k: v.copy() for k, v in m.grads.items()}


def _same(a, b):
    out, final, back, grads = a
    equal_bits((out, final, tuple(back)), (b[0], b[1], tuple(b[2])))
    assert grads.keys() == b[3].keys()
    for k in grads:
        np.testing.assert_array_equal(grads[k], b[3][k], err_msg=k)


@needs_pair
@pytest.mark.parametrize("cls, kw", SPLIT_CASES)
@pytest.mark.parametrize("above", [False, True], ids=["", "above COMPILED_LOOP_MAX"])
def test_training_equals_torch_and_the_one_thread_path(cls, kw, above, ran, monkeypatch):
    """Above COMPILED_LOOP_MAX (here: any size) recorded calls take the compiled loops in
    halves too, to COMPILED_RECORD_MAX (pair.loop_limit); under set_num_threads(1) they
    take the driver's loop (float32's tolerance, not the same bits)."""
    if above:
        monkeypatch.setattr(kernels, "COMPILED_LOOP_MAX", 0)
        monkeypatch.setattr(pair, "COMPILED_LOOP_MAX", 0)
    torch, tm, om = torch_pair(cls, kw, 5, 6, 2)
    rng = np.random.default_rng(2)
    N, D, T = 5, 2 if kw.get("bidirectional") else 1, 7
    x, h0, state = batch_inputs(cls, kw, rng, N, T, 5, 6)
    d_out = rng.standard_normal(x.shape[:2] + (6 * D,)).astype(np.float32)
    d_state = (h0[::-1].copy(), h0) if cls is LSTM else h0[::-1].copy()
    got = trained(om, x, state, d_out, d_state)
    assert ran and all(ran)                               # the worker ran every second half
    one = trained(om, x, state, d_out, d_state, threads=1)
    if not above:
        _same(got, one)
    for a, b in zip([got[0], *got[2]] + list(got[3].values()), [one[0], *one[2]] +
                    list(one[3].values())):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    tm.train()
    tx = torch.from_numpy(x).requires_grad_()
    ts = tuple(torch.from_numpy(s).requires_grad_() for s in (state if cls is LSTM
                                                            else (state,)))
    tout, tfinal = tm(tx, ts if cls is LSTM else ts[0])
    tfinal = tfinal if cls is LSTM else (tfinal,)
    loss = (tout * torch.from_numpy(d_out)).sum() + sum(
        (f * torch.from_numpy(d)).sum() for f, d in zip(
            tfinal, d_state if cls is LSTM else (d_state,)))
    loss.backward()
    close = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[0], tout.detach().numpy(), **close)
    np.testing.assert_allclose(got[2][0], tx.grad.numpy(), **close)
    for mine, theirs in zip(got[2][1:], ts):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), **close)
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(got[3][name], p.grad.numpy(), err_msg=name, **close)


def test_recorded_calls_take_the_compiled_loops_to_a_larger_size():
    """pair.loop_limit: unrecorded calls and set_num_threads(1) keep COMPILED_LOOP_MAX;
    recorded ones, where the pair may run, COMPILED_RECORD_MAX (LSTM (_, 8, 256, 256):
    2^21 multiply-adds a step, and 2^15 weights of W_hh a row: not TILE_ROW_WEIGHTS')."""
    lstm, big = LSTM(2, 2).family, (8, 1024, 256)
    assert kernels.kernel_for(lstm, np.float32, *big, False) is None
    assert pair.loop_limit(False) == pair.COMPILED_LOOP_MAX
    assert pair.loop_limit(True) == (pair.COMPILED_RECORD_MAX if pair.enabled()
                                     else pair.COMPILED_LOOP_MAX)
    if pair.enabled() and kernels.available():
        assert kernels.kernel_for(lstm, np.float32, *big, False, backward=True,
                                  limit=pair.loop_limit(True)) is not None
    kernels._state["threads"] = 1
    try:
        assert pair.loop_limit(True) == pair.COMPILED_LOOP_MAX
    finally:
        kernels._state["threads"] = None


@needs_pair
def test_a_failure_in_the_workers_loop_raises_here(monkeypatch, ran):
    m = LSTM(4, 8, dtype=np.float32, seed=0)
    x = np.ones((6, 4, 4), np.float32)
    out, _ = m(x)
    monkeypatch.setattr(bptt, "kernel_for", failing_on_the_worker(bptt.kernel_for))
    with pytest.raises(RuntimeError, match="cannot be run again"):
        m.backward(np.ones_like(out))


@needs_pair
def test_which_calls_run_in_halves(ran, monkeypatch):
    m = GRU(3, 8, dtype=np.float32, seed=0)
    x = np.ones((5, 3, 3), np.float32)
    m(x[:, :2])                                            # two rows
    m(x, lengths=[5, 3, 2])                                # lengths
    LSTM(3, 8, proj_size=4, dtype=np.float32, seed=0)(x)   # a projection
    GRU(3, 8, dtype=np.float64, seed=0)(x.astype(np.float64))          # float64
    assert ran == []
    out, _ = m(x)
    assert len(ran) == 2                                   # its projection and its loop
    m.backward(np.ones_like(out))
    assert len(ran) == 4                                   # the loop and the products
    # a batch the pair would run by units when unrecorded: recorded, it runs in halves
    monkeypatch.setattr(pair, "PAIR_ROWS", 8)
    assert halves.wanted(m.family, np.float32, 100, 4, 768, 256, False)
    assert pair.rows_wanted(m.family, np.float32, 100, 4, 768, 256, False)
    assert not halves.unrecorded_wanted(m.family, np.float32, 100, 4, 768, 256, False)


def test_the_workers_half_runs_under_the_callers_error_state():
    with np.errstate(over="raise", invalid="ignore"):
        want = np.geterr()
        _, got = halves.in_parallel(lambda: None, np.geterr)
    assert got == want


@needs_pair
@settings(max_examples=20, deadline=None)
@given(kind=st.sampled_from(["rnn", "gru", "lstm"]), N=st.integers(1, 11),
       H=st.integers(1, 12), T=st.integers(1, 5), reverse=st.booleans(),
       bias=st.booleans(), nan=st.booleans())
def test_any_batch_equals_the_one_thread_path(kind, N, H, T, reverse, bias, nan):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pair, "ROWS_SPLIT_MIN", 0)
        pair._state.update(cool=0.0, low=0)
        cls = {"rnn": RNN, "gru": GRU, "lstm": LSTM}[kind]
        m = cls(3, H, dtype=np.float32, seed=N, bidirectional=reverse, bias=bias)
        rng = np.random.default_rng(H)
        D = 2 if reverse else 1
        x = rng.standard_normal((T, N, 3)).astype(np.float32)
        if nan:
            x[0, N - 1, 0] = np.nan
        d_out = rng.standard_normal((T, N, D * H)).astype(np.float32)
        _same(trained(m, x, None, d_out, None), trained(m, x, None, d_out, None, threads=1))


@pytest.mark.skipif(not kernels.available(), reason="compiled kernels (numba) not here")
@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["rnn", "gru", "lstm"]), N=st.integers(1, 11),
       H=st.integers(1, 12), T=st.integers(1, 4), reverse=st.booleans(),
       has_dout=st.booleans())
def test_a_loops_halves_give_the_whole_loops_bits(kind, N, H, T, reverse, has_dout):
    """SEQUENCE (recording) and SEQUENCE_BACK over rows 0:m then m:N against one call
    over 0:N: every array they write, to the bit."""
    from rnnlab.cells import by_kind
    fam = by_kind(kind)
    k = kernels.kernels(fam, "sequence")
    GH, FH, f32 = fam.num_gates * H, fam.fold * H, np.float32
    rng = np.random.default_rng(N * 100 + H)
    r = (lambda *s: rng.standard_normal(s).astype(f32))
    gx, w_t, bias, rest, h0, c0 = r(T, N, GH), r(H, GH), r(GH), r(GH - FH), r(N, H), r(N, H)
    dout, dh, dc = r(T, N, H), r(N, H), r(N, H)
    m = halves.first_half(N)

    def run(ranges):
        g, out, c_n = gx.copy(), np.zeros((T, N, H), f32), np.zeros((N, H), f32)
        store = np.zeros((T, N, fam.store * H), f32)
        for lo, hi in ranges:
            k["forward"](g, w_t, bias, rest, h0, c0, reverse, out, c_n, False, store, True,
                         lo, hi)
        dh_, dc_ = dh.copy(), dc.copy()
        dgx, dgr = np.zeros((T, N, GH), f32), np.zeros((T, N, max(GH - FH, 1)), f32)
        for lo, hi in ranges:
            k["backward"](dout, has_dout, dh_, dc_, g, store, h0, c0, out,
                          np.ascontiguousarray(w_t.T), reverse, dgx, dgr, lo, hi)
        return g, out, c_n, store, dh_, dc_, dgx, dgr

    for a, b in zip(run([(0, N)]), run([(0, m), (m, N)] if m < N else [(0, N)])):
        np.testing.assert_array_equal(a, b)


def test_the_cool_down_doubles_while_the_worker_keeps_missing(monkeypatch):
    """Two calls running where the worker did not get a core: PAIR_COOL s off, twice as
    long each time that comes again before a call is served in time (to 32x)."""
    monkeypatch.setattr(pair, "PAIR_COOL", 1.0)
    monkeypatch.setattr(pair, "_state", dict(pair._state, cool=0.0, low=0, cooled=0))
    for k in range(7):
        pair._count_share(False)
        assert k > 0 or not pair.cooling()               # once: a hiccup
        pair._count_share(False)
        left = pair._state["cool"] - pair.time.monotonic()
        assert 2 ** min(k, 5) - 0.5 < left <= 2 ** min(k, 5)
    pair._count_share(True)
    assert pair._state["cooled"] == 0 and pair._state["low"] == 0


@needs_pair
def test_a_slower_worker_counts_low_only_where_one_thread_would_have_been_as_fast(
        monkeypatch):
    """A call whose worker half took 1.6x the caller's (its CPU slower for a while) still
    gained from the pair: it counts in time; one whose caller waited longer than its own
    half (PAIR_WAIT_SHARE) counts low. The half-own-time rule before it turned the pair
    off in the first case."""
    seen = []
    monkeypatch.setattr(pair, "_count_share", seen.append)
    monkeypatch.setattr(pair, "_state", dict(pair._state, cool=0.0, low=0, cooled=0))
    assert pair.PAIR_WAIT_SHARE == 1.0
    for mine, theirs in ((0.04, 0.064), (0.04, 0.1)):
        assert pair.run_both(lambda: time.sleep(mine), lambda: time.sleep(theirs)) == (None,
                                                                                       None)
    assert seen == [True, False]


@needs_pair
def test_while_cooling_down_the_halves_run_here_on_openblass_own_threads(monkeypatch):
    get, put = pair._blas()
    before = get()
    put(2)
    monkeypatch.setattr(pair, "_state", dict(pair._state, cool=pair.time.monotonic() + 60))
    monkeypatch.setattr(halves, "run_both", None)           # never called
    try:
        here = threading.get_ident()
        got = halves.in_parallel(lambda: (threading.get_ident(), get()),
                                 lambda: (threading.get_ident(), get()))
    finally:
        put(before)
    assert got == ((here, 2), (here, 2))


@needs_pair
@pytest.mark.parametrize("where", ["in_halves", "matmul"])
def test_the_callers_other_work_runs_here_while_the_workers_half_runs(where, monkeypatch):
    """``also`` (W_hh's panels, W_ih's snapshot, the previous states, from the lease,
    which is not thread-safe): called on the caller's thread, after its own half and
    while the worker's half is still running (the worker's half starts late: its wake);
    once, whether the pair runs or not; the halves' result as without it."""
    monkeypatch.setattr(pair, "_state", dict(pair._state, cool=0.0, low=0, cooled=0))
    here, events = threading.get_ident(), []

    def note(what):
        events.append((what, threading.get_ident() == here, time.perf_counter()))

    def also():
        note("also")
    if where == "in_halves":
        def kernel(out, lo, hi):
            note(f"rows {lo}")
            time.sleep(0.06 if lo else 0.02)     # the worker's half ends 40 ms after
            out[lo:hi] = np.arange(lo, hi)
        out = np.zeros(6)
        halves.in_halves(kernel, (out,), 6, True, also=also)
        halves.in_halves(kernel, (out,), 6, False, also=also)
        np.testing.assert_array_equal(out, np.arange(6))
    else:
        a, b = np.arange(12.0).reshape(6, 2), np.ones((2, 3))
        out = np.empty((6, 3))
        real = np.matmul

        def slow(x, y, out=None):
            note("product")
            time.sleep(0.06 if x[0, 0] == a[3, 0] else 0.02)   # the second half: longer
            return real(x, y, out=out)
        monkeypatch.setattr(halves.np, "matmul", slow)
        halves.matmul(a, b, out, also=also)
        np.testing.assert_array_equal(out, a @ b)
    first_call = events[:3]
    assert [e[0] for e in first_call].count("also") == 1
    also_at = next(e for e in first_call if e[0] == "also")
    assert also_at[1]                                        # on the caller's thread
    second = [e for e in first_call if e[0] != "also" and not e[1]]
    if pair._state["both"]:                                  # the worker ran its half:
        assert second and also_at[2] < second[0][2] + 0.05   # also before it was done
    if where == "in_halves":
        assert [e[0] for e in events[3:]] == ["rows 0", "also"]   # not split: after it


def test_a_large_calls_other_work_runs_after_the_hand_over(monkeypatch):
    """Above tuning.BESIDE_MAX bytes of projections (halves.beside) ``also`` runs after
    both halves (its copies would stream through the L3 the worker's half reads), once,
    on the caller's thread."""
    assert halves.beside(halves.BESIDE_MAX) and not halves.beside(halves.BESIDE_MAX + 1)
    here, events = threading.get_ident(), []
    monkeypatch.setattr(pair, "_state", dict(pair._state, cool=0.0, low=0, cooled=0))

    def kernel(out, lo, hi):
        time.sleep(0.03 if lo else 0.01)
        events.append(("rows", lo))

    halves.in_halves(kernel, (None,), 6, True,
                     also=lambda: events.append(("also", threading.get_ident() == here)),
                     near=False)
    assert sorted(events[:2]) == [("rows", 0), ("rows", 4)] and events[2:] == [("also", True)]
