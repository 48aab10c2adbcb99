"""The family registry: a new family in one file gets layers, directions, lengths, cells,
the reference loop, gradcheck and explain; and the plain reference BPTT equals the fast
path for every family and option."""
import contextlib
import importlib.util
import pathlib

import numpy as np
import pytest

import rnnlab
from rnnlab import cells, reference
from rnnlab.tools import cli
from rnnlab.tools.cases import Case
from rnnlab.tools.gradcheck import GradCase, TOL, check_layer

ROOT = pathlib.Path(__file__).parent.parent


@pytest.fixture(scope="module")
def mgu():
    spec = importlib.util.spec_from_file_location("mgu_family", ROOT / "examples" / "mgu_family.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    yield mod.FAMILY
    cells.unregister("mgu")


def _reference_vs_fast(case):
    rng = np.random.default_rng(case.seed)
    layer = case.make_layer(dtype="float64")
    fam = layer.family
    D = layer.num_directions
    T, N = case.seq_len, case.batch
    x = rng.standard_normal((T, N, case.input_size))
    h0 = rng.standard_normal((case.num_layers * D, N, case.H_out))
    c0 = rng.standard_normal((case.num_layers * D, N, case.hidden_size)) if fam.has_cell_state else None
    out, state = layer(x, (h0, c0) if c0 is not None else h0, lengths=case.lengths)
    h_n, c_n = state if c0 is not None else (state, None)
    dy, dh = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    dc = None if c_n is None else rng.standard_normal(c_n.shape)
    fast = layer.backward(dy, dh, dc) if c0 is not None else layer.backward(dy, dh)
    ran = reference.run(layer, x, h0, c0, case.lengths)
    slow = reference.backprop(ran, dy, dh, dc)
    np.testing.assert_allclose(ran["output"], out, atol=1e-12, rtol=0)
    np.testing.assert_allclose(ran["h_n"], h_n, atol=1e-12, rtol=0)
    np.testing.assert_allclose(slow["dx"], fast[0], atol=1e-11, rtol=0)
    np.testing.assert_allclose(slow["dh0"], fast[1], atol=1e-11, rtol=0)
    if c0 is not None:
        np.testing.assert_allclose(slow["dc0"], fast[2], atol=1e-11, rtol=0)
    for name, g in layer.grads.items():
        np.testing.assert_allclose(slow["grads"][name], g, atol=1e-10, rtol=0, err_msg=name)


REF_CASES = [Case(kind, num_layers=L, bidirectional=bi, bias=bias, lengths=lens, seq_len=5,
                  batch=3, proj_size=p, seed=s)
             for s, (kind, L, bi, bias, lens, p) in enumerate([
                 ("rnn", 1, False, True, None, 0), ("rnn_relu", 2, True, False, [5, 2, 3], 0),
                 ("gru", 2, True, True, [1, 5, 4], 0), ("gru", 1, False, False, None, 0),
                 ("lstm", 2, True, True, [3, 5, 1], 0), ("lstm", 2, False, True, None, 2),
                 ("lstm", 1, True, False, [2, 2, 5], 3)])]


@pytest.mark.parametrize("case", REF_CASES, ids=[c.label() for c in REF_CASES])
def test_reference_bptt_equals_fast_path(case):
    _reference_vs_fast(case)


# GRU and LSTM steps take whole-row passes up to N * H = tuning.SMALL_GATES and per-gate
# slices above it: both paths against the plain loop (batch 40 x H 32 = 1280).
BIG_CASES = [Case(kind, num_layers=2, bidirectional=bi, lengths=lens, seq_len=4, batch=40,
                  hidden_size=32, input_size=3, seed=9)
             for kind, bi, lens in [("gru", True, None), ("lstm", False, None),
                                    ("gru", False, list(range(1, 5)) * 10),
                                    ("lstm", True, list(range(4, 0, -1)) * 10)]]


def test_small_threshold_sits_between_the_cases():
    assert 3 * 2 <= rnnlab.tuning.SMALL_GATES < 40 * 32


@pytest.mark.parametrize("case", BIG_CASES, ids=[c.label() for c in BIG_CASES])
def test_reference_bptt_equals_fast_path_above_small(case):
    _reference_vs_fast(case)


def test_new_family_gets_everything(mgu, capsys):
    layer = rnnlab.RNNBase("MGU", 3, 4, num_layers=2, bidirectional=True, dtype=np.float64)
    assert [n for n, _ in layer.named_parameters()][:4] == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert layer.weight_ih_l0.shape == (8, 3)
    out, h_n = layer(np.random.default_rng(0).standard_normal((5, 2, 3)), lengths=[5, 3])
    assert out.shape == (5, 2, 8) and not out[3:, 1].any()
    _reference_vs_fast(Case("mgu", num_layers=2, bidirectional=True, lengths=[4, 5, 2], batch=3))
    for case in [GradCase("mgu"), GradCase("mgu", num_layers=2, bidirectional=True,
                                           lengths=[4, 1, 3]), GradCase("mgu", bias=False)]:
        assert max(check_layer(case).values()) < TOL, case.label()
    cell = rnnlab.nn.make_cell("mgu", 3, 4, dtype=np.float64)
    assert cell(np.ones((2, 3))).shape == (2, 4)
    uni = rnnlab.RNNBase("MGU", 3, 4, num_layers=2, dtype=np.float64).eval()
    y, h = uni.step(np.ones((2, 3)))                       # layer.step and freeze() too
    np.testing.assert_allclose(uni.freeze().step(np.ones((2, 3)))[0], y, rtol=0, atol=1e-13)
    np.testing.assert_allclose(uni(np.ones((1, 2, 3)))[0][0], y, rtol=0, atol=1e-13)
    assert cli.main(["explain", "mgu", "--layers", "2", "--lengths", "3,1"]) == 0
    text = capsys.readouterr().out
    assert "f = s(x W_if^T" in text and "0 unexpected" in text
    assert cli.main(["gradcheck", "--samples", "2"]) == 0
    assert "mgu" in capsys.readouterr().out


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown mode"):
        rnnlab.RNNBase("NOPE", 3, 4)
    with pytest.raises(ValueError, match="already registered"):
        import dataclasses
        cells.register(dataclasses.replace(cells.FAMILIES["gru"], mode="GRU2"))


def _compiled_equals_numpy(mgu, cases):
    """The example family's layer calls (recorded, forward and back; ``cases``: their
    lengths) and batch-1 steps, compiled and on the NumPy path: the same numbers."""
    from rnnlab.sequence import kernels
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    dy = rng.standard_normal((6, 3, 10)).astype(np.float32)
    results = []
    for compiled in (True, False):
        with (contextlib.nullcontext() if compiled else kernels.disabled()):
            layer = rnnlab.RNNBase("MGU", 4, 5, num_layers=2, bidirectional=True,
                                   dtype=np.float32, seed=2)
            got = []
            for lengths in cases:
                out, h_n = layer(x, lengths=lengths)
                got += [out, h_n, *layer.backward(dy)]
            uni = rnnlab.RNNBase("MGU", 4, 5, dtype=np.float32, seed=2).eval()
            got += [uni.step(x[0])[0], uni.freeze().step(x[0])[0]]
            results.append(got + [layer.grads[k] for k in sorted(layer.grads)])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)


def test_new_family_gets_compiled_loops(mgu):
    """The example family's scalar units (its own file, nothing else) give it every
    compiled float32 loop shape: the same numbers as its NumPy step, forward and back,
    with and without lengths, and in layer.step. Only the kernels these calls use are
    compiled here (each on its first use: ~12 s); every one of them, the pair's and a
    batch's halves' included: test_new_family_compiles_every_kernel (-m slow; ~35 s of
    compiling on 2 cores)."""
    from rnnlab.sequence import kernels
    if not kernels.available():
        pytest.skip("numba is not installed here")
    assert set(kernels.kernels(mgu, "sequence")) >= {"forward", "forward_in", "backward",
                                                      "pair", "step", "back", "cell"}
    _compiled_equals_numpy(mgu, (None, [6, 2, 4]))


@pytest.mark.slow
def test_new_family_compiles_every_kernel(mgu, small, monkeypatch):
    """Every compiled kernel of the example family builds (kernels.warm), and its
    unrecorded calls on the pair (batch 1, met in the step box) and in a batch's halves
    (the input projected inside the loop) give its NumPy path's numbers."""
    from rnnlab.sequence import halves, kernels
    if not kernels.warm(mgu):
        pytest.skip("numba is not installed here")
    monkeypatch.setattr(halves, "HALVES_MIN", 0)
    monkeypatch.setattr(halves, "HALVES_STEP_MIN", 0)
    layer = rnnlab.RNNBase("MGU", 4, 6, dtype=np.float32, seed=3).eval()
    rng = np.random.default_rng(6)
    for N in (1, 5):
        x = rng.standard_normal((9, N, 4)).astype(np.float32)
        got = layer(x)
        with kernels.disabled():
            want = layer(x)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)
    assert small and all(small), small
