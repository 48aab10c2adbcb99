"""Variable lengths, one-step decoding, streaming."""
import importlib.util
import itertools
import pathlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rnnlab
from rnnlab import GRU, LSTM, RNN
from rnnlab.tools.conformance import TOL, Case, run_layer_case

LENGTHS = [2, 7, 1, 5, 1, 5]          # [7, 5, 5, 2, 1, 1] shuffled


def _packed_cases():
    cases = []
    for kind, L, bi, bf in itertools.product(["rnn", "rnn_relu", "gru", "lstm"], (1, 2, 3),
                                             (False, True), (False, True)):
        for proj in ((0, 2) if kind == "lstm" else (0,)):
            cases.append(Case(kind=kind, input_size=3, hidden_size=4, num_layers=L,
                              bidirectional=bi, batch_first=bf, proj_size=proj, seq_len=7,
                              batch=6, lengths=LENGTHS, seed=L * 10 + bi * 2 + bf))
    return cases


PACKED = _packed_cases()


@pytest.mark.parametrize("case", PACKED, ids=[c.label() for c in PACKED])
def test_lengths_equal_torch_packed(case):
    pytest.importorskip("torch")
    errs = run_layer_case(case)
    bad = {k: v for k, v in errs.items() if not v <= TOL["float64"]}
    assert not bad, bad


def test_padded_positions_are_zero_and_get_zero_gradient():
    m = LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((7, 6, 3))
    out, (h, c) = m(x, lengths=LENGTHS)
    for i, n in enumerate(LENGTHS):
        assert not out[n:, i].any()
        assert np.array_equal(h[-2, i], out[n - 1, i, :4])       # forward: own last step
        assert np.array_equal(h[-1, i], out[0, i, 4:])           # reverse: ends at step 0
    dx, _, _ = m.backward(np.ones_like(out))
    for i, n in enumerate(LENGTHS):
        assert not dx[n:, i].any() and dx[:n, i].any()


def test_lengths_equal_separate_runs():
    """Each sequence alone (cut to its length) gives the same numbers as the padded batch."""
    m = GRU(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=1)
    x = np.random.default_rng(1).standard_normal((7, 6, 3))
    h0 = np.random.default_rng(2).standard_normal((4, 6, 4))
    out, h = m(x, h0, lengths=LENGTHS)
    for i, n in enumerate(LENGTHS):
        o_i, h_i = m(x[:n, i], h0[:, i])
        np.testing.assert_allclose(out[:n, i], o_i, atol=1e-14, rtol=0)
        np.testing.assert_allclose(h[:, i], h_i, atol=1e-14, rtol=0)


def test_from_packed_matches_torch():
    torch = pytest.importorskip("torch")
    pack = torch.nn.utils.rnn
    x = torch.randn(7, 6, 3, dtype=torch.float64)
    for enforce in (False, True):
        lens = sorted(LENGTHS, reverse=True) if enforce else LENGTHS
        p = pack.pack_padded_sequence(x, torch.tensor(lens), enforce_sorted=enforce)
        for bf in (False, True):
            padded, lengths = rnnlab.from_packed(p, batch_first=bf)
            tpad, tlen = pack.pad_packed_sequence(p, batch_first=bf)
            assert np.array_equal(padded, tpad.numpy())
            assert lengths.tolist() == tlen.tolist()
    # a torch pipeline's packed batch straight into an rnnlab layer
    tm = torch.nn.GRU(3, 4, num_layers=2).double()
    om = GRU(3, 4, num_layers=2, dtype=np.float64)
    om.load_state_dict(tm.state_dict())
    p = pack.pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
    tout, th = tm(p)
    padded, lengths = rnnlab.from_packed(p)
    out, h = om(padded, lengths=lengths)
    assert np.abs(out - pack.pad_packed_sequence(tout)[0].detach().numpy()).max() < 1e-12
    assert np.abs(h - th.detach().numpy()).max() < 1e-12


def test_from_packed_errors():
    class Fake:
        data = np.zeros((5, 2))
        batch_sizes = np.array([2, 3])
    with pytest.raises(ValueError, match="non-increasing"):
        rnnlab.from_packed(Fake())
    with pytest.raises(TypeError, match="PackedSequence"):
        rnnlab.from_packed(np.zeros(3))


@pytest.mark.parametrize("cls", [RNN, GRU, LSTM])
@pytest.mark.parametrize("training", [False, True])
def test_step_equals_layer(cls, training):
    """Chained steps == one call over the sequence, forward and backward, dropout included."""
    rng = np.random.default_rng(0)
    with rnnlab.enable_grad():                 # eval mode records only when asked
        m = cls(3, 5, num_layers=3, dropout=0.4, dtype=np.float64, seed=0).train(training)
        T, N = 6, 2
        x = rng.standard_normal((T, N, 3))
        lstm = cls is LSTM
        h0 = rng.standard_normal((3, N, 5))
        state = (h0, h0 * 0.5) if lstm else h0
        ys, masks = [], []
        for t in range(T):
            y, state = m.step(x[t], state)
            ys.append(y)
            masks.append(m.last_dropout_masks)
        seq_masks = None
        if training:
            seq_masks = [np.stack([mk[k] for mk in masks]) for k in range(2)]
        out, final = m(x, (h0, h0 * 0.5) if lstm else h0, dropout_masks=seq_masks)
        np.testing.assert_allclose(np.stack(ys), out, atol=1e-14, rtol=0)
        for a, b in zip(state if lstm else [state], final if lstm else [final]):
            np.testing.assert_allclose(a, b, atol=1e-14, rtol=0)

        dy = rng.standard_normal(out.shape)
        m.zero_grad()
        whole = m.backward(dy)
        whole_grads = {k: v.copy() for k, v in m.grads.items()}
        m.zero_grad()
        d_state, dxs = None, []
        for t in range(T - 1, -1, -1):
            dx, d_state = m.step_backward(dy[t], d_state)
            dxs.append(dx)
        np.testing.assert_allclose(np.stack(dxs[::-1]), whole[0], atol=1e-13, rtol=0)
        d_h0 = d_state[0] if lstm else d_state
        np.testing.assert_allclose(d_h0, whole[1], atol=1e-13, rtol=0)
        if lstm:
            np.testing.assert_allclose(d_state[1], whole[2], atol=1e-13, rtol=0)
        for k, v in whole_grads.items():
            np.testing.assert_allclose(m.grads[k], v, atol=1e-12, rtol=0, err_msg=k)


def test_step_unbatched_and_errors():
    m = GRU(3, 4, num_layers=2, dtype=np.float64)
    y, h = m.step(np.ones(3))
    assert y.shape == (4,) and h.shape == (2, 4)
    y, h = m.step(np.ones(3), h)
    dx, dh = m.step_backward(np.ones(4))
    assert dx.shape == (3,) and dh.shape == (2, 4)
    m.step_backward()
    with pytest.raises(RuntimeError, match="no step left"):
        m.step_backward()
    with pytest.raises(ValueError, match="Expected input to be 1D or 2D"):
        m.step(np.ones((1, 2, 3)))
    with pytest.raises(ValueError, match="hx should also be 3-D"):
        m.step(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="needs a forward layer"):
        GRU(3, 4, bidirectional=True).step(np.ones(3, np.float32))


@pytest.mark.parametrize("cls", [RNN, GRU, LSTM])
def test_chunks_equal_whole_and_chain_backward(cls):
    """Streaming: h_n of a chunk as h0 of the next == one call; backward chained through
    the kept call records == backward of the whole; cutting the chain drops dh."""
    rng = np.random.default_rng(3)
    m = cls(3, 4, num_layers=2, dtype=np.float64, seed=3)
    lstm = cls is LSTM
    x = rng.standard_normal((12, 2, 3))
    dy = rng.standard_normal((12, 2, 4))
    out, final = m(x)
    whole = m.backward(dy)
    whole_grads = {k: v.copy() for k, v in m.grads.items()}
    m.zero_grad()
    state, outs, calls = None, [], []
    for lo in (0, 5, 9):
        hi = {0: 5, 5: 9, 9: 12}[lo]
        o, state = m(x[lo:hi], state)
        outs.append(o)
        calls.append((lo, hi, m.last_call))
    np.testing.assert_allclose(np.concatenate(outs), out, atol=1e-14, rtol=0)
    d_state = (None, None) if lstm else (None,)
    dxs = []
    for lo, hi, call in reversed(calls):
        g = m.backward(dy[lo:hi], *d_state, call=call)
        dxs.append(g[0])
        d_state = g[1:]
    np.testing.assert_allclose(np.concatenate(dxs[::-1]), whole[0], atol=1e-13, rtol=0)
    for k, v in whole_grads.items():
        np.testing.assert_allclose(m.grads[k], v, atol=1e-12, rtol=0, err_msg=k)
    with pytest.raises(ValueError, match="last_call"):
        m.backward(dy, call="nope")


def test_s3_example():
    path = pathlib.Path(__file__).parent.parent / "examples" / "stacked_grucells.py"
    spec = importlib.util.spec_from_file_location("s3", path)
    s3 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(s3)
    res = s3.check()
    assert res["eval"] < 1e-14 and res["train, shared masks"] < 1e-14
    assert res["train, independent masks"] > 1e-3


def test_no_grad_keeps_no_records():
    cell = rnnlab.GRUCell(2, 3, dtype=np.float64)
    layer = GRU(2, 3, num_layers=2, dtype=np.float64)
    with rnnlab.no_grad():
        h, s = None, None
        for _ in range(50):
            h = cell(np.ones(2), h)
            _, s = layer.step(np.ones(2), s)
    assert cell.pending == 0 and layer._records.steps == []
    cell(np.ones(2))
    assert cell.pending == 1


@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_reused_buffers_never_touch_kept_results(cls):
    """Internal buffers are reused between calls; outputs and kept call records are not."""
    rng = np.random.default_rng(5)
    m = cls(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=5)
    x1, x2 = rng.standard_normal((6, 2, 3)), rng.standard_normal((6, 2, 3))
    dy = rng.standard_normal((6, 2, 8))
    o1, _ = m(x1)
    o1_copy = o1.copy()
    first = m.last_call
    ref = m.backward(dy, retain_graph=True)[0].copy()     # kept for a second backward
    for _ in range(3):                                    # buffers cycle through the pool
        o2, _ = m(x2)
        m.backward(dy)
    assert np.array_equal(o1, o1_copy)
    np.testing.assert_array_equal(m.backward(dy, call=first)[0], ref)


def test_buffer_pool_stays_bounded_with_changing_lengths():
    """The pool keeps at most the bytes of the last call it served: a long call's scratch
    goes with the next shorter one."""
    m = GRU(3, 4, num_layers=2, dtype=np.float64)
    pool = m._records.pool
    weights = 3 * sum(p.nbytes for p in m.parameters())    # copies, W_hh^T, dW temporaries
    for T in list(range(1, 60)) + [500, 3]:
        out, _ = m(np.ones((T, 2, 3)))
        m.backward(np.ones_like(out))
        lease_bytes = T * 2 * 4 * 3 * 8 * 8 + weights           # generous: T N G*H ... 8 B
        assert pool.bytes <= lease_bytes, (T, pool.bytes)
    assert pool.bytes < 500 * 2 * 12 * 8                          # the T=500 scratch is gone


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls, kw", [(RNN, {}), (RNN, {"nonlinearity": "relu"}), (GRU, {}),
                                     (LSTM, {}), (LSTM, {"proj_size": 2}),
                                     (GRU, {"bias": False})])
def test_lean_inference_step_equals_general_path(cls, kw, dtype):
    """layer.step without recording takes a lean path; equal to the general one to
    rounding (BLAS may sum in another order for W_hh^T as a view than as a copy)."""
    m = cls(3, 4, num_layers=3, dtype=dtype, seed=0, **kw).eval()
    rng = np.random.default_rng(0)
    for batched in (True, False):
        lead = (2,) if batched else ()
        state_a = state_b = None
        for t in range(4):
            x = rng.standard_normal(lead + (3,)).astype(dtype)
            ya, state_a = m.step(x, state_a)                  # lean
            with rnnlab.enable_grad():
                yb, state_b = m.step(x, state_b)              # general, recorded
            tol = 1e-13 if dtype == np.float64 else 1e-6
            np.testing.assert_allclose(ya, yb, rtol=0, atol=tol)
            for a, b in zip(state_a if cls is LSTM else [state_a],
                            state_b if cls is LSTM else [state_b]):
                np.testing.assert_allclose(a, b, rtol=0, atol=tol)
            state_b = state_a                                 # compare one step at a time
        assert not ya.flags.writeable


@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from([np.float32, np.float64]),
       st.sampled_from(["C", "F", "view"]), st.booleans())
def test_transposed_copy_is_exact(m, k, dtype, layout, copy):
    """linalg.transposed (a blocked copy of w.T for large w): the same values as w.T, its
    own C-contiguous array (copy=False may return w.T itself when that is C-contiguous)."""
    from rnnlab.sequence.linalg import transposed
    w = np.arange(m * k * 2, dtype=dtype).reshape(m, 2 * k)[:, ::2] if layout == "view" else \
        np.asarray(np.arange(m * k, dtype=dtype).reshape(m, k), order=layout)
    t = transposed(w, copy=copy)
    assert t.flags.c_contiguous and t.shape == (w.shape[1], w.shape[0]) and t.dtype == dtype
    np.testing.assert_array_equal(t, w.T)
    assert copy is False and w.T.flags.c_contiguous or not np.shares_memory(t, w)
    big = np.ones((200, 400), dtype)                       # the blocked branch (>= 2^16)
    big[123, 321] = np.nan
    tb = transposed(big)
    assert np.isnan(tb[321, 123]) and np.isnan(tb).sum() == 1
