"""The compiled float32 kernels in training: the recording forward and the BPTT loop
against the NumPy path and torch, with NaN, inf and huge values."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from rnnlab import GRU, LSTM, RNN

pytest.importorskip("numba")
from kernel_paths import built, counted, numpy_only  # noqa: E402

VALUES = st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0, -0.0, 1e-40, 50.0])


# -- training: the recording forward and the BPTT loop ----------------------------------
def _train_paths(m, x, hx, grads, forward, backward):
    """Forward in training mode and backward with ``grads`` (d_output, d_h_n[, d_c_n]),
    with the compiled forward / backward on or off; returns (everything, calls)."""
    calls = []
    with counted(calls, forward, backward) if forward or backward else numpy_only():
        m.grads.clear()
        out, state = m.train()(x, hx)
        back = m.backward(*grads)
    result = [out] + list(state if isinstance(state, tuple) else (state,)) + list(back)
    return result + [m.grads[k].copy() for k in sorted(m.grads)], len(calls)


TRAIN_CONFIGS = [dict(), dict(num_layers=2, bidirectional=True), dict(bias=False),
                 dict(batch_first=True, num_layers=2)]
WHICH = ["all", "output", "h_n", "c_n"]


@pytest.mark.parametrize("cls", [RNN, GRU, LSTM])
@pytest.mark.parametrize("kw", TRAIN_CONFIGS, ids=[str(k) for k in TRAIN_CONFIGS])
@pytest.mark.parametrize("which", WHICH)
def test_compiled_training_equals_numpy_path(cls, kw, which):
    """Forward and backward through the compiled loops, each alone and both, against the
    NumPy path: outputs, states, dx, dh0, dc0 and every parameter gradient. With only c_n
    in the loss no gradient reaches h at the last step, and the NumPy BPTT runs (it
    leaves that branch out, as autograd does)."""
    if which == "c_n" and cls is not LSTM:
        pytest.skip("only LSTM has c_n")
    if not built():
        pytest.skip("kernels did not build here")
    m = cls(5, 7, dtype=np.float32, seed=3, **kw)
    rng = np.random.default_rng(1)
    bf = kw.get("batch_first", False)
    T, N = 6, 4
    x = rng.standard_normal((N, T, 5) if bf else (T, N, 5)).astype(np.float32)
    out, state = m.eval()(x)
    states = state if isinstance(state, tuple) else (state,)
    hx = tuple(rng.standard_normal(s.shape).astype(np.float32) for s in states)
    g = [rng.standard_normal(out.shape).astype(np.float32)] + [
        rng.standard_normal(s.shape).astype(np.float32) for s in states]
    keep = {"all": range(len(g)), "output": [0], "h_n": [1], "c_n": [2]}[which]
    grads = [v if i in keep else None for i, v in enumerate(g)]
    hx = hx if cls is LSTM else hx[0]
    want, n = _train_paths(m, x, hx, grads, False, False)
    assert n == 0
    for forward, backward in ((True, True), (True, False), (False, True)):
        got, n = _train_paths(m, x, hx, grads, forward, backward)
        assert n > 0 or (not forward and (which == "c_n" or cls is RNN))   # RNN: no
        #                                                   compiled step in the driver loop
        assert len(got) == len(want)
        for u, v in zip(got, want):
            if u is None or v is None:
                assert u is v
                continue
            assert u.dtype == np.float32 and u.shape == v.shape
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=3e-6)


@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_compiled_training_equals_torch_float32(cls):
    torch = pytest.importorskip("torch")
    if not built():
        pytest.skip("kernels did not build here")
    torch.manual_seed(0)
    tm = getattr(torch.nn, cls.__name__)(8, 16, num_layers=2, bidirectional=True)
    om = cls(8, 16, num_layers=2, bidirectional=True, dtype=np.float32)
    om.load_state_dict(tm.state_dict())
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 4, 8)).astype(np.float32)
    dy = rng.standard_normal((30, 4, 32)).astype(np.float32)
    calls = []
    with counted(calls):
        om.train()(x)
        dx, dh0 = om.backward(dy)[:2]
    assert calls
    tx = torch.from_numpy(x).requires_grad_(True)
    tm(tx)[0].backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-5, atol=1e-5)
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(om.grads[name], p.grad.numpy(), rtol=1e-5, atol=1e-5,
                                   err_msg=name)


@given(st.sampled_from([RNN, GRU, LSTM]), st.integers(1, 5), st.integers(1, 5), st.integers(1, 6),
       st.integers(0, 2 ** 32 - 1), st.lists(st.tuples(st.integers(0, 10 ** 6), VALUES),
                                             max_size=4), st.sampled_from(["x", "w", "dy"]))
def test_compiled_training_fuzz_nonfinite_like_numpy_path(cls, T, N, H, seed, specials, where):
    """Training with NaN / inf / huge / tiny values in the input, the weights or the
    upstream gradient: every output and gradient as the NumPy path's, NaN and inf in the
    same places, no warning."""
    if not built():
        return
    rng = np.random.default_rng(seed)
    m = cls(3, H, num_layers=2, dtype=np.float32, seed=seed % 1000)
    x = rng.standard_normal((T, N, 3)).astype(np.float32)
    dy = rng.standard_normal((T, N, H)).astype(np.float32)
    target = {"x": x, "w": m.weight_hh_l0, "dy": dy}[where]
    for pos, v in specials:
        target.reshape(-1)[pos % target.size] = v
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for on in (True, False):
            results.append(_train_paths(m, x, None, [dy], on, on)[0])
    for u, v in zip(*results):
        if v is None:
            continue
        np.testing.assert_array_equal(np.isnan(u), np.isnan(v))
        np.testing.assert_array_equal(np.isposinf(u), np.isposinf(v))
        np.testing.assert_array_equal(np.isneginf(u), np.isneginf(v))
        fin = np.isfinite(v)                  # float32 sums of huge terms cancel: the
        scale = np.abs(v[fin]).max(initial=0)  # tolerance follows the array's magnitude
        np.testing.assert_allclose(u[fin], v[fin], rtol=1e-4, atol=1e-5 + 1e-4 * scale)


def test_training_with_lengths_norms_or_projection_keeps_the_drivers_loop():
    """Packed lengths, dh_norms and proj_size keep the driver's own BPTT loop (the
    whole-loop kernels have none of them; its steps may be compiled), with the same
    gradients as the NumPy steps."""
    if not built():
        pytest.skip("kernels did not build here")
    from rnnlab.sequence import checked as driver
    x = np.ones((5, 2, 3), np.float32)

    def loops_called(run):
        calls = []
        with counted(calls, keep=("step", "back", "cell")):
            run()
        return len(calls)

    m = LSTM(3, 4, proj_size=2, dtype=np.float32, seed=0)
    assert loops_called(lambda: m.backward(np.ones((5, 2, 2), np.float32))
                        if m.train()(x) else None) == 0
    g = GRU(3, 4, dtype=np.float32, seed=0)
    assert loops_called(lambda: g.backward(np.ones((5, 2, 4), np.float32))
                        if g.train()(x, lengths=[5, 3]) else None) == 0
    w = [[(g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)]]
    (out, _, _), cache = driver.forward("GRU", x, w)
    norms = []
    assert loops_called(lambda: norms.append(
        driver.backward(cache, np.ones_like(out), dh_norms=True))) == 0
    with numpy_only():
        (out, _, _), cache = driver.forward("GRU", x, w)
        want = driver.backward(cache, np.ones_like(out), dh_norms=True)
    np.testing.assert_allclose(norms[0]["dh_norms"][0][0], want["dh_norms"][0][0], rtol=1e-5)
    np.testing.assert_allclose(norms[0]["dx"], want["dx"], rtol=1e-5, atol=1e-6)
