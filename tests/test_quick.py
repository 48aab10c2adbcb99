"""The shorter path for one sequence at inference (nn/quick.py): where it runs, the general
path's bits, shapes, flags and records; everywhere else the general path, unchanged
(its errors too); any input, hypothesis."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rnnlab
from rnnlab import GRU, LSTM, RNN
from rnnlab.nn import quick, records
from rnnlab.sequence import blas, halves, kernels, pair, pair_call

needs_pair = pytest.mark.skipif(
    not (kernels.available() and pair.possible() and blas.sgemm_address()),
    reason="the pair runs on Linux x86-64, 2 CPUs, NumPy's OpenBLAS with a 64-bit sgemm")


@pytest.fixture
def taken(monkeypatch, small):
    """The list of what each quick.forward returned (None: the general path ran)."""
    seen, real = [], quick.forward

    def wrapped(*a):
        seen.append(real(*a))
        return seen[-1]
    monkeypatch.setattr(quick, "forward", wrapped)
    yield seen


@pytest.fixture
def batches(monkeypatch, taken):
    """Batches of 3 rows or more in halves for any size (halves.unrecorded_wanted: its
    thresholds are for speed only); yields ``taken``."""
    monkeypatch.setattr(halves, "HALVES_MIN", 0)
    monkeypatch.setattr(halves, "HALVES_STEP_MIN", 0)
    yield taken


def general(m, x, hx=None):
    """m(x, hx) by the general path (records.run_call, as the layer's forward calls it)."""
    return records.run_call(m, x, hx, None, None, step=False)[1]


def flat(result):
    out, state = result
    return [out] + (list(state) if isinstance(state, tuple) else [state])


def assert_same(a, b):
    """The same bits, shapes, dtypes, writeable flags and memory shared (none: the states
    are copies, writeable, while the output is read-only)."""
    for u, v in zip(flat(a), flat(b), strict=True):
        assert u.shape == v.shape and u.dtype == v.dtype
        assert u.flags.writeable == v.flags.writeable
        np.testing.assert_array_equal(u, v)
    for r in (a, b):
        assert not any(np.shares_memory(r[0], s) for s in flat(r)[1:])


def records_of(m):
    r = m._records
    return r.last_call, r.freed, r.unrecorded_reason, r.last_dropout_masks


LAYERS = [(RNN, {}), (RNN, {"nonlinearity": "relu"}), (GRU, {}), (LSTM, {}),
          (GRU, {"bias": False}), (LSTM, {"direction": "reverse"}),
          (RNN, {"bias": False, "direction": "reverse"})]


@needs_pair
@pytest.mark.parametrize("cls, kw", LAYERS)
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("N, planned", [(1, pair_call.PairCall), (5, pair_call.BatchCall)])
def test_the_shorter_path_gives_the_general_paths_result(cls, kw, with_hx, N, planned,
                                                         batches):
    """One row (on the pair) or 3 rows or more (in halves, halves.forward): planned once,
    the same bits, records and flags as the general path; the states given are left as
    they were."""
    rng = np.random.default_rng(1)
    m = cls(5, 24, dtype=np.float32, seed=2, **kw).eval()
    x = rng.standard_normal((9, N, 5)).astype(np.float32)
    hx = None
    if with_hx:
        h = rng.standard_normal((1, N, 24)).astype(np.float32)
        hx = (h, rng.standard_normal((1, N, 24)).astype(np.float32)) if cls is LSTM else h
    before = [a.copy() for a in flat((None, hx))[1:]] if with_hx else []
    got = m(x, hx)
    assert batches[-1] is not None and type(m.__dict__["_quick"].call) is planned  # here
    mine = records_of(m)
    assert mine[0] is None and mine[1] is False and mine[3] == [] and "eval mode" in mine[2]
    assert_same(got, general(m, x, hx))
    assert records_of(m)[2] == mine[2]
    assert_same(m(x, hx), got)                          # planned: the same again
    for a, b in zip(flat((None, hx))[1:] if with_hx else [], before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):                    # the output is read-only, as ever
        got[0][0, 0, 0] = 1.0


@needs_pair
def test_a_batch_the_general_path_runs_another_way_is_planned_as_such(batches, monkeypatch):
    """A batch shape the general path does not run in halves: planned once as the
    general path's (call None), not worked out again at each call; another shape
    planned again."""
    monkeypatch.setattr(halves, "HALVES_MIN", 1 << 62)
    made = []
    real = pair_call.BatchCall.make.__func__

    def make(cls, *a):
        made.append(real(cls, *a))
        return made[-1]
    monkeypatch.setattr(pair_call.BatchCall, "make", classmethod(make))
    m = GRU(4, 16, dtype=np.float32, seed=0).eval()
    x = np.random.default_rng(0).standard_normal((6, 4, 4)).astype(np.float32)
    want = general(m, x)
    for _ in range(3):
        assert_same(m(x), want)
    assert made == [None] and m.__dict__["_quick"].call is None and taken_none(batches)
    monkeypatch.setattr(halves, "HALVES_MIN", 0)
    y = x[:5].copy()
    assert_same(m(y), general(m, y))
    assert type(made[-1]) is pair_call.BatchCall and batches[-1] is not None


def taken_none(taken):
    return all(t is None for t in taken)


@needs_pair
@pytest.mark.parametrize("N", [1, 4])
def test_in_place_changes_of_every_weight_are_seen(N, batches):
    taken = batches
    m = LSTM(6, 32, dtype=np.float32, seed=0).eval()
    x = np.random.default_rng(0).standard_normal((20, N, 6)).astype(np.float32)
    before = m(x)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        getattr(m, name)[3] += 0.5
        after = m(x)
        assert taken[-1] is not None and not np.array_equal(after[0], before[0]), name
        assert_same(after, general(m, x))
        before = after


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@needs_pair
@pytest.mark.parametrize("case", ["batch 2", "float64", "read-only input", "strided input",
                                  "batch_first", "2 layers", "bidirectional", "proj_size",
                                  "training", "hx list", "read-only hx", "one thread", "busy",
                                  "lengths", "2-D input", "list input"])
def test_every_other_call_takes_the_general_path(case, taken):
    """None of these is the shorter path's; each gives what it gave before."""
    kw, x = {}, np.random.default_rng(0).standard_normal((7, 1, 4)).astype(np.float32)
    hx, call_kw = None, {}
    if case == "batch 2":
        x = np.concatenate([x, x], 1)
    elif case == "float64":
        kw["dtype"], x = np.float64, x.astype(np.float64)
    elif case == "read-only input":
        x = _read_only(x)
    elif case == "strided input":
        x = np.concatenate([x, x], 2)[:, :, ::2]
    elif case in ("batch_first", "2 layers", "bidirectional", "proj_size"):
        kw = {"batch_first": {"batch_first": True}, "2 layers": {"num_layers": 2},
              "bidirectional": {"bidirectional": True}, "proj_size": {"proj_size": 3}}[case]
        if case == "batch_first":
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
    elif case in ("hx list", "read-only hx"):
        h = np.zeros((1, 1, 16), np.float32)
        hx = [h, h] if case == "hx list" else (_read_only(h), h)
    elif case == "lengths":
        call_kw["lengths"] = [7]
    elif case == "2-D input":
        x = x[:, 0]
    elif case == "list input":
        x = x.tolist()
    m = LSTM(4, 16, seed=3, **{"dtype": np.float32, **kw}).train(case == "training")
    if case == "list input":                            # float64 to a float32 layer: refused
        with pytest.raises(TypeError, match="must have the type float32"):
            m(x)
        assert taken == [None]
        return
    want = records.run_call(m, x, hx, call_kw.get("lengths"), None, step=False)[1]
    if case == "one thread":
        rnnlab.set_num_threads(1)
    try:
        if case == "busy":
            with pair._state["lock"]:
                got = m(x, hx, **call_kw)
        else:
            got = m(x, hx, **call_kw)
    finally:
        kernels._state["threads"] = None
    assert all(t is None for t in taken), case
    for u, v in zip(flat(got), flat(want)):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)


def _draw_state(draw, shape, dtype):
    kind = draw(st.sampled_from(["plain"] * 4 + ["read-only", "float64", "wrong shape",
                                                  "strided"]))
    a = np.random.default_rng(draw(st.integers(0, 99))).standard_normal(shape).astype(dtype)
    if kind == "read-only":
        return _read_only(a)
    if kind == "float64":
        return a.astype(np.float64)
    if kind == "wrong shape":
        return a[:, :, :-1]
    if kind == "strided":
        return np.repeat(a, 2, axis=2)[:, :, ::2]
    return a


@st.composite
def calls(draw):
    T = draw(st.sampled_from([0, 1, 2, 3, 5, 6, 9]))
    N = draw(st.sampled_from([1, 1, 1, 2, 3, 5]))
    I, H = draw(st.integers(1, 5)), draw(st.integers(1, 9))
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float64]))
    x = np.random.default_rng(draw(st.integers(0, 99))).standard_normal((T, N, I)).astype(dtype)
    if draw(st.booleans()):
        x[draw(st.integers(0, max(T - 1, 0))) if T else 0:, :, :1] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf, 1e30]))
    if draw(st.integers(0, 4)) == 0:
        x = x[:, :, :max(I - 1, 0)]                     # the wrong number of features
    hx = None
    kind = draw(st.sampled_from(["RNN", "GRU", "LSTM"]))
    if draw(st.booleans()):
        h = _draw_state(draw, (1, N, H), np.float32)
        if kind == "LSTM":
            c = _draw_state(draw, (1, N, H), np.float32)
            hx = draw(st.sampled_from([(h, c), (h, c), [h, c], h, (h,)]))
        else:
            hx = draw(st.sampled_from([h, (h,)]))
    return kind, I, H, x, hx, draw(st.booleans()), draw(st.booleans())


@needs_pair
@settings(max_examples=3 * settings().max_examples, deadline=None,   # (a third valid)
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls())
def test_any_call_equals_the_general_paths(monkeypatch, case):
    """Any input: the layer's call gives the general path's result (bits) or the same
    exception with the same message; never another one, never a warning; a second call
    (planned at the first, where the shorter path takes it) the same."""
    kind, I, H, x, hx, bias, reverse = case
    with monkeypatch.context() as mp:
        mp.setattr(pair, "PAIR_MIN", 0)                 # the pair for any size (conftest's
        mp.setattr(pair, "PAIR_STEPS", 2)               # ``small``: a fixture is not reset
        mp.setattr(pair, "PAIR_COOL", 0.0)              # between hypothesis's examples)
        mp.setattr(halves, "HALVES_MIN", 0)             # batches of 3 or more in halves
        mp.setattr(halves, "HALVES_STEP_MIN", 0)
        pair._state.update(cool=0.0, low=0)
        m = getattr(rnnlab, kind)(I, H, bias=bias, dtype=np.float32, seed=0,
                                  direction="reverse" if reverse else "forward").eval()
        with np.errstate(all="raise"):
            try:
                want = general(m, x, hx)
            except Exception as e:                      # noqa: BLE001 (compared below)
                with pytest.raises(type(e)) as got:
                    m(x, hx)
                assert str(got.value) == str(e)
                assert isinstance(e, (ValueError, TypeError)), e
                return
            assert_same(m(x, hx), want)
            assert_same(m(x, hx), want)        # again: a planned call (the shape's plan)


@needs_pair
@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_a_stream_in_chunks_takes_the_shorter_path_and_equals_one_call(cls, taken):
    """out, hx = layer(chunk, hx) again and again: each chunk the shorter path's, the
    whole the one call's numbers (float32 rounding: a chunk of a few rows is projected
    by another kernel)."""
    m = cls(8, 40, dtype=np.float32, seed=4).eval()
    x = np.random.default_rng(5).standard_normal((60, 1, 8)).astype(np.float32)
    want, want_state = m(x)
    outs, hx = [], None
    for lo, hi in ((0, 5), (5, 25), (25, 26), (26, 60)):
        out, hx = m(x[lo:hi].copy(), hx)
        outs.append(out)
    assert [t is not None for t in taken[1:]] == [True, True, False, True]   # 1 step: short
    np.testing.assert_allclose(np.concatenate(outs), want, rtol=1e-5, atol=1e-6)
    for a, b in zip(flat((None, hx))[1:], flat((None, want_state))[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@needs_pair
def test_the_plan_keeps_its_scratch_until_empty_cache_or_to(taken):
    """The first call of a shape plans it (``_quick``: the kernel, the halves' projections'
    scratch); the calls after it reuse that scratch (no pool, no lease), a call of another
    shape plans again, rnnlab.empty_cache() gives the scratch back (made again at the
    next call) and .to() drops the plan; the numbers never change."""
    m = LSTM(8, 48, dtype=np.float32, seed=1).eval()
    x = np.random.default_rng(2).standard_normal((30, 1, 8)).astype(np.float32)
    want = general(m, x)
    assert_same(m(x), want)
    plan = m.__dict__["_quick"]
    gx = plan.call.gx
    assert gx is not None and [a.shape for a in gx] == [(30, 4 * 24)] * 2
    assert_same(m(x), want)
    assert m.__dict__["_quick"] is plan and plan.call.gx is gx        # reused
    rnnlab.empty_cache()
    assert plan.call.gx is None
    assert_same(m(x), want)
    assert m.__dict__["_quick"] is plan and plan.call.gx is not None   # made again
    short = x[:20].copy()
    assert_same(m(short), general(m, short))
    assert m.__dict__["_quick"].shape == (20, 1, 8)                   # planned again
    m.to(np.float64).to(np.float32)
    assert "_quick" not in m.__dict__
    assert_same(m(x), want)
    assert all(t is not None for t in taken)


@needs_pair
def test_a_batch_plan_holds_the_last_threads_kept_panels_until_empty_cache(batches):
    """A batch's plan (BatchCall) holds the buffers in which the last calling thread keeps
    the weights' panels (pool.KEPT's own, not a second copy); another thread's call takes
    its own from KEPT and is held in their place; rnnlab.empty_cache() lets go of all
    (KEPT and the plan) and the next call makes them again; an edit in place after that
    is seen; the numbers never change."""
    import threading

    from rnnlab.sequence import pool
    m = LSTM(8, 16, dtype=np.float32, seed=4).eval()
    x = np.random.default_rng(4).standard_normal((6, 5, 8)).astype(np.float32)
    want = general(m, x)
    assert_same(m(x), want)
    call = m.__dict__["_quick"].call
    assert type(call) is pair_call.BatchCall and call.own

    def kept_now():
        return [entry[1][0] for entry in pool.KEPT.values()]
    mine = call.held
    assert mine[0] == threading.get_ident()
    assert all(any(b is k for k in kept_now()) for b in mine[1])      # KEPT's own buffers
    got = []
    t = threading.Thread(target=lambda: got.append(m(x)))
    t.start()
    t.join()
    assert_same(got[0], want)
    assert call.held[0] == t.ident and not set(map(id, call.held[1])) & set(map(id, mine[1]))
    assert_same(m(x), want)
    assert call.held[0] == mine[0] and all(a is b for a, b in zip(call.held[1], mine[1]))
    rnnlab.empty_cache()
    assert call.held is None and not pool.KEPT
    assert_same(m(x), want)
    assert all(any(b is k for k in kept_now()) for b in call.held[1])
    m.weight_hh_l0[3, 2] += 0.5                                   # seen after the drop too
    assert_same(m(x), general(m, x))
    assert all(t is not None for t in batches)


@needs_pair
def test_a_batch_plan_of_weights_too_large_to_keep_packs_them_each_call(batches,
                                                                        monkeypatch):
    """Weights of more than POOL_WEIGHTS_MAX bytes are not kept (a huge layer would hold
    3x its parameters): the batch's plan holds nothing, its calls pack the panels afresh
    (halves.forward's kept_panels_of, from the lease) and give the general path's bits,
    an edit in place included."""
    from rnnlab.sequence import linalg, pool
    monkeypatch.setattr(linalg, "POOL_WEIGHTS_MAX", 64)
    rnnlab.empty_cache()
    m = GRU(8, 16, dtype=np.float32, seed=5).eval()
    x = np.random.default_rng(5).standard_normal((6, 4, 8)).astype(np.float32)
    assert_same(m(x), general(m, x))
    call = m.__dict__["_quick"].call
    assert type(call) is pair_call.BatchCall and not call.own
    assert_same(m(x), general(m, x))
    assert call.held is None and not pool.KEPT
    m.weight_ih_l0[1, 1] -= 0.25
    assert_same(m(x), general(m, x))
    assert all(t is not None for t in batches)


@needs_pair
def test_a_planned_call_sees_the_weights_flags_and_mode(taken):
    """What can change between two calls of one plan sends the call to the general path:
    a weight made read-only, training mode, batch_first, set_num_threads(1); the
    numbers as the general path's."""
    m = GRU(6, 32, dtype=np.float32, seed=3).eval()
    x = np.random.default_rng(3).standard_normal((12, 1, 6)).astype(np.float32)
    m(x)
    assert taken[-1] is not None
    m.weight_hh_l0.flags.writeable = False
    want = general(m, x)
    got = m(x)
    assert taken[-1] is None
    np.testing.assert_array_equal(got[0], want[0])
    m.weight_hh_l0.flags.writeable = True
    m(x)
    assert taken[-1] is not None
    m.train()
    m(x)
    assert taken[-1] is None
    m.eval()
    m.batch_first = True
    m(np.ascontiguousarray(x.transpose(1, 0, 2)))
    assert taken[-1] is None
    m.batch_first = False
    rnnlab.set_num_threads(1)
    try:
        m(x)
        assert taken[-1] is None
    finally:
        kernels._state["threads"] = None
    m(x)
    assert taken[-1] is not None
