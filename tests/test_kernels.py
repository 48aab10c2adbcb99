"""The compiled float32 loops (rnnlab/sequence/kernels.py, numba): their exp /
sigmoid / tanh, and the layers through them (inference, training, steps) against the NumPy
path and torch."""
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import rnnlab
from rnnlab import GRU, LSTM, RNN
from rnnlab.sequence import kernels
from torch_pairs import FORK_CHILD, script_prints_ok

numba = pytest.importorskip("numba")
from rnnlab.sequence import _compiled  # noqa: E402  (needs numba)

EPS = np.finfo(np.float32).eps


@numba.njit
def _apply(which, x, out):
    for i in range(x.size):
        out[i] = _compiled._sigmoid(x[i]) if which == 0 else (
            _compiled._tanh(x[i]) if which == 1 else _compiled._exp(x[i]))


def _special_grid():
    pos = np.logspace(-45, 2, 3000)
    return np.concatenate([np.linspace(-100, 100, 200001), pos, -pos,
                           [0.0, np.inf, -np.inf, np.nan, 88.0, -88.0, 87.5, -87.5, 1e30,
                            -1e30, 3e38, -3e38, 1e-40, -1e-40]]).astype(np.float32)


@pytest.mark.parametrize("which, ref", [(0, lambda x: 1 / (1 + np.exp(-x))), (1, np.tanh)])
def test_compiled_functions_within_a_few_ulps(which, ref):
    x = _special_grid()
    out = np.empty_like(x)
    _apply(which, x, out)
    with np.errstate(over="ignore"):
        want = ref(x.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    fin = np.isfinite(want) & (np.abs(want) > 1e-30)
    rel = np.abs(out[fin] - want[fin]) / np.abs(want[fin])
    assert rel.max() <= 4 * EPS, rel.max()
    tiny = np.isfinite(want) & (np.abs(want) <= 1e-30)          # sigmoid far left, tanh of
    assert np.all(np.abs(out[tiny] - want[tiny]) <= 1e-30)      # subnormals: tiny either way
    if which == 1:
        assert np.signbit(out[x == 0][0]) == np.signbit(np.float32(0.0))
        neg0 = np.array([-0.0], np.float32)
        _apply(1, neg0, neg0)
        assert np.signbit(neg0[0])                               # tanh(-0.0) = -0.0
        assert out[x == np.inf][0] == 1 and out[x == -np.inf][0] == -1
    else:
        assert out[x == np.inf][0] == 1 and out[x == -np.inf][0] < 1e-37


@numba.njit(error_model="numpy", fastmath={"reassoc", "contract"})
def _rowdots_both_ways(a, b, w, r0, v):
    _compiled._rowdots(a, 0, w, r0, a.shape[0], v, False)
    _compiled._rowdots(b, 0, w, r0, b.shape[0], v, True)


def _doubled_in(width, monkeypatch):
    """A fresh (uncached) compiled loop calling _compiled.wide() with WIDE_VECTORS =
    width: its LLVM IR."""
    from numba import njit
    monkeypatch.setattr(_compiled, "WIDE_VECTORS", width)

    @njit(error_model="numpy")
    def doubled(a):
        _compiled.wide()
        for i in range(a.shape[0]):
            a[i] = a[i] * np.float32(2.0)
    a = np.arange(40, dtype=np.float32)
    doubled(a)
    np.testing.assert_array_equal(a, 2 * np.arange(40, dtype=np.float32))
    return next(iter(doubled.inspect_llvm().values()))


def test_wide_asks_llvm_for_512_bit_lanes_in_its_caller(monkeypatch):
    """_compiled.wide() puts "prefer-vector-width" on the function that calls it (LLVM then
    vectorises that function's loops in 512-bit lanes on AVX-512 cores), and nothing with
    tuning.WIDE_VECTORS = 0."""
    assert '"prefer-vector-width"="512"' in _doubled_in(512, monkeypatch)
    assert "prefer-vector-width" not in _doubled_in(0, monkeypatch)


_SAME_BITS = """
import sys, numpy as np
from rnnlab.sequence import _compiled
_compiled.WIDE_VECTORS = int(sys.argv[2])
import rnnlab
from rnnlab.nn import make_layer
rng, out = np.random.default_rng(0), {}
rnnlab.set_num_threads(1)        # the lane-by-lane loops only (the pair's sum in any order)
for kind in ("lstm", "gru", "rnn"):
    for T, N, I, H in [(9, 1, 5, 40), (6, 7, 24, 33), (5, 16, 48, 64)]:
        m = make_layer(kind, I, H, seed=1, dtype=np.float32)
        x = rng.standard_normal((T, N, I)).astype(np.float32)
        y = m(x)[0]
        out[f"{kind}{T}{N}y"] = np.array(y)
        dx = m.backward(rng.standard_normal(y.shape).astype(np.float32))
        out[f"{kind}{T}{N}dx"] = np.array(dx[0] if isinstance(dx, tuple) else dx)
        for name, g in m.grads.items():
            out[f"{kind}{T}{N}{name}"] = np.array(g)
    cell = getattr(rnnlab, kind.upper() + "Cell")(12, 20, seed=2, dtype=np.float32)
    h = cell(rng.standard_normal((3, 12)).astype(np.float32))
    out[kind + "cell"] = np.array(h[0] if isinstance(h, tuple) else h)
lstm = rnnlab.LSTM(12, 20, proj_size=6, seed=3, dtype=np.float32)     # the driver's loop
out["proj"] = np.array(lstm(rng.standard_normal((5, 3, 12)).astype(np.float32))[0])
np.savez(sys.argv[1], **out)
"""


@pytest.mark.slow
def test_wide_lanes_give_the_same_bits(tmp_path):
    """The loops wide() marks compute lane by lane (no sums in any order): compiled with
    WIDE_VECTORS = 512 and with 0, in fresh processes and caches, their outputs and
    gradients (sequence, cell, the driver's step loop) are the same bits."""
    import subprocess
    import sys
    script = tmp_path / "bits.py"
    script.write_text(_SAME_BITS)
    got = {}
    for width in (512, 0):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / f"cache{width}"))
        subprocess.run([sys.executable, str(script), str(tmp_path / f"{width}.npz"),
                        str(width)], check=True, env=env, timeout=600)
        got[width] = np.load(tmp_path / f"{width}.npz")
    assert len(got[512].files) > 30
    for name in got[512].files:
        np.testing.assert_array_equal(got[512][name].view(np.uint32),
                                      got[0][name].view(np.uint32), err_msg=name)


@pytest.mark.parametrize("count", [1, 7, 8, 13, 16, 37])
def test_rowdots_backwards_gives_the_same_sums(count):
    """The pair's batch-1 loop reads W_hh's rows backwards every other step (the rows it
    read last are still in L2): the same blocks, the same sums to the bit, every row's."""
    rng = np.random.default_rng(count)
    w = rng.standard_normal((count + 5, 67)).astype(np.float32)
    v = rng.standard_normal(67).astype(np.float32)
    a, b = np.full(count, np.nan, np.float32), np.full(count, np.nan, np.float32)
    _rowdots_both_ways(a, b, w, 3, v)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, w[3:3 + count].astype(np.float64) @ v, rtol=1e-5, atol=1e-5)


from kernel_paths import both_paths, built, counted, flat, numpy_only  # noqa: E402


CONFIGS = [dict(), dict(num_layers=3), dict(bidirectional=True, num_layers=2),
           dict(bias=False), dict(batch_first=True)]


@pytest.mark.parametrize("cls", [RNN, GRU, LSTM, "relu"])
@pytest.mark.parametrize("kw", CONFIGS, ids=[str(k) for k in CONFIGS])
def test_compiled_equals_numpy_path(cls, kw):
    if cls == "relu":
        cls, kw = RNN, dict(kw, nonlinearity="relu")
    m = cls(5, 7, dtype=np.float32, seed=3, **kw).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6, 5) if kw.get("batch_first") else (6, 4, 5)).astype(np.float32)
    a, b, ran = both_paths(m, x)
    assert ran
    for u, v in zip(flat(a), flat(b)):
        assert u.dtype == np.float32 and u.shape == v.shape
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=2e-6)
    a, b, ran = both_paths(m, x[:, 0] if not kw.get("batch_first") else x[0])   # unbatched
    assert ran
    for u, v in zip(flat(a), flat(b)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_compiled_equals_torch_float32(cls):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = getattr(torch.nn, cls.__name__)(8, 16, num_layers=2, bidirectional=True).eval()
    om = cls(8, 16, num_layers=2, bidirectional=True, dtype=np.float32)
    om.load_state_dict(tm.state_dict())
    x = np.random.default_rng(1).standard_normal((30, 4, 8)).astype(np.float32)
    (a, _, ran) = both_paths(om, x)
    assert ran
    with torch.no_grad():
        want = tm(torch.from_numpy(x))
    for u, v in zip(flat(a), flat(want)):
        np.testing.assert_allclose(u, v.numpy(), rtol=1e-5, atol=1e-6)


def test_compiled_only_where_it_wins_and_never_changes_other_calls():
    from rnnlab.cells import by_kind
    gru, lstm = by_kind("gru"), by_kind("lstm")
    f32 = np.float32
    if not built():
        pytest.skip("numba present but the kernels did not build here")
    assert kernels.kernel_for(gru, f32, 16, 96, 32, False) is not None
    assert kernels.kernel_for(lstm, np.float64, 16, 128, 32, False) is None      # float64
    assert kernels.kernel_for(lstm, f32, 16, 128, 32, True) is None              # proj_size
    assert kernels.kernel_for(lstm, f32, 8, 1024, 256, False) is None            # > COMPILED_LOOP_MAX
    assert kernels.kernel_for(by_kind("rnn"), f32, 16, 32, 32, False) is not None
    assert kernels.kernel_for(lstm, f32, 16, 128, 32, False, backward=True) is not None
    assert kernels.kernel_for(lstm, np.float64, 16, 128, 32, False, backward=True) is None
    # the one-step kernels: float32 GRU and LSTM only (RNN's NumPy step is as fast)
    assert kernels.cell_steps(lstm, np.float64) == (lstm.step, lstm.back, False)
    rnn = by_kind("rnn")
    assert kernels.cell_steps(rnn, f32) == (rnn.step, rnn.back, False)
    step, back, adds = kernels.cell_steps(gru, f32, np.zeros(6, f32), np.zeros(2, f32))
    assert step is not gru.step and back is not gru.back and adds


@pytest.mark.parametrize("cls", [GRU, LSTM])
@pytest.mark.parametrize("kw", [dict(lengths=[5, 3, 1]), dict(proj_size=2), dict(big=True)],
                         ids=["lengths", "proj_size", "above COMPILED_LOOP_MAX"])
def test_compiled_steps_in_the_drivers_own_loop(cls, kw, monkeypatch):
    """Where the whole-loop kernels do not apply (lengths, projections, sizes above COMPILED_LOOP_MAX)
    the driver's loop runs the compiled one-step kernels: the same results as the NumPy
    steps, forward and backward, and the loop kernels are not called."""
    if not built() or (cls is GRU and "proj_size" in kw):
        pytest.skip("kernels did not build here, or GRU has no proj_size")
    kw = dict(kw)
    if kw.pop("big", False):
        monkeypatch.setattr(kernels, "COMPILED_LOOP_MAX", 0)
        monkeypatch.setattr(kernels, "TILE_ROW_WEIGHTS", 0)
    lengths = kw.pop("lengths", None)
    m = cls(3, 4, dtype=np.float32, seed=0, **kw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 3)).astype(np.float32)
    results = []
    for on in (True, False):
        calls = []
        with counted(calls, on, on) if on else numpy_only():
            for k in kernels._BUILT.values():      # the whole-loop kernels out
                for name in ("forward", "backward"):
                    (k or {}).pop(name, None)
            m.grads.clear()
            out, state = m.train()(x, None, lengths)
            back = m.backward(np.ones_like(out))
            with rnnlab.no_grad():
                inf = m(x, None, lengths)[0]
        assert bool(calls) == on
        results.append([out, inf, back[0], back[1]] + [m.grads[k].copy() for k in sorted(m.grads)])
    for u, v in zip(*results):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=2e-6)


def test_kernels_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("RNNLAB_KERNELS", "numpy")
    monkeypatch.setitem(kernels._state, "numba", None)
    monkeypatch.setattr(kernels, "_BUILT", {})
    assert not kernels.available()
    assert kernels.kernel_for(rnnlab.cells.by_kind("gru"), np.float32, 2, 6, 2, False) is None


VALUES = st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0, -0.0, 1e-40, 50.0])


@given(st.sampled_from([RNN, GRU, LSTM]), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6),
       st.integers(0, 2 ** 32 - 1), st.lists(st.tuples(st.integers(0, 10 ** 6), VALUES),
                                             max_size=4), st.booleans())
def test_compiled_fuzz_nonfinite_like_numpy_path(cls, T, N, H, seed, specials, in_weights):
    """Random shapes and values with NaN / inf / huge / tiny values in the input or the
    weights: the compiled loop gives the NumPy path's numbers to float32 rounding, NaN and
    inf in the same places, and no warning."""
    rng = np.random.default_rng(seed)
    m = cls(3, H, num_layers=2, dtype=np.float32, seed=seed % 1000).eval()
    x = rng.standard_normal((T, N, 3)).astype(np.float32)
    target = m.weight_hh_l0 if in_weights else x
    for pos, v in specials:
        target.reshape(-1)[pos % target.size] = v
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b, ran = both_paths(m, x)
    assert ran
    for u, v in zip(flat(a), flat(b)):
        np.testing.assert_array_equal(np.isnan(u), np.isnan(v))
        np.testing.assert_array_equal(np.isposinf(u), np.isposinf(v))
        np.testing.assert_array_equal(np.isneginf(u), np.isneginf(v))
        fin = np.isfinite(v)
        np.testing.assert_allclose(u[fin], v[fin], rtol=1e-4, atol=1e-5)


@given(st.sampled_from(["rnn", "rnn_relu"]), st.integers(1, 4), st.integers(1, 40),
       st.booleans(), st.integers(0, 2 ** 32 - 1),
       st.lists(st.tuples(st.integers(0, 10 ** 6), VALUES, st.integers(0, 3)), max_size=6))
def test_compiled_rnn_cells_like_the_numpy_step(kind, N, H, has_h, seed, specials):
    """The RNN cells of layer.step / freeze() at batch 1-4 (kernels.cell_for): h' =
    act((ax + b_ih) + (ah + b_hh)) as the NumPy step computes it, NaN, inf and the sign of
    zero included (tanh(-0.0) = -0.0; relu is NumPy's maximum(a, 0), so -0.0 gives 0.0),
    finite values within a few float32 ulps, no warning; without has_h, ah is not read."""
    fam = rnnlab.cells.by_kind(kind)
    cell = kernels.cell_for(fam, np.float32)
    assert cell is not None
    rng = np.random.default_rng(seed)
    parts = [rng.standard_normal((N, H)).astype(np.float32) * 3 for _ in range(2)] + [
        rng.standard_normal(H).astype(np.float32) for _ in range(2)]
    for pos, v, which in specials:
        parts[which].reshape(-1)[pos % parts[which].size] = v
    ax, ah, b_ih, b_hh = parts
    out = np.empty((N, H), np.float32)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("error")
        cell(ax, ah, has_h, b_ih, b_hh, ax, ax, out, out)
        a = (ax + b_ih) + ((ah + b_hh) if has_h else b_hh)
        want = np.tanh(a) if kind == "rnn" else np.maximum(a, np.float32(0))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_array_equal(np.signbit(out[out == 0]), np.signbit(want[out == 0]))
    fin = np.isfinite(want)
    np.testing.assert_array_equal(out[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    np.testing.assert_allclose(out[fin], want[fin], rtol=4 * EPS, atol=0)


def test_float64_never_compiled():
    for cls in (RNN, GRU, LSTM):
        m = cls(3, 4, dtype=np.float64).eval()
        _, _, ran = both_paths(m, np.ones((4, 2, 3), m.dtype))
        assert not ran


@pytest.mark.parametrize("cls", [GRU, LSTM])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("N", [1, 3, rnnlab.tuning.FEW_ROWS + 2])
def test_layer_step_and_freeze_through_the_compiled_loop(cls, bias, N, monkeypatch):
    """layer.step (live parameters: W_hh read in place, biases as views) and
    layer.freeze().step (a snapshot) take the compiled loop for float32; both equal the
    NumPy path to float32 rounding, and layer.step sees in-place edits at once."""
    if not built():
        pytest.skip("kernels did not build here")
    monkeypatch.setattr(kernels, "THREADED_MIN", 0)              # small layers too
    calls = []
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((5, N, 4)).astype(np.float32)   # frozen, N <= FEW_ROWS: the
    results = []                                            # threaded step, else the loop
    for paths in (counted(calls), numpy_only()):
        with paths:
            m = cls(4, 6, num_layers=2, bias=bias, dtype=np.float32, seed=1).eval()
            frozen = m.freeze(threads=3)
            sa = sb = None
            ys = []
            for x in xs:
                ya, sa = m.step(x, sa)
                yb, sb = frozen.step(x, sb)
                ys += [ya, yb]
            with np.errstate(all="ignore"):
                m.weight_hh_l1[...] *= -2.0                           # in place: step sees it
                if bias:
                    m.bias_hh_l0[...] += 0.5
            ys.append(m.step(xs[0], sa)[0])
            results.append(ys)
    assert calls
    for u, v in zip(*results):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("cls, H", [(GRU, 256), (LSTM, 200)])
def test_threaded_step_equals_torch_float32(cls, H):
    """freeze(threads=3).step (the threaded compiled step, units split over numba's
    threads; 2 take the pair's step, test_pair_step.py; for a
    layer above THREADED_MIN; LSTM from H = 256 takes the BLAS-row step instead) and layer.step
    at batch 1 and 2 against torch, float32; NaN in a weight reaches exactly the units it
    reaches in torch."""
    torch = pytest.importorskip("torch")
    if not built():
        pytest.skip("kernels did not build here")
    torch.manual_seed(0)
    tm = getattr(torch.nn, cls.__name__)(H, H, num_layers=2).eval()
    om = cls(H, H, num_layers=2, dtype=np.float32).eval()
    om.load_state_dict(tm.state_dict())
    assert all(w.rows_step is not None for w in om.freeze(threads=3)._weights)
    assert all(w.rows_step is None for w in om.freeze()._weights)       # opt-in only
    rng = np.random.default_rng(3)
    for N in (1, 2):
        x = rng.standard_normal((4, N, H)).astype(np.float32)
        for nan in (False, True):
            if nan:
                with torch.no_grad():
                    tm.weight_hh_l0[5, 7] = float("nan")
                om.weight_hh_l0[5, 7] = np.nan
            with torch.no_grad():
                want = tm(torch.from_numpy(x))[0].numpy()
            frozen = om.freeze(threads=3)
            for stepper in (om, frozen):
                state = None
                for t in range(4):
                    y, state = stepper.step(x[t], state)
                    np.testing.assert_array_equal(np.isnan(y), np.isnan(want[t]))
                    fin = np.isfinite(want[t])
                    np.testing.assert_allclose(y[fin], want[t][fin], rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            tm.weight_hh_l0[5, 7] = 0.0
        om.weight_hh_l0[5, 7] = 0.0


_FORK_SCRIPT = """
import multiprocessing, numpy as np
""" + FORK_CHILD + """
from rnnlab import GRU

def child(queue):
    m = GRU(256, 256, dtype=np.float32, seed=0).eval().freeze(threads=3)
    queue.put(m.step(np.ones((1, 256), np.float32))[0])

if __name__ == "__main__":
    m = GRU(256, 256, dtype=np.float32, seed=0).eval().freeze(threads=3)
    want = m.step(np.ones((1, 256), np.float32))[0]          # threads started here
    want = m.step(np.ones((1, 256), np.float32))[0]
    got = run_child(child)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    print("ok")
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_threaded_step_survives_fork(tmp_path):
    """GNU OpenMP aborts a forked child that starts threads when its parent used them: a
    child runs the same step in its own thread, with the same numbers. In a fresh
    interpreter (this one may hold other libraries' threads, which fork does not like)."""
    if not built():
        pytest.skip("kernels did not build here")
    script_prints_ok(tmp_path, "fork_step.py", _FORK_SCRIPT)


def test_freeze_threads_argument():
    m = GRU(3, 4)
    for bad, err in ((0, ValueError), (-1, ValueError), (True, TypeError), ("2", TypeError),
                     (2.0, TypeError)):
        with pytest.raises(err, match="threads"):
            m.freeze(threads=bad)
    assert m.freeze(threads=3).threads == 3 and m.freeze().threads == 1
    assert "threads=3" in repr(m.freeze(threads=3))
    x = np.ones((1, 3), np.float32)
    np.testing.assert_allclose(m.freeze(threads=2).step(x)[0], m.freeze().step(x)[0])
