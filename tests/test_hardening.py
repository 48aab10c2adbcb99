"""Nothing silently wrong: each hardening guarantee, against torch where torch has an answer."""
import warnings

import numpy as np
import pytest

import rnnlab
from rnnlab import GRU, LSTM, RNN, GRUCell, LSTMCell, functional as F

torch = pytest.importorskip("torch")


def _torch_pair(cls, *args, **kw):
    torch.manual_seed(0)
    tm = getattr(torch.nn, cls.__name__)(*args, **kw).double()
    om = cls(*args, **kw, dtype=np.float64)
    om.load_state_dict(tm.state_dict())
    return tm, om


# -- values past a sequence's length never matter -----------------------------------
@pytest.mark.parametrize("cls", [RNN, GRU, LSTM])
@pytest.mark.parametrize("junk", [np.nan, np.inf, -1e30])
def test_padding_garbage_changes_nothing(cls, junk):
    rng = np.random.default_rng(0)
    kw = dict(num_layers=2, bidirectional=True)
    if cls is LSTM:
        kw["proj_size"] = 2
    m = cls(3, 4, **kw, dtype=np.float64, seed=0)
    lengths = [5, 2, 4]
    x = rng.standard_normal((5, 3, 3))
    dirty = x.copy()
    for i, n in enumerate(lengths):
        dirty[n:, i] = junk
    dy = rng.standard_normal((5, 3, 2 * (2 if cls is LSTM else 4)))
    results = []
    for inp in (x, dirty):
        m.zero_grad()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out, state = m(inp, lengths=lengths)
            d_out = dy.copy()
            for i, n in enumerate(lengths):
                d_out[n:, i] = junk                       # garbage upstream at padding too
            grads = m.backward(d_out)
        results.append((out, state, grads, {k: v.copy() for k, v in m.grads.items()}))
    (o1, s1, g1, p1), (o2, s2, g2, p2) = results
    np.testing.assert_array_equal(o1, o2)
    for a, b in zip(s1 if cls is LSTM else (s1,), s2 if cls is LSTM else (s2,)):
        np.testing.assert_array_equal(a, b)
    for k in p1:
        assert np.isfinite(p2[k]).all(), k
        np.testing.assert_array_equal(p1[k], p2[k], err_msg=k)
    clean = g1[0].copy()
    for i, n in enumerate(lengths):
        clean[n:, i] = 0
    np.testing.assert_array_equal(g2[0], clean)            # dx: zero at the padding


# -- in-place changes between forward and backward ----------------------------------
@pytest.mark.parametrize("cls", [GRU, LSTM])
@pytest.mark.parametrize("lengths", [None, [4, 2]])
def test_backward_uses_what_forward_saw(cls, lengths):
    rng = np.random.default_rng(1)
    m = cls(3, 4, num_layers=2, dtype=np.float64, seed=1)
    x = rng.standard_normal((4, 2, 3))
    h0 = rng.standard_normal((2, 2, 4))
    hx = (h0, h0.copy()) if cls is LSTM else h0
    dy = rng.standard_normal((4, 2, 4))
    m(x, hx, lengths=lengths)
    expected = m.backward(dy)
    expected_grads = {k: v.copy() for k, v in m.grads.items()}
    m.zero_grad()
    m(x, hx, lengths=lengths)
    x *= 2                                                # the user's buffer changes
    h0 += 1
    for p in m.parameters():
        p -= 0.1                                          # an optimizer step
    got = m.backward(dy)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    for k, v in expected_grads.items():
        np.testing.assert_array_equal(m.grads[k], v, err_msg=k)


def test_cell_backward_uses_what_forward_saw():
    cell = GRUCell(3, 4, dtype=np.float64, seed=0)
    x, h = np.ones((2, 3)), np.full((2, 4), 0.5)
    cell(x, h)
    want = cell.backward(np.ones((2, 4)))
    g = {k: v.copy() for k, v in cell.grads.items()}
    cell.zero_grad()
    cell(x, h)
    x[:] = 7
    h[:] = -1
    cell.weight_hh[...] = 0
    got = cell.backward(np.ones((2, 4)))
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    for k in g:
        np.testing.assert_array_equal(cell.grads[k], g[k])


# -- .to() with the same dtype keeps everything --------------------------------------
def test_to_same_dtype_is_identity():
    m = GRU(3, 4)
    out, _ = m(np.ones((2, 1, 3), np.float32))
    m.backward(np.ones_like(out))
    params, grads = m.parameters(), dict(m.grads)
    for call in (lambda: m.to(np.float32), m.float, lambda: m.to("cpu"),
                 lambda: m.to(device="cpu", dtype="float32"), m.cpu):
        assert call() is m
        assert all(a is b for a, b in zip(params, m.parameters()))
        assert all(grads[k] is m.grads[k] for k in grads)
    m.double()
    assert all(a is not b for a, b in zip(params, m.parameters()))
    with pytest.raises(ValueError, match="CPU only"):
        m.to("cuda")


# -- complex refused ------------------------------------------------------------------
def test_complex_refused_everywhere():
    m = GRU(3, 4, dtype=np.float64)
    x = np.ones((2, 1, 3))
    out, h = m(x)
    with pytest.raises(TypeError, match="complex"):
        m(x.astype(complex))
    with pytest.raises(TypeError, match="complex"):
        m(x, h.astype(complex))
    with pytest.raises(TypeError, match="complex"):
        m.backward(out.astype(complex))
    with pytest.raises(TypeError, match="complex"):
        m.backward(None, h * 1j)
    cell = LSTMCell(3, 4, dtype=np.float64)
    cell(np.ones(3))
    with pytest.raises(TypeError, match="complex"):
        cell.backward(np.ones(4) * 1j)
    assert cell.pending == 1                                  # the refused call changed nothing


# -- from_packed with a bad permutation ------------------------------------------------
def test_from_packed_checks_permutation():
    from rnnlab.sequence import PackedSequence
    data = np.arange(6.0).reshape(3, 2)
    for idx in ([0, 0], [0, 2], [1.0, 0.0], [0]):
        with pytest.raises(ValueError, match="permutation"):
            rnnlab.from_packed(PackedSequence(data, np.array([2, 1]), np.array(idx), None))


# -- sigmoid keeps relative precision -------------------------------------------------
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_sigmoid_relative_precision(dt):
    from rnnlab.cells.activations import sigmoid
    x = np.concatenate([np.linspace(-80 if dt is np.float32 else -700, 40, 20001),
                        [-17.0, -30.0, 0.0, -0.0]]).astype(dt)
    x = np.concatenate([x, np.array([-200.0, -1e4], dt)])     # exp(-x) overflows: limit 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="ignore", under="ignore"):      # as the driver runs it
            s = sigmoid(x.copy())
    assert s[-1] == 0 and s[-2] >= 0
    exact = 1.0 / (1.0 + np.exp(-x.astype(np.longdouble)))
    tiny = np.finfo(dt).tiny
    ok = exact > tiny                                         # normal range of the dtype
    rel = np.abs(s[ok] - exact[ok]) / exact[ok]
    assert rel.max() < 4 * np.finfo(dt).eps
    assert s[x == -17][0] > 4e-8


# -- functional checks, foreign records -----------------------------------------------
def test_functional_checks():
    w = GRU(3, 4, dtype=np.float64).weights()
    x = np.ones((5, 2, 3))
    with pytest.raises(ValueError, match="between 1 and"):
        F.forward("GRU", x, w, lengths=[0, 5])
    (out, h, _), cache = F.forward("GRU", x, w)
    with pytest.raises(ValueError, match="d_output must have the shape"):
        F.backward(cache, np.ones((5, 1, 4)))             # would broadcast
    with pytest.raises(ValueError, match="d_h_n must have the shape"):
        F.backward(cache, None, np.ones((1, 4)))
    with pytest.raises(ValueError, match="unknown mode"):
        F.forward("GRUX", x, w)
    with pytest.raises(ValueError, match="features"):
        F.forward("GRU", np.ones((5, 2, 2)), w)
    with pytest.raises(TypeError, match="record returned by forward"):
        F.backward({"mode": "GRU"})


def test_backward_refuses_another_modules_record():
    a, b = GRU(3, 4, dtype=np.float64), GRU(3, 4, dtype=np.float64)
    out, _ = a(np.ones((2, 1, 3)))
    with pytest.raises(ValueError, match="this layer's forward"):
        b.backward(np.ones_like(out), call=a.last_call)


# -- NaN / inf in weights and states, missing upstream gradients ----------------------
@pytest.mark.parametrize("where", ["weight_ih_l1", "weight_hh_l0", "bias_hh_l1", "h0"])
@pytest.mark.parametrize("value", [np.inf, np.nan])
@pytest.mark.parametrize("cls, loss", [(c, lo) for c in (RNN, GRU, LSTM)
                                       for lo in ("output", "h_n", "h_n_layer0", "c_n")
                                       if lo != "c_n" or c is LSTM])
def test_nonfinite_propagates_like_torch(cls, where, value, loss):
    tm, om = _torch_pair(cls, 3, 4, num_layers=2)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 2, 3))
    h0 = rng.standard_normal((2, 2, 4))
    if where == "h0":
        h0[0, 1, 2] = value
    else:
        with torch.no_grad():
            getattr(tm, where).view(-1)[1] = value
        getattr(om, where).reshape(-1)[1] = value
    tx = torch.tensor(x, requires_grad=True)
    th = torch.tensor(h0, requires_grad=True)
    thx = (th, torch.zeros(2, 2, 4, dtype=torch.float64)) if cls is LSTM else th
    tout, ts = tm(tx, thx)
    th_n, tc_n = ts if cls is LSTM else (ts, None)
    dy = rng.standard_normal(tout.shape)
    d = {"output": (dy, None, None), "h_n": (None, np.ones((2, 2, 4)), None),
         "h_n_layer0": (None, np.concatenate([np.ones((1, 2, 4)), np.zeros((1, 2, 4))]), None),
         "c_n": (None, None, np.ones((2, 2, 4)))}[loss]
    tl = 0
    for t_val, g in zip((tout, th_n, tc_n), d):
        if g is not None:
            tl = tl + (t_val * torch.tensor(g)).sum()
    tl.backward()
    hx = (h0, np.zeros((2, 2, 4))) if cls is LSTM else h0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, state = om(x, hx)
        g = om.backward(*d) if cls is LSTM else om.backward(d[0], d[1])
    _same_nonfinite(out, tout)
    _same_nonfinite(g[0], tx.grad)
    _same_nonfinite(g[1], th.grad)
    for name, p in tm.named_parameters():
        want = p.grad if p.grad is not None else torch.zeros_like(p)
        _same_nonfinite(om.grads.get(name, np.zeros(p.shape)), want, name)


@pytest.mark.parametrize("cls", [RNN, GRU, LSTM])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_zero_state_times_nonfinite_weight_with_one_unit(cls, dtype):
    """hidden_size 1, batch 1, h0 = 0 and NaN / inf in W_hh: 0 * NaN is NaN in torch. With
    an inner dimension of 1 NumPy's np.dot computes 0 there (a scaling path), so the
    per-step products go through rnnlab.sequence.linalg.dot. Sequence, step, freeze and
    the gradients, on the NumPy path (the compiled loops multiply element by element)."""
    for value in (np.nan, np.inf):
        tm, om = _torch_pair(cls, 2, 1)
        with torch.no_grad():
            tm.weight_hh_l0.view(-1)[0] = value
        om.weight_hh_l0.reshape(-1)[0] = value
        if dtype == np.float32:
            tm, om = tm.float(), om.to(np.float32)
        x = np.random.default_rng(0).standard_normal((3, 1, 2)).astype(dtype)
        tx = torch.tensor(x, requires_grad=True)
        tout = tm(tx)[0]
        tout.backward(torch.ones_like(tout))
        tols = dict(atol=1e-6, rtol=1e-5) if dtype == np.float32 else {}
        from rnnlab.sequence import kernels
        with kernels.disabled():                                   # the NumPy path
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                out, _ = om(x)
                g = om.backward(np.ones_like(out))
                with rnnlab.no_grad():
                    steps = [om.eval().step(x[0])[0], om.freeze().step(x[0])[0]]
                om.train()
        _same_nonfinite(out, tout, **tols)
        _same_nonfinite(g[0], tx.grad, **tols)
        for y in steps:
            _same_nonfinite(y, tout[0], **tols)
        for name, p in tm.named_parameters():
            _same_nonfinite(om.grads[name], p.grad, name, **tols)


def _same_nonfinite(ours, theirs, what="", atol=1e-9, rtol=1e-9):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape, what
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"NaN {what}")
    np.testing.assert_array_equal(np.isposinf(ours), np.isposinf(theirs), err_msg=f"+inf {what}")
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(theirs), err_msg=f"-inf {what}")
    fin = np.isfinite(theirs)
    np.testing.assert_allclose(ours[fin], theirs[fin], atol=atol, rtol=rtol, err_msg=what)
