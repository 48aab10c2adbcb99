"""layer.freeze(): inference steps from a snapshot of the weights in a fast layout."""
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab import GRU, LSTM, RNN
from rnnlab.optim import SGD
from rnnlab.sequence import kernels, stepper

CASES = [(RNN, {}), (RNN, {"nonlinearity": "relu"}), (GRU, {}), (LSTM, {}),
         (LSTM, {"proj_size": 2}), (GRU, {"bias": False}), (LSTM, {"bias": False})]


def _states(cls, s):
    return list(s) if cls is LSTM else [s]


@pytest.mark.parametrize("cls, kw", CASES)
@pytest.mark.parametrize("L", [1, 3])
def test_frozen_equals_torch_step_by_step(cls, kw, L):
    """Against torch: one call of torch's layer per step, float64, <= 1e-10."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(L)
    tm = getattr(torch.nn, cls.__name__)(3, 4, num_layers=L, **kw).double().eval()
    om = cls(3, 4, num_layers=L, dtype=np.float64, **kw)
    om.load_state_dict(tm.state_dict())
    frozen = om.freeze()
    rng = np.random.default_rng(L)
    for batched in (True, False):
        lead = (5,) if batched else ()
        state, tstate = None, None
        for _ in range(4):
            x = rng.standard_normal(lead + (3,))
            y, state = frozen.step(x, state)
            with torch.no_grad():
                ty, tstate = tm(torch.tensor(x)[None] if not batched else torch.tensor(x)[None],
                                tstate)
            np.testing.assert_allclose(y, ty[0].numpy(), rtol=0, atol=1e-10)
            for a, b in zip(_states(cls, state), _states(cls, tstate)):
                np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls, kw", CASES)
def test_frozen_equals_layer_step(cls, kw, dtype):
    m = cls(3, 4, num_layers=2, dtype=dtype, seed=1, **kw).eval()
    frozen = m.freeze()
    rng = np.random.default_rng(0)
    tol = 1e-13 if dtype == np.float64 else 1e-6
    for batched in (True, False):
        lead = (2,) if batched else ()
        sa = sb = None
        for _ in range(5):
            x = rng.standard_normal(lead + (3,)).astype(dtype)
            ya, sa = m.step(x, sa)
            yb, sb = frozen(x, sb)
            assert yb.dtype == dtype and yb.shape == ya.shape and not yb.flags.writeable
            np.testing.assert_allclose(ya, yb, rtol=0, atol=tol)
            for a, b in zip(_states(cls, sa), _states(cls, sb)):
                assert a.shape == b.shape and a.dtype == b.dtype
                np.testing.assert_allclose(a, b, rtol=0, atol=tol)
            sb = sa


def test_frozen_follows_rnnlab_writes_and_refresh_sees_in_place_ones():
    m = LSTM(3, 4, dtype=np.float64, seed=0)
    frozen = m.freeze()
    x = np.ones((1, 3))

    def same():
        return np.allclose(frozen.step(x)[0], m.step(x)[0], rtol=0, atol=1e-13)

    assert same()
    m.weight_ih_l0 = np.zeros((16, 3))                       # attribute assignment
    assert same()
    m.load_state_dict({k: v * 2 for k, v in m.state_dict().items()})
    assert same()
    with rnnlab.enable_grad():                               # an optimizer step
        out, _ = m(np.ones((2, 1, 3)))
        m.backward(np.ones_like(out))
    SGD(m, lr=0.5).step()
    assert same()
    m.to(np.float32)                                         # a new dtype: new arrays
    y, _ = frozen.step(np.ones((1, 3), np.float32))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, m.step(np.ones((1, 3), np.float32))[0], atol=1e-6)
    m.weight_ih_l0[...] = 1.0                                # in place: not visible ...
    assert not np.allclose(frozen.step(x.astype(np.float32))[0],
                           m.step(x.astype(np.float32))[0], atol=1e-6)
    frozen.refresh()                                         # ... until refresh()
    np.testing.assert_allclose(frozen.step(x.astype(np.float32))[0],
                               m.step(x.astype(np.float32))[0], atol=1e-6)


def test_frozen_is_inference_only():
    """No records, no dropout, even in training mode with grad mode on."""
    m = GRU(3, 4, num_layers=3, dropout=0.5, dtype=np.float64, seed=0)   # training mode
    frozen = m.freeze()
    x = np.ones((2, 3))
    with rnnlab.enable_grad():
        a, _ = frozen.step(x)
        b, _ = frozen.step(x)
    assert not m._records.steps
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, m.eval().step(x)[0], rtol=0, atol=1e-13)


def test_frozen_refuses_bidirectional_and_reports_bad_input_like_step():
    with pytest.raises(ValueError, match="needs a forward layer"):
        GRU(3, 4, bidirectional=True).freeze()
    m = LSTM(3, 4, num_layers=2, dtype=np.float64)
    frozen = m.freeze()
    for x, state in [(np.ones((2, 5)), None), (np.ones((1, 2, 3)), None),
                     (np.ones((2, 3)), np.zeros((2, 2, 4))),
                     (np.ones((2, 3)), (np.zeros((2, 3, 4)), np.zeros((2, 2, 4)))),
                     ("abc", None), (np.ones(3), (np.zeros((2, 4)), np.zeros((2, 4, 1))))]:
        with pytest.raises((TypeError, ValueError)) as want:
            m.step(x, state)
        with pytest.raises(type(want.value)) as got:
            frozen.step(x, state)
        assert str(got.value) == str(want.value)
    # lists, float32 and ints go through the checked path and give the same numbers
    y, _ = frozen.step([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(y, m.step(np.array([[1.0, 2.0, 3.0]]))[0], atol=1e-13)


def test_frozen_nonfinite_like_layer_step():
    m = LSTM(3, 4, num_layers=2, dtype=np.float64, seed=0)
    m.weight_hh_l1 = np.where(np.arange(64).reshape(16, 4) == 5, np.inf, m.weight_hh_l1)
    frozen = m.freeze()
    x = np.array([[np.nan, 1.0, 2.0], [1.0, -1e308, 0.0], [0.5, 0.5, 0.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ya, sa = m.eval().step(x)
        ya, sa = m.step(x, sa)
        yb, sb = frozen.step(x)
        yb, sb = frozen.step(x, sb)
    np.testing.assert_array_equal(np.isnan(ya), np.isnan(yb))
    np.testing.assert_array_equal(np.isinf(ya), np.isinf(yb))
    np.testing.assert_allclose(ya[np.isfinite(ya)], yb[np.isfinite(yb)], atol=1e-13)


def test_frozen_custom_family_and_pickled_layer():
    """A family without fused_step (two matmuls) and a layer whose arrays came back from
    pickle (no shared buffers) both work."""
    from rnnlab.cells import by_kind
    m = pickle.loads(pickle.dumps(GRU(3, 4, num_layers=2, dtype=np.float64, seed=2)))
    assert not by_kind("gru").fused_step
    x = np.ones((2, 3))
    np.testing.assert_allclose(m.freeze().step(x)[0], m.step(x)[0], atol=1e-13)


JUNK = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3),
                 st.lists(st.floats(allow_nan=True), max_size=4),
                 st.builds(lambda shape, v: np.full(shape, v),
                           st.lists(st.integers(0, 5), max_size=3).map(tuple),
                           st.floats(allow_nan=True, allow_infinity=True)),
                 st.tuples(st.none(), st.none()))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["rnn", "gru", "lstm"]), JUNK, JUNK)
def test_frozen_fuzz_matches_layer_step(kind, x, state):
    """Whatever comes in, frozen.step does what layer.step (eval, no grad) does: the same
    numbers or the same clear error."""
    m = rnnlab.nn.make_layer(kind, 3, 4, num_layers=2, dtype=np.float64, seed=0).eval()
    frozen = m.freeze()
    try:
        want = m.step(x, state)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            frozen.step(x, state)
        return
    got = frozen.step(x, state)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-12)


@given(st.one_of(st.none(), st.integers(-3, 6), st.booleans(), st.floats(allow_nan=True),
                 st.text(max_size=2), st.just([2])))
def test_freeze_threads_fuzz(threads):
    """freeze(threads=...): None or an int >= 1 works and gives layer.step's numbers; any
    other value is a TypeError / ValueError naming threads, and no warning."""
    m = GRU(3, 4, dtype=np.float32, seed=0).eval()
    x = np.ones((2, 3), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            frozen = m.freeze(threads=threads)
        except (TypeError, ValueError) as e:
            assert "threads" in str(e)
            return
    np.testing.assert_allclose(frozen.step(x)[0], m.step(x)[0], rtol=1e-6, atol=1e-7)


def _assert_steps_give(steppers, x, want, tol, want_state=None):
    """Each stepper, stepped over x from a zero state, gives want[t] at every step (and,
    given want_state, ends in that state: h, or (h, c)): NaN and +inf exactly where want
    has them, the finite values within tol, and no warning."""
    for stepper_ in steppers:
        state = None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for t in range(len(x)):
                y, state = stepper_.step(x[t], state)
                np.testing.assert_array_equal(np.isnan(y), np.isnan(want[t]))
                np.testing.assert_array_equal(np.isposinf(y), np.isposinf(want[t]))
                fin = np.isfinite(want[t])
                np.testing.assert_allclose(y[fin], want[t][fin], **tol)
        if want_state is not None:
            for a, b in zip(_states(LSTM if isinstance(state, tuple) else GRU, state),
                            want_state):
                np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
                fin = np.isfinite(b)
                np.testing.assert_allclose(a[fin], b[fin], **tol)


BLAS_CASES = [(LSTM, {}, 256, 256), (LSTM, {"proj_size": 64}, 448, 256),
              (RNN, {}, 512, 512), (RNN, {"nonlinearity": "relu"}, 512, 512),
              (GRU, {}, 8, 8), (LSTM, {}, 8, 8), (GRU, {"bias": False}, 5, 3),
              (RNN, {}, 8, 8), (RNN, {"nonlinearity": "relu", "bias": False}, 5, 6)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls, kw, I, H", BLAS_CASES)
def test_blas_row_steps_equal_torch(cls, kw, I, H, dtype):
    """The BLAS-row step (stepper._blas_step: one BLAS matrix-vector product per row and
    part, weights in torch's layout): freeze() of RNN / LSTM layers from 2^19 weights ([W_ih |
    W_hh] in one product) and layer.step of float32 GRU / LSTM (the gates compiled), at
    batch 1-5, against torch step by step, with a NaN weight and an inf input reaching what
    they reach in torch. float64 <= 1e-10; float32 1e-5."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    tm = getattr(torch.nn, cls.__name__)(I, H, num_layers=2, **kw).eval()
    tm = tm.double() if dtype == np.float64 else tm
    om = cls(I, H, num_layers=2, dtype=dtype, **kw).eval()
    om.load_state_dict(tm.state_dict())
    big = H * (I + (kw.get("proj_size") or H)) * (1 if cls is RNN else 4) >= rnnlab.tuning.BLAS_ROWS
    assert (om.freeze()._weights[0].blas is not None) == big         # the first layer
    if dtype == np.float32 and kernels.warm(om.family):           # RNN too: its compiled gates
        assert all(w.blas is not None and w.blas[-1] is not None
                   for w in stepper.live_weights(om.family, om.weights()))
    rng = np.random.default_rng(2)
    tol = dict(rtol=0, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    for N in (1, 2, 3, 5):
        x = rng.standard_normal((3, N, I)).astype(dtype)
        for bad in (False, True):
            if bad:
                with torch.no_grad():
                    tm.weight_hh_l0[5, 2] = float("nan")
                om.weight_hh_l0[5, 2] = np.nan
                x[1, 0, 3] = np.inf
            with torch.no_grad():
                want, tstate = tm(torch.from_numpy(x))
            tstate = [t.numpy() for t in (tstate if isinstance(tstate, tuple) else (tstate,))]
            _assert_steps_give((om, om.freeze()), x, want.numpy(), tol, tstate)
        with torch.no_grad():
            tm.weight_hh_l0[5, 2] = 0.0
        om.weight_hh_l0[5, 2] = 0.0


@settings(deadline=None, max_examples=max(100, settings.default.max_examples))
@example(kind="rnn", dtype=np.float32, sizes=(512, 512), L=1, N=1, bias=True, bad=None,
         seed=0)                                         # the paths' thresholds, always
@example(kind="lstm", dtype=np.float64, sizes=(256, 256), L=2, N=3, bias=True, bad="nan_w",
         seed=1)
@example(kind="lstm", dtype=np.float32, sizes=(256, 256), L=2, N=2, bias=True, bad="inf_x",
         seed=2)
@example(kind="gru", dtype=np.float32, sizes=(256, 256), L=2, N=4, bias=True, bad="inf_w",
         seed=3)
@example(kind="rnn_relu", dtype=np.float64, sizes=(512, 512), L=2, N=5, bias=False,
         bad="nan_x", seed=0)
@given(kind=st.sampled_from(["rnn", "rnn_relu", "gru", "lstm"]),
       dtype=st.sampled_from([np.float32, np.float64]),
       sizes=st.sampled_from([(1, 1), (2, 3), (5, 16), (64, 64), (160, 128), (256, 256),
                              (512, 512)]),
       L=st.integers(1, 2), N=st.integers(1, 6), bias=st.booleans(),
       bad=st.sampled_from([None, "nan_x", "inf_x", "nan_w", "inf_w"]),
       seed=st.integers(0, 3))
def test_steps_equal_the_sequence_call(kind, dtype, sizes, L, N, bias, bad, seed):
    """layer.step and freeze().step (every step path: BLAS rows in torch's layout, the
    compiled loop, the joint matmul, numba's or NumPy's gates) equal the layer's own
    sequence call over the same two steps, at sizes on both sides of each path's
    threshold, with NaN / inf in the input or a weight placed where torch places it (the
    sequence call is checked against torch elsewhere)."""
    I, H = sizes
    m = rnnlab.nn.make_layer(kind, I, H, num_layers=L, bias=bias, dtype=dtype, seed=seed).eval()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, N, I)).astype(dtype)
    if bad in ("nan_x", "inf_x"):
        x[0, 0, I // 2] = np.nan if bad == "nan_x" else -np.inf
    elif bad is not None:
        w = m.weight_hh_l0.copy()
        w[w.shape[0] // 2, 0] = np.nan if bad == "nan_w" else np.inf
        m.weight_hh_l0 = w
    out, _ = m(x)
    tol = dict(rtol=0, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)
    _assert_steps_give((m, m.freeze()), x, out, tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_frozen_blas_rows_are_a_snapshot(dtype):
    """The BLAS-row frozen layout (LSTM H = 256) is a snapshot like the others: an in-place
    write into a weight or a bias is not seen until refresh()."""
    m = LSTM(256, 256, dtype=dtype, seed=0).eval()
    frozen = m.freeze()
    assert frozen._weights[0].blas is not None
    x = np.ones((1, 256), dtype)
    before = frozen.step(x)[0]
    m.bias_ih_l0[...] += 1.0
    m.weight_hh_l0[...] *= 0.5
    np.testing.assert_array_equal(frozen.step(x)[0], before)
    frozen.refresh()
    np.testing.assert_allclose(frozen.step(x)[0], m.step(x)[0], rtol=0,
                               atol=1e-12 if dtype == np.float64 else 1e-6)
    assert not np.allclose(frozen.step(x)[0], before)


@pytest.fixture
def one_thread_after():
    yield
    rnnlab.set_num_threads(1)


@pytest.mark.parametrize("cls", [GRU, pytest.param(LSTM, marks=pytest.mark.slow)])
def test_set_num_threads_live_steps_equal_torch(cls, one_thread_after, monkeypatch):
    """After rnnlab.set_num_threads(3) (more than the pair's two: 2 and unset take the
    pair's step, test_pair_step.py), layer.step of float32 GRU / LSTM layers of 2^18
    weights and more (H = 256) splits each step over numba's threads reading the live
    parameters (batch 1-4; batch 5 takes the other paths): against torch step by step, with
    in-place writes into the parameters (a scaled W_hh, then a NaN weight) seen at the next
    step, and an inf input. (LSTM's under -m slow: its threaded kernel's compile is ~10 s
    of the default suite.)"""
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    tm = getattr(torch.nn, cls.__name__)(256, 256, num_layers=2).eval()
    om = cls(256, 256, num_layers=2, dtype=np.float32).eval()
    om.load_state_dict(tm.state_dict())
    rnnlab.set_num_threads(3)
    assert rnnlab.get_num_threads() == 3 and om.freeze().threads == 3
    taken = []
    if kernels.warm(om.family):
        assert stepper._live_rows_step(om.family, np.float32, 1024 * 512) is not None
        lookup = stepper._live_rows_step
        monkeypatch.setattr(stepper, "_live_rows_step",
                            lambda *a: taken.append(a) or lookup(*a))
    rng = np.random.default_rng(4)
    tol = dict(rtol=1e-5, atol=1e-5)
    for N, edit in ((1, None), (2, "scale"), (4, "nan"), (5, None), (3, "zero")):
        if edit is not None:
            with torch.no_grad():
                if edit == "scale":
                    tm.weight_hh_l1.mul_(0.5)
                else:
                    tm.weight_ih_l0[7, 3] = float("nan") if edit == "nan" else 0.0
            if edit == "scale":
                om.weight_hh_l1[...] *= 0.5                  # in place: nothing tells rnnlab
            else:
                om.weight_ih_l0[7, 3] = np.nan if edit == "nan" else 0.0
        x = rng.standard_normal((3, N, 256)).astype(np.float32)
        x[1, 0, 5] = np.inf
        with torch.no_grad():
            want, tstate = tm(torch.from_numpy(x))
        tstate = [t.numpy() for t in (tstate if isinstance(tstate, tuple) else (tstate,))]
        _assert_steps_give((om,), x, want.numpy(), tol, tstate)
    assert not kernels.warm(om.family) or len(taken) == 2 * 3 * 4         # layers x steps x N <= 4


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.integers(-2, 4), st.booleans(), st.floats(allow_nan=True), st.none(),
                 st.text(max_size=2), st.just(np.int64(2)), st.just([2])))
def test_set_num_threads_takes_a_positive_int(n):
    """rnnlab.set_num_threads(n): an int >= 1 (NumPy's too) is kept and freeze() takes it;
    anything else is a TypeError / ValueError naming the threads, the setting unchanged,
    and no warning."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                rnnlab.set_num_threads(n)
            except (TypeError, ValueError) as e:
                assert "threads" in str(e) and rnnlab.get_num_threads() == 1
                return
        assert rnnlab.get_num_threads() == n
        assert GRU(3, 4).freeze().threads == n
    finally:
        rnnlab.set_num_threads(1)
