"""The input projection of a few rows (linalg.project / project_gates): from 2 to
PROJECT_FEW_ROWS rows into more than PROJECT_FEW_MIN outputs, the compiled
_compiled.project_few instead of an OpenBLAS product that packs all of W_ih; used by the
one-thread path and by each half of the pair."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab import GRU, LSTM, RNN
from rnnlab.sequence import _compiled, kernels, linalg, pair
from rnnlab.tuning import PROJECT_FEW_MIN, PROJECT_FEW_ROWS
from torch_pairs import torch_pair

needs_kernels = pytest.mark.skipif(not kernels.available(), reason="numba not installed")


def _counted(monkeypatch):
    """The calls of _compiled.project_few (their arguments), from now on."""
    calls, real = [], _compiled.project_few
    monkeypatch.setattr(_compiled, "project_few", lambda *a: calls.append(a) or real(*a))
    return calls


def _per_gate(x, w3, lo, hi):
    """The reference: one float64 product per gate, side by side."""
    return np.concatenate([x.astype(np.float64) @ w3[g, lo:hi].T.astype(np.float64)
                           for g in range(w3.shape[0])], axis=1)


def test_which_products_are_few():
    f32 = np.dtype(np.float32)
    on = kernels.available()
    assert PROJECT_FEW_ROWS == 12 and PROJECT_FEW_MIN == 1024
    assert not linalg.few_rows(1, 4096, f32)               # one row: OpenBLAS's GEMV
    assert linalg.few_rows(2, 513, f32) == on
    assert not linalg.few_rows(2, 512, f32)                # OpenBLAS's small-matrix kernel
    assert linalg.few_rows(12, 86, f32) == on
    assert not linalg.few_rows(13, 4096, f32)
    assert not linalg.few_rows(4, 4096, np.dtype(np.float64))


@needs_kernels
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 4), st.integers(1, 12), st.integers(1, 20),
       st.integers(0, 2 ** 16), st.sampled_from(["none", "nan", "inf"]))
def test_project_few_equals_the_products(M, G, H, K, seed, special):
    """Every shape (rows not a multiple of four too, any half of the units): the products'
    numbers to float32 rounding, NaN where they have NaN (inf * 0 too)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((M, K)).astype(np.float32)
    w3 = rng.standard_normal((G, H, K)).astype(np.float32)
    if special != "none":
        x[rng.integers(M), rng.integers(K)] = np.nan if special == "nan" else np.inf
    lo = int(rng.integers(0, H))
    hi = int(rng.integers(lo + 1, H + 1))
    out = np.full((M, G * (hi - lo)), 7.0, np.float32)
    _compiled.project_few(out, x, w3, lo, hi)
    want = _per_gate(x, w3, lo, hi)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.sqrt(K))
    assert (np.isnan(out) == np.isnan(want)).all()


@needs_kernels
def test_project_gates_takes_the_compiled_kernel_only_where_few(monkeypatch):
    calls = _counted(monkeypatch)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((1024, 8)).astype(np.float32)
    for M in (1, 2, 12, 13):
        x = rng.standard_normal((M, 8)).astype(np.float32)
        out = linalg.project(x, w, np.empty((M, 1024), np.float32))
        np.testing.assert_allclose(out, x.astype(np.float64) @ w.T, rtol=1e-5, atol=1e-5)
    assert [a[1].shape for a in calls] == [(2, 8), (12, 8)]


@needs_kernels
@pytest.mark.parametrize("cls, kw, H", [(LSTM, {}, 128), (GRU, {}, 128),
                                        (GRU, {"bias": False}, 128),
                                        (RNN, {"nonlinearity": "relu"}, 256)])
@pytest.mark.parametrize("T, N", [(5, 1), (2, 5), (PROJECT_FEW_ROWS, 1)])
def test_short_calls_equal_torch(cls, kw, H, T, N, monkeypatch):
    """Layers (two, the first I = 5) whose projection is a few rows into many outputs, on
    the one-thread path (W_hh under the pair's PAIR_MIN): torch's numbers, and the
    compiled projection ran."""
    torch, tm, om = torch_pair(cls, kw, 5, H, 2)
    calls = _counted(monkeypatch)
    x = np.random.default_rng(T).standard_normal((T, N, 5)).astype(np.float32)
    with rnnlab.no_grad():
        y, h = om(x)
    with torch.no_grad():
        ty, th = tm(torch.from_numpy(x))
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(h[0] if cls is LSTM else h, (th[0] if cls is LSTM else th).numpy(),
                               rtol=1e-5, atol=2e-6)
    assert calls


@needs_kernels
@pytest.mark.skipif(not pair.possible(), reason="the pair cannot run here")
def test_the_pairs_halves_project_few_rows(small, monkeypatch):
    """Each half of the pair projects a few rows by the compiled kernel (PROJECT_FEW_MIN
    lowered so that a small layer takes it): the layer still gives torch's numbers. The
    queue's path (pair.run, from Python); the step box's (compiled, its threshold fixed at
    compile time): test_pair_in.py."""
    monkeypatch.setattr(linalg, "PROJECT_FEW_MIN", 0)
    monkeypatch.setattr("rnnlab.sequence.driver.sgemm_address", lambda: 0)
    calls = _counted(monkeypatch)
    torch, tm, om = torch_pair(LSTM, {}, 5, 16, 1)
    x = np.random.default_rng(3).standard_normal((6, 1, 5)).astype(np.float32)
    with rnnlab.no_grad():
        y, _ = om(x)
    with torch.no_grad():
        ty, _ = tm(torch.from_numpy(x))
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-5, atol=2e-6)
    assert small == [True] and sorted(a[3:] for a in calls) == [(0, 8), (8, 16)]
