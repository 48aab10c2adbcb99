"""Unrecorded calls of a few steps: the compiled loop reads W_hh itself by rows
(tuning.BY_ROWS_STEPS / BY_ROWS_FEW) instead of a transposed copy made per call, and a
batch-1 call of a few steps stays off the pair (tuning.PAIR_STEPS), while a long one takes it
from PAIR_LONG_MIN weights (PAIR_LONG_STEPS)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab import GRU, LSTM, RNN
from rnnlab.cells import by_mode
from rnnlab.sequence import driver, kernels, pair
from rnnlab.tuning import (BY_ROWS_FEW, BY_ROWS_STEPS, PAIR_LONG_MIN, PAIR_LONG_STEPS, PAIR_MIN,
                           PAIR_STEPS)
from torch_pairs import count_planned_calls, torch_pair

needs_kernels = pytest.mark.skipif(not kernels.available(), reason="numba not installed")


@pytest.fixture
def one_thread():
    rnnlab.set_num_threads(1)
    yield
    kernels._state["threads"] = None


def _copies(monkeypatch):
    """Counts the copies of W_hh the driver makes or keeps (transposed, or in panels)."""
    made = []
    for name in ("transposed", "kept_panels_of", "leased_panels"):
        real = getattr(driver, name)
        monkeypatch.setattr(driver, name,
                            lambda *a, real=real, **k: made.append(1) or real(*a, **k))
    return made


@needs_kernels
@pytest.mark.parametrize("cls, kw", [(LSTM, {}), (GRU, {}), (RNN, {"nonlinearity": "relu"}),
                                     (GRU, {"bias": False})])
@pytest.mark.parametrize("T, N", [(1, 1), (BY_ROWS_STEPS, 1), (BY_ROWS_FEW, 3),
                                  (BY_ROWS_STEPS + 1, 1), (BY_ROWS_FEW + 1, 3)])
def test_few_steps_read_w_hh_by_rows(cls, kw, T, N, one_thread, monkeypatch):
    """Up to the thresholds no copy of W_hh is made and the numbers are torch's; past them
    the copy is made (and the numbers are torch's too), two layers, a given state."""
    torch, tm, om = torch_pair(cls, kw, 5, 16, 2)
    made = _copies(monkeypatch)
    rng = np.random.default_rng(T * 10 + N)
    x = rng.standard_normal((T, N, 5)).astype(np.float32)
    h0 = rng.standard_normal((2, N, 16)).astype(np.float32)
    state = (h0, h0[::-1].copy()) if cls is LSTM else h0
    with rnnlab.no_grad():
        y, h = om(x, state)
    with torch.no_grad():
        ty, th = tm(torch.from_numpy(x), tuple(map(torch.from_numpy, state)) if cls is LSTM
                    else torch.from_numpy(h0))
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(h if cls is LSTM else [h], th if cls is LSTM else [th]):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-6)
    short = T <= (BY_ROWS_STEPS if N == 1 else BY_ROWS_FEW)
    assert (len(made) == 0) == short, (len(made), T, N)


@needs_kernels
def test_recorded_short_calls_keep_their_copy(one_thread, monkeypatch):
    """A recorded call keeps W_hh^T for backward: the copy stays (and its gradients are
    checked against torch elsewhere)."""
    made = _copies(monkeypatch)
    m = LSTM(4, 8, dtype=np.float32)
    m(np.zeros((1, 1, 4), np.float32))
    assert len(made) == 1


def test_a_few_steps_stay_off_the_pair():
    """A batch-1 call of fewer than PAIR_STEPS (6) steps never goes to the pair (one step:
    the worker seldom comes in time, and its low share would cool the pair down for the
    longer calls after it; to 5 steps one thread is faster)."""
    fam = by_mode("LSTM")
    assert PAIR_STEPS == 6
    for T in (1, PAIR_STEPS - 1):
        assert not pair._by_units(fam, np.dtype(np.float32), 1, 1024, 256, False, T)
    assert pair._by_units(fam, np.dtype(np.float32), 1, 1024, 256, False, PAIR_STEPS) == (
        kernels.available())


def test_long_sequences_take_the_pair_from_fewer_weights():
    """From PAIR_LONG_STEPS steps the pair takes W_hh of PAIR_LONG_MIN weights (RNN H 256,
    LSTM H 128), below that step count only from PAIR_MIN; never under PAIR_LONG_MIN."""
    f32, rnn, lstm = np.dtype(np.float32), by_mode("RNN_TANH"), by_mode("LSTM")
    assert PAIR_LONG_MIN == 256 * 256 < PAIR_MIN
    on = kernels.available()
    assert not pair._by_units(rnn, f32, 1, 256, 256, False, PAIR_LONG_STEPS - 1)
    assert pair._by_units(rnn, f32, 1, 256, 256, False, PAIR_LONG_STEPS) == on
    assert pair._by_units(lstm, f32, 1, 512, 128, False, PAIR_LONG_STEPS) == on
    assert not pair._by_units(rnn, f32, 1, 255, 256, False, 10 * PAIR_LONG_STEPS)
    assert not pair._by_units(rnn, f32, 2, 256, 256, False, PAIR_LONG_STEPS)


@needs_kernels
@pytest.mark.skipif(not pair.possible(), reason="the pair cannot run here")
def test_a_long_rnn_on_the_pair_equals_torch(monkeypatch):
    """RNN (PAIR_LONG_STEPS, 1, 3, 256) runs on the pair and gives torch's numbers."""
    torch, tm, om = torch_pair(RNN, {}, 3, 256, 1)
    ran, real, boxed = [], driver.run_pair, driver.pair_in
    monkeypatch.setattr(driver, "run_pair", lambda *a: ran.append(1) or real(*a))
    monkeypatch.setattr(driver, "pair_in", lambda *a: ran.append(1) or boxed(*a))
    count_planned_calls(monkeypatch, ran)
    monkeypatch.setitem(pair._state, "cool", 0.0)
    x = np.random.default_rng(1).standard_normal((PAIR_LONG_STEPS, 1, 3)).astype(np.float32)
    with rnnlab.no_grad():
        y, h = om(x)
    with torch.no_grad():
        ty, th = tm(torch.from_numpy(x))
    assert ran in ([1], [True])
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(h, th.numpy(), rtol=1e-5, atol=2e-6)


@needs_kernels
@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["LSTM", "GRU", "RNN_TANH", "RNN_RELU"]), st.integers(1, 4),
       st.integers(1, 4), st.integers(1, 24), st.booleans(), st.booleans())
def test_by_rows_equals_the_recorded_call(mode, T, N, H, bias, nan):
    """Whatever the sizes (by rows where the thresholds allow, else the copy): the
    unrecorded call gives the recorded call's numbers (W_hh^T copied there) to float32
    rounding, NaN where the recorded call has NaN."""
    cls = {"LSTM": LSTM, "GRU": GRU}.get(mode, RNN)
    kw = {"nonlinearity": "relu"} if mode == "RNN_RELU" else {}
    m = cls(3, H, bias=bias, dtype=np.float32, seed=T * 100 + N * 10 + H, **kw)
    x = np.random.default_rng(H).standard_normal((T, N, 3)).astype(np.float32)
    if nan:
        x[0, 0, 0] = np.nan
    y_rec, _ = m(x)                                  # recorded: W_hh^T copied
    with rnnlab.no_grad():
        y, _ = m(x)
    np.testing.assert_allclose(y, y_rec, rtol=2e-6, atol=2e-6)
    assert (np.isnan(y) == np.isnan(y_rec)).all()
