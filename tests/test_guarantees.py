"""Memory, threads, refused calls and error messages (no torch needed
except where a torch PackedSequence is the subject)."""
import pickle
import threading
import tracemalloc
import warnings

import numpy as np
import pytest

import rnnlab
from rnnlab import GRU, LSTM, RNN, GRUCell, LSTMCell


def _kept_after(fn):
    """Bytes still allocated after fn() returns, less what fn returned."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    result = fn()
    arrays = result if isinstance(result, tuple) else (result,)
    returned = sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
    kept = tracemalloc.get_traced_memory()[0] - base - returned
    tracemalloc.stop()
    return kept


# -- inference keeps no record ----------------------------------------------------------
@pytest.mark.parametrize("how", ["eval", "no_grad"])
def test_inference_keeps_no_record(how):
    m = GRU(8, 64, num_layers=3)
    x = np.random.default_rng(0).standard_normal((200, 32, 8)).astype(np.float32)
    gx = 200 * 32 * 3 * 64 * 4                  # one layer's input projection, bytes
    m.train()
    kept_train = _kept_after(lambda: m(x))
    m._reset_records()
    if how == "eval":
        m.eval()
        kept = _kept_after(lambda: m(x))
    else:
        with rnnlab.no_grad():
            kept = _kept_after(lambda: m(x))
    assert m.last_call is None
    assert kept < 2 * gx < kept_train              # one layer's reusable scratch at most
    with pytest.raises(ValueError, match="not recorded"):
        m.backward(np.ones((200, 32, 64), np.float32))


def test_eval_backward_with_enable_grad():
    m = LSTM(3, 4, dtype=np.float64).eval()
    with rnnlab.enable_grad():
        out, _ = m(np.ones((2, 1, 3)))
    dx, dh, dc = m.backward(np.ones_like(out))
    assert dx.shape == (2, 1, 3)


# -- inference loops run at bounded memory ----------------------------------------------
def _cell_loop(cell, steps):
    h = c = np.zeros((1, 64), np.float32)
    x = np.ones((1, 64), np.float32)
    for _ in range(steps):
        h, c = cell(x, (h, c))
    return h


def test_eval_cell_loop_bounded():
    cell = LSTMCell(64, 64).eval()
    _cell_loop(cell, 100)
    kept = _kept_after(lambda: _cell_loop(cell, 10_000))
    assert kept < 1_000_000 and cell.pending == 0


@pytest.mark.slow
def test_eval_cell_loop_bounded_100k():
    cell = LSTMCell(64, 64).eval()
    _cell_loop(cell, 100)
    assert _kept_after(lambda: _cell_loop(cell, 100_000)) < 2_000_000


def test_eval_layer_step_bounded():
    m = GRU(16, 32, num_layers=2).eval()
    x = np.ones((1, 16), np.float32)

    def loop():
        state = None
        for _ in range(3000):
            y, state = m.step(x, state)
        return y
    loop()
    assert _kept_after(loop) < 500_000 and m._records.steps == []
    with pytest.raises(ValueError, match="no step left.*training mode"):
        m.step_backward(np.ones((1, 32), np.float32))


def test_training_cell_loop_records():
    cell = GRUCell(3, 4).train()
    for _ in range(3):
        cell(np.ones(3, np.float32))
    assert cell.pending == 3
    with rnnlab.no_grad():
        cell(np.ones(3, np.float32))
    assert cell.pending == 3


# -- construction peaks at the parameters' size -----------------------------------------
def test_constructor_peak_memory():
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    m = GRU(8, 1024)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    params = sum(p.nbytes for p in m.parameters())
    assert peak <= 1.5 * params and not m.grads          # gradients appear with backward


# -- the scratch pool: one call's working set, given back on request ------------------------
def _measured(fn):
    """(peak bytes above the start, bytes still held at the end) of fn()."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    fn()
    now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base, now - base


def test_inference_with_changing_lengths_holds_one_calls_scratch():
    """no_grad calls whose length changes every time keep about one call's working set,
    not one per length (the issue's case, scaled down: GRU(64, 256, 2 layers) at batch 32
    and lengths 400-439 held 400 MB for ~55 MB of scratch a call)."""
    m = GRU(16, 64, num_layers=2).eval()
    x = np.ones((140, 8, 16), np.float32)
    one_peak, _ = _measured(lambda: m(x[:139]))                # the longest call
    rnnlab.empty_cache()

    def calls():
        for T in range(100, 140):
            m(x[:T])
    _, held = _measured(calls)
    assert held <= 1.2 * one_peak, (held, one_peak)
    assert m._records.pool.bytes <= one_peak


def test_long_training_call_scratch_is_given_back():
    """A training call's record is freed by its backward; the pool then keeps at most that
    call's scratch until a shorter call, ``eval()`` or ``rnnlab.empty_cache()``."""
    m = GRU(8, 16)
    params = sum(p.nbytes for p in m.parameters())
    long = np.ones((5000, 2, 8), np.float32)

    def train_long():
        out, _ = m(long)
        m.backward(np.ones_like(out))
    peak, held = _measured(train_long)
    assert m.last_call is None and held <= 0.75 * peak     # the record is freed ...
    assert m._records.pool.bytes > 0                      # ... into the pool
    m.eval()
    assert m._records.pool.bytes == 0                     # eval() gives it back
    m.train()
    train_long()
    out, _ = m(long[:10])                                 # a short call trims the pool
    m.backward(np.ones_like(out))
    assert m._records.pool.bytes < 10 * 2 * 3 * 16 * 4 * 8
    train_long()
    rnnlab.empty_cache()
    assert m._records.pool.bytes == 0 and sum(g.nbytes for g in m.grads.values()) == params


def test_first_backward_peaks_at_four_times_the_parameters():
    """The measured rule the README states: training peaks at 4x the parameter bytes
    during the first backward (parameters, the forward's copy of the recurrent weights,
    BPTT's transposed copy, gradients) and holds 2x between calls (parameters and
    gradients)."""
    m = GRU(8, 600, dtype=np.float64)
    params = sum(p.nbytes for p in m.parameters())
    x = np.ones((4, 1, 8))

    def step():
        out, _ = m(x)
        m.backward(np.ones_like(out))
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0] - params     # the parameters count too
    tracemalloc.reset_peak()
    step()
    now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert 3.5 * params <= peak - base <= 4.2 * params, (peak - base) / params
    assert now - base <= 2.1 * params, (now - base) / params


def test_heads_and_gradient_sums_are_quiet_and_torchs():
    """Linear on inf input, Embedding's backward with 3e38 gradients and gradient sums
    past float32's range: no warning, and torch's values (inf / NaN where torch's are)."""
    torch = pytest.importorskip("torch")
    lin = rnnlab.Linear(3, 2)
    tl = torch.nn.Linear(3, 2)
    tl.load_state_dict({k: torch.from_numpy(v) for k, v in lin.state_dict().items()})
    x = np.array([[np.inf, 1.0, -1.0], [3e38, 3e38, 3e38]], np.float32)
    emb = rnnlab.Embedding(4, 3)
    te = torch.nn.Embedding(4, 3)
    te.load_state_dict({"weight": torch.from_numpy(emb.weight.copy())})
    idx = np.array([1, 1, 1])
    d = np.full((3, 3), 3e38, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = lin(x)
        lin.backward(np.full((2, 2), 3e38, np.float32), retain_graph=True)
        lin.backward(np.full((2, 2), 3e38, np.float32))           # the sum overflows
        emb(idx)
        emb.backward(d)
    ty = tl(torch.from_numpy(x))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-6)   # inf / NaN at the same places
    ty.backward(torch.full((2, 2), 3e38))
    ty = tl(torch.from_numpy(x))
    ty.backward(torch.full((2, 2), 3e38))
    for name, p in tl.named_parameters():
        np.testing.assert_allclose(lin.grads[name], p.grad.numpy(), rtol=1e-6, err_msg=name)
    te(torch.from_numpy(idx)).backward(torch.from_numpy(d))
    np.testing.assert_allclose(emb.grads["weight"], te.weight.grad.numpy(), rtol=1e-6)


# -- threads --------------------------------------------------------------------------
def test_no_grad_is_per_thread():
    cell = GRUCell(3, 4, dtype=np.float64)
    inside, done = threading.Event(), threading.Event()

    def other():
        with rnnlab.no_grad():
            inside.set()
            done.wait(5)
    t = threading.Thread(target=other)
    t.start()
    inside.wait(5)
    cell(np.ones(3))                                      # this thread still records
    done.set()
    t.join()
    assert cell.pending == 1


def test_two_threads_one_layer():
    m = LSTM(4, 8, num_layers=2, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((20, 3, 4)) for _ in range(2)]
    expected = []
    for x in xs:
        out, _ = m(x)
        expected.append((out.copy(), m.backward(np.ones_like(out))[0]))
    m.zero_grad()
    got, errors = [None, None], []
    barrier = threading.Barrier(2)

    def work(i):
        try:
            for _ in range(20):
                barrier.wait(5)
                out, _ = m(xs[i])
                dx = m.backward(np.ones_like(out))[0]
                got[i] = (out.copy(), dx)
        except Exception as exc:          # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (eo, edx), (go, gdx) in zip(expected, got):
        np.testing.assert_array_equal(eo, go)
        np.testing.assert_array_equal(edx, gdx)


# -- a refused call changes nothing ------------------------------------------------------
def test_refused_calls_change_nothing():
    m = GRU(3, 4, num_layers=2, dtype=np.float64)
    out, h = m(np.ones((2, 1, 3)))
    call = m.last_call
    with pytest.raises(ValueError, match="dropout mask"):
        m(np.ones((2, 1, 3)), dropout_masks=[np.ones((9, 9))])
    assert m.last_call is call
    with pytest.raises(ValueError):
        m.backward(np.ones_like(out), np.ones((3, 3)))    # bad d_h_n after a good d_output
    assert not m.grads
    cell = GRUCell(3, 4, dtype=np.float64)
    hs, _ = rnnlab.run_cells(cell, np.ones((3, 2, 3)))
    with pytest.raises(ValueError):
        rnnlab.backprop_cells(cell, np.ones((3, 2, 5)))
    with pytest.raises(ValueError):
        rnnlab.backprop_cells(cell, np.ones((4, 2, 4)))   # more steps than recorded
    assert cell.pending == 3 and not cell.grads


# -- clear errors, never IndexError/KeyError/AttributeError, never a warning --------------
def test_fixed_configuration():
    m = GRU(3, 4, num_layers=2)
    for name, value in [("num_layers", 3), ("hidden_size", 5), ("bidirectional", True),
                        ("input_size", 1), ("bias", False), ("mode", "LSTM")]:
        with pytest.raises(TypeError, match="fixed"):
            setattr(m, name, value)
    m.dropout = 0.5                                       # torch's test_RNN_change_dropout
    with pytest.raises(ValueError, match="dropout should be"):
        m.dropout = 2
    m.batch_first = True
    with pytest.raises(TypeError, match="batch_first"):
        m.batch_first = "yes"
    with pytest.raises(TypeError, match="fixed"):
        RNN(3, 4).nonlinearity = "relu"


@pytest.mark.parametrize("lengths", [[np.inf, 2], [np.nan, 2], [1.5, 2], [1j, 2], ["a", "b"], [[1], [2]]])
def test_bad_lengths(lengths):
    m = GRU(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises((TypeError, ValueError)):
            m(np.ones((3, 2, 3), np.float32), lengths=lengths)


def test_out_of_range_values_become_inf_without_warning():
    m = GRU(3, 4)
    sd = {k: np.full(v.shape, 1e300) for k, v in m.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.load_state_dict(sd)
        assert np.isinf(m.weight_ih_l0).all()
        out, _ = m(np.ones((2, 1, 3), np.float32))
        with pytest.raises(TypeError, match="Mismatch in dtype: d_output has the type float64"):
            m.backward(np.full(out.shape, 1e300))         # an array of another dtype: torch's
        m.backward(np.full(out.shape, 1e300).tolist())    # a list is read in the layer's dtype


def test_torch_unusual_dtypes():
    torch = pytest.importorskip("torch")
    m = GRU(3, 4)
    with pytest.raises(TypeError, match="convert"):
        m(torch.ones(2, 1, 3, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="complex"):
        m(torch.ones(2, 1, 3, dtype=torch.complex64))
    with pytest.raises(TypeError, match="float32"):
        m(torch.ones(2, 1, 3, dtype=torch.int64))
    out, _ = m(torch.ones(2, 1, 3))
    assert out.shape == (2, 1, 4)


def test_columns_and_packed_errors():
    from rnnlab import columns
    with pytest.raises(ValueError):
        columns.from_columns(np.ones((3, 2)), np.ones((2, 2)), np.ones((3, 1)))
    with pytest.raises(ValueError):
        columns.grads_to_columns({})
    with pytest.raises(ValueError):
        columns.sequence_from_columns(np.ones((3, 2)))
    with pytest.raises(TypeError):
        rnnlab.from_packed(np.ones(3))
    with pytest.raises(ValueError):
        rnnlab.from_packed(rnnlab.PackedSequence(np.ones((3, 2)), np.array([1, 2]), None, None))
    with pytest.raises(ValueError):
        columns.gradient_norms(GRU(3, 4))


# -- load_state_dict(path) -------------------------------------------------------------
@pytest.mark.parametrize("bad", ["weights.pt", None, 3, [("weight_ih_l0", 1)]])
def test_load_state_dict_wrong_kind(bad):
    with pytest.raises(TypeError, match="mapping"):
        GRU(3, 4).load_state_dict(bad)


# -- the dtype hint is valid NumPy -----------------------------------------------------------
def test_dtype_hint_is_valid_numpy():
    m = GRU(3, 4)
    x = np.ones((2, 1, 3))
    with pytest.raises(ValueError) as exc:
        m(x)
    msg = str(exc.value)
    assert "input.astype(np.float32)" in msg and "dtype=np.float64" in msg
    assert m(x.astype(np.float32))[0].dtype == np.float32          # either hint works
    assert GRU(3, 4, dtype=np.float64)(x)[0].dtype == np.float64
    with pytest.raises(TypeError) as exc:                 # also a TypeError
        m(np.ones((2, 1, 3), np.int64))
    assert "astype(np.float32)" in str(exc.value) and ".to(" not in str(exc.value)


# -- PackedSequence in, PackedSequence out ----------------------------------------------------
@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_packed_input_like_torch(cls):
    torch = pytest.importorskip("torch")
    pack = torch.nn.utils.rnn
    torch.manual_seed(0)
    tm = getattr(torch.nn, cls.__name__)(3, 4, num_layers=2, bidirectional=True).double()
    om = cls(3, 4, num_layers=2, bidirectional=True, dtype=np.float64)
    om.load_state_dict(tm.state_dict())
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    packed = pack.pack_padded_sequence(x, torch.tensor([2, 5, 3]), enforce_sorted=False)
    packed.data.requires_grad_(True)
    tout, tstate = tm(packed)
    out, state = om(packed)
    assert isinstance(out, pack.PackedSequence)
    np.testing.assert_allclose(out.data.numpy(), tout.data.detach().numpy(), atol=1e-12)
    assert torch.equal(out.batch_sizes, tout.batch_sizes)
    assert torch.equal(out.unsorted_indices, tout.unsorted_indices)
    th = tstate[0] if cls is LSTM else tstate
    np.testing.assert_allclose(state[0] if cls is LSTM else state, th.detach().numpy(), atol=1e-12)
    g = torch.randn_like(tout.data)
    tout.data.backward(g)
    d_out = pack.PackedSequence(g, tout.batch_sizes, tout.sorted_indices, tout.unsorted_indices)
    dx = om.backward(d_out)[0]
    assert isinstance(dx, pack.PackedSequence)
    np.testing.assert_allclose(dx.data.numpy(), packed.data.grad.numpy(), atol=1e-12)


def test_to_packed_round_trip():
    x = np.arange(30.0).reshape(5, 3, 2)
    p = rnnlab.to_packed(x, [2, 5, 3])
    back, lengths = rnnlab.from_packed(p)
    assert lengths.tolist() == [2, 5, 3]
    for i, n in enumerate([2, 5, 3]):
        np.testing.assert_array_equal(back[:n, i], x[:n, i])
        assert not back[n:, i].any()
    torch = pytest.importorskip("torch")
    tp = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.tensor([2, 5, 3]),
                                                 enforce_sorted=False)
    np.testing.assert_array_equal(p.data, tp.data.numpy())
    np.testing.assert_array_equal(p.batch_sizes, tp.batch_sizes.numpy())


def test_pickle_keeps_dropout_and_fresh_records():
    m = GRU(3, 4, num_layers=2, dropout=0.2, dtype=np.float64)
    m(np.ones((2, 1, 3)))
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.last_call is None and m2.dropout == 0.2
    out, _ = m2(np.ones((2, 1, 3)))
    m2.backward(np.ones_like(out))
