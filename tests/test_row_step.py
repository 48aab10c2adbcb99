"""The one-thread compiled step of small layers (kernels.row_step_for): ``layer.step`` and
``freeze().step`` at batch 1-4 of float32 layers below THREADED_MIN weights run each layer
as one compiled call from the weights in torch's layout. Against torch step by step, with
in-place edits of the live parameters seen at the next step, NaN and inf as torch; and the
layers it must not take (a projection, read-only or other layouts, large layers)."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab import GRU, LSTM, RNN
from rnnlab.sequence import kernels, stepper
from torch_pairs import edit_both, torch_pair

needs = pytest.mark.skipif(not kernels.available(), reason="compiled kernels are off")
CASES = [(RNN, {}), (RNN, {"nonlinearity": "relu"}), (GRU, {}), (LSTM, {}),
         (GRU, {"bias": False}), (LSTM, {"bias": False})]


@pytest.fixture
def counted(monkeypatch):
    """Counts the row step's calls (each layer's step)."""
    calls = []
    real = kernels.row_step_for

    def wrapped(*a):
        step = real(*a)
        return None if step is None else (lambda *b: calls.append(1) or step(*b))
    monkeypatch.setattr(stepper, "row_step_for", wrapped)
    yield calls


def _check(y, want):
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(y[fin], want[fin], rtol=1e-5, atol=1e-6)


@needs
@pytest.mark.parametrize("cls, kw", CASES)
def test_live_and_frozen_steps_equal_torch_and_see_edits(cls, kw, counted):
    torch, tm, om = torch_pair(cls, kw, 5, 16, 2, 0)
    frozen = om.freeze()                                  # a snapshot: edits not seen
    rng = np.random.default_rng(1)
    state = tstate = fstate = None
    for t, edit in enumerate([None, None, "scale", "nan", None]):
        edit_both(torch, tm, om, edit, (3, 2))
        x = rng.standard_normal((3, 5)).astype(np.float32)
        x[1, 4] = np.inf if t == 1 else x[1, 4]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y, state = om.step(x, state)
            fy, fstate = frozen.step(x, fstate)
        with torch.no_grad():
            ty, tstate = tm(torch.from_numpy(x)[None], tstate)
        _check(y, ty[0].numpy())
        if edit is None and t < 2:
            _check(fy, ty[0].numpy())
    assert len(counted) == 5 * 2 + 5 * 2                    # live and frozen, 2 layers


@needs
def test_layers_it_must_not_take(counted):
    x = np.ones((1, 8), np.float32)
    LSTM(8, 8, proj_size=4, dtype=np.float32).eval().step(x)      # a projection
    GRU(8, 8, dtype=np.float64).eval().step(x.astype(np.float64))  # float64: NumPy's path
    GRU(256, 256, dtype=np.float32).eval().step(np.ones((1, 256), np.float32))  # 2^18 and more
    assert counted == []
    ro = GRU(8, 8, dtype=np.float32, seed=0).eval()
    want = ro.step(x)[0]
    ro.weight_hh_l0.flags.writeable = False                 # another numba type: no
    ro.__dict__.pop("_step_weights", None)
    _check(ro.step(x)[0], want)                            # BLAS's products: rounding
    assert counted == [1]                                   # the first step only


@needs
def test_five_rows_take_the_other_paths(counted):
    m = LSTM(4, 8, dtype=np.float32, seed=0).eval()
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    y5 = m.step(x)[0]
    y4 = np.concatenate([m.step(x[:4])[0], m.step(x[4:])[0]])
    np.testing.assert_allclose(y5, y4, rtol=1e-5, atol=1e-6)
    assert len(counted) == 2


@needs
@settings(max_examples=25, deadline=None)
@given(st.sampled_from(CASES), st.integers(1, 4), st.integers(1, 24), st.integers(1, 2),
       st.booleans())
def test_the_row_step_equals_the_numpy_path(case, N, H, L, nan):
    cls, kw = case
    m = cls(3, H, num_layers=L, dtype=np.float32, seed=H, **kw)
    x = np.random.default_rng(N).standard_normal((3, N, 3)).astype(np.float32)
    if nan:
        x[1, 0, 2] = np.nan
    with rnnlab.no_grad():
        got, s = [], None
        for t in range(3):
            y, s = m.step(x[t], s)
            got.append(y)
        with kernels.disabled():
            m.__dict__.pop("_step_weights", None)
            want, s = [], None
            for t in range(3):
                y, s = m.step(x[t], s)
                want.append(y)
    m.__dict__.pop("_step_weights", None)
    for g, w in zip(got, want):
        _check(g, w)
