"""Threads, refused calls and error messages (no torch needed
except where a torch PackedSequence is the subject)."""
import pickle
import threading
import warnings

import numpy as np
import pytest

import rnnlab
from rnnlab import GRU, LSTM, RNN, GRUCell


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
