"""API, shapes and edge cases (no torch needed)."""
import warnings

import numpy as np
import pytest

from rnnlab import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell


def f64(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# -- parameters -------------------------------------------------------------------------
def test_parameter_names_shapes_and_order():
    m = LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    names = [n for n, _ in m.named_parameters()]
    assert names[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0"]
    assert names[5] == "weight_ih_l0_reverse" and names[10] == "weight_ih_l1"
    assert m.weight_ih_l0.shape == (20, 3)
    assert m.weight_hh_l0.shape == (20, 2)
    assert m.weight_ih_l1.shape == (20, 4)          # D * H_out
    assert m.weight_hr_l1_reverse.shape == (2, 5)
    g = GRU(4, 6, bias=False)
    assert [n for n, _ in g.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    assert GRUCell(2, 3).weight_hh.shape == (9, 3)


def test_init_range_and_seed():
    a, b = GRU(3, 16, seed=1), GRU(3, 16, seed=1)
    assert all(np.array_equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    k = 1 / np.sqrt(16)
    for p in a.parameters():
        assert p.dtype == np.float32
        assert np.abs(p).max() <= k and np.abs(p).max() > 0.5 * k
    assert not np.array_equal(GRU(3, 16, seed=2).weight_ih_l0, a.weight_ih_l0)


def test_load_state_dict_is_atomic_and_lists_every_problem():
    m = GRU(3, 4, num_layers=2, dtype=np.float64)
    before = m.state_dict()
    sd = m.state_dict()
    sd["weight_ih_l0"] = np.ones((12, 3)) * 7            # valid, must NOT be applied
    sd["weight_hh_l1"] = np.ones((5, 5))                 # bad shape
    del sd["bias_ih_l1"]                                 # missing
    sd["bogus"] = np.zeros(3)                            # unexpected
    with pytest.raises(ValueError) as exc:
        m.load_state_dict(sd)
    msg = str(exc.value)
    assert "bias_ih_l1" in msg and "bogus" in msg and "weight_hh_l1" in msg and "(5, 5)" in msg
    for name, p in m.named_parameters():
        assert np.array_equal(p, before[name]), name
    with pytest.raises(RuntimeError):                    # torch users catch RuntimeError
        m.load_state_dict(sd)


def test_load_state_dict_non_strict_and_live_references():
    m = RNN(2, 3, dtype=np.float64)
    ref = m.weight_ih_l0
    res = m.load_state_dict({"weight_ih_l0": np.full((3, 2), 0.5), "extra": 1}, strict=False)
    assert res.missing_keys == ["weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert res.unexpected_keys == ["extra"]
    assert np.all(ref == 0.5)                             # loaded in place


def test_grads_accumulate_and_zero_grad():
    m = GRU(2, 3, dtype=np.float64, seed=0)
    x = f64(4, 1, 2)
    out, h = m(x)
    m.backward(np.ones_like(out), retain_graph=True)      # torch's: keep the saved values
    g1 = {k: v.copy() for k, v in m.grads.items()}
    m.backward(np.ones_like(out), retain_graph=True)      # backward again: adds
    for k in g1:
        np.testing.assert_allclose(m.grads[k], 2 * g1[k])
    kept = dict(m.grads)
    m.zero_grad(set_to_none=False)                        # zeroed in place, same arrays
    assert set(m.grads) == set(g1) and all(m.grads[k] is kept[k] for k in g1)
    assert all(not v.any() for v in m.grads.values())
    m.backward(np.ones_like(out))                         # adds into the zeroed arrays
    for k in g1:
        np.testing.assert_allclose(m.grads[k], g1[k])
    with pytest.raises(ValueError, match="backward through the graph a second time"):
        m.backward(np.ones_like(out))                     # freed by the last backward
    m.zero_grad()                                         # torch's default: set to None
    assert m.grads == {}


def test_double_float_and_dtype_mismatch():
    m = GRU(2, 3)
    with pytest.raises(ValueError, match="float32.*float64"):
        m(np.zeros((2, 1, 2)))
    m.double()
    out, _ = m(np.zeros((2, 1, 2)))
    m.backward(np.ones_like(out))
    assert out.dtype == np.float64 and m.grads["weight_ih_l0"].dtype == np.float64
    with pytest.raises(TypeError):
        m(np.array([["a", "b"]]))


# -- shapes -----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [RNN, GRU, LSTM])
def test_shapes_batch_first_unbatched_bidirectional(cls):
    m = cls(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=np.float64)
    out, state = m(f64(5, 7, 3))                          # (N, L, H_in)
    h = state[0] if cls is LSTM else state
    assert out.shape == (5, 7, 8) and h.shape == (4, 5, 4)
    dx, *rest = m.backward(np.ones_like(out))
    assert dx.shape == (5, 7, 3) and rest[0].shape == (4, 5, 4)
    out, state = m(f64(7, 3))                             # unbatched: batch_first ignored
    h = state[0] if cls is LSTM else state
    assert out.shape == (7, 8) and h.shape == (4, 4)
    dx, *rest = m.backward(np.ones_like(out), np.ones_like(h))
    assert dx.shape == (7, 3) and rest[0].shape == (4, 4)


def test_output_hn_map():
    """Question 3: output[-1, :, :H] == h_n[-1, 0] and output[0, :, H:] == h_n[-1, 1]."""
    m = GRU(3, 4, num_layers=3, bidirectional=True, dtype=np.float64, seed=3)
    out, h_n = m(f64(6, 2, 3))
    hv = h_n.reshape(3, 2, 2, 4)
    np.testing.assert_array_equal(out[-1, :, :4], hv[-1, 0])
    np.testing.assert_array_equal(out[0, :, 4:], hv[-1, 1])


def test_lstm_proj_shapes():
    m = LSTM(3, 6, proj_size=2, num_layers=2)
    out, (h, c) = m(np.zeros((4, 5, 3), np.float32))
    assert out.shape == (4, 5, 2) and h.shape == (2, 5, 2) and c.shape == (2, 5, 6)


def test_zero_h0_equals_none():
    m = LSTM(3, 4, num_layers=2, dtype=np.float64)
    x = f64(5, 2, 3)
    a, (ha, ca) = m(x)
    b, (hb, cb) = m(x, (np.zeros((2, 2, 4)), np.zeros((2, 2, 4))))
    assert np.array_equal(a, b) and np.array_equal(ha, hb) and np.array_equal(ca, cb)


# -- numerics ------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [RNN, GRU, LSTM])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_inputs_no_warnings(cls, dtype):
    m = cls(3, 8, num_layers=2, bidirectional=True, dtype=dtype)
    x = (f64(5, 2, 3) * 1e4).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            out, state = m(x)
            m.backward(np.ones_like(out))
    assert np.isfinite(out).all()
    relu = RNN(3, 8, nonlinearity="relu", num_layers=3, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, _ = relu((f64(50, 2, 3) * 1e30).astype(dtype))
        relu.backward(np.ones_like(out))


@pytest.mark.parametrize("cls", [RNN, GRU, LSTM])
def test_nan_propagates(cls):
    m = cls(2, 3, dtype=np.float64)
    x = f64(4, 2, 2)
    x[1, 0, 0] = np.nan
    out, _ = m(x)
    assert np.isnan(out[1:, 0]).all()                      # from the NaN step on, sequence 0
    assert np.isfinite(out[:, 1]).all() and np.isfinite(out[0]).all()


def test_dropout_all_ones_weights():
    """Port of torch's test_RNN_dropout: all-ones weights, zero biases, relu."""
    for p in (0.0, 0.276, 1.0):
        m = RNN(10, 1000, num_layers=2, nonlinearity="relu", dropout=p, dtype=np.float64, seed=0)
        for name, w in m.named_parameters():
            w[...] = 1.0 if "weight" in name else 0.0
        x = np.ones((1, 1, 10))
        for training in (True, False):
            m.train(training)
            out, h = m(x)
            assert out.shape == (1, 1, 1000)
            first = out[0, 0, 0]
            assert np.all(out == first)                    # every unit sums the same mask
            if p == 0 or not training:
                assert first == 10 * 1000
            elif p == 1:
                assert first == 0 and not h[1].any()
            else:                                          # 10 / (1-p) times the kept count
                kept = first * (1 - p) / 10
                assert abs(kept - round(kept)) < 1e-6 and 0 < kept < 1000
                assert abs(kept - 1000 * (1 - p)) < 100
            assert np.all(h[0] == 10)                      # layer 0 state is before dropout


def test_change_dropout_and_eval():
    """test_RNN_change_dropout: changing .dropout and train/eval between calls is honoured."""
    m = GRU(4, 50, num_layers=2, dtype=np.float64, seed=0)
    x = f64(3, 2, 4)
    m.dropout = 0.0
    a, _ = m(x)
    m.dropout = 0.9
    b, _ = m(x)
    assert not np.allclose(a, b)
    m.eval()
    c, _ = m(x)
    np.testing.assert_array_equal(a, c)
    m.dropout = 1.0
    m.train()
    d, _ = m(x)
    # with p = 1 layer 1 sees zeros: equal to a 1-layer GRU on zero input with l1's weights
    l1 = GRU(50, 50, dtype=np.float64)
    l1.load_state_dict({k.replace("l1", "l0"): v for k, v in m.state_dict().items() if "l1" in k})
    e, _ = l1(np.zeros((3, 2, 50)))
    np.testing.assert_allclose(d, e, atol=1e-14)


def test_lstm_cell_backward_either_gradient_none():
    c = LSTMCell(3, 4, dtype=np.float64, seed=0)
    x = f64(2, 3)
    c(x)
    c(x)
    dx, dh0, dc0 = c.backward(None, np.ones((2, 4)))
    assert dx.shape == (2, 3) and dc0.any()
    dx, dh0, dc0 = c.backward(np.ones((2, 4)))
    assert dh0.any()
    with pytest.raises(ValueError, match="dh1 must have the shape"):
        c(x)
        c.backward(np.ones((3, 4)))


def test_assigning_a_parameter_attribute_updates_the_live_parameter():
    m = GRU(2, 3, dtype=np.float64)
    m.weight_hh_l0 = np.zeros((9, 3))
    assert not m.state_dict()["weight_hh_l0"].any()
    with pytest.raises(ValueError, match="expected shape \\(9, 3\\)"):
        m.weight_hh_l0 = np.zeros((3, 3))


def test_pickle_and_deepcopy_keep_parameters_not_call_records():
    import copy
    import pickle
    m = LSTM(3, 4, num_layers=2, dtype=np.float64, seed=0)
    x = f64(5, 2, 3)
    out, _ = m(x)
    blob = pickle.dumps(m)
    assert len(blob) < 8000                              # parameters only, no caches
    for clone in (pickle.loads(blob), copy.deepcopy(m)):
        o, _ = clone(x)
        np.testing.assert_array_equal(o, out)
        clone.backward(np.ones_like(o))
    cell = GRUCell(2, 3)
    cell(np.ones(2, np.float32))
    assert pickle.loads(pickle.dumps(cell)).pending == 0


@pytest.mark.parametrize("make", [
    lambda: RNN(3, 4, 2, nonlinearity="relu", bias=False, batch_first=True, dropout=0.1),
    lambda: GRU(3, 4, bidirectional=True, dtype=np.float64),
    lambda: LSTM(3, 4, 2, proj_size=2, bidirectional=True),
    lambda: RNNCell(3, 4, nonlinearity="relu"), lambda: GRUCell(3, 4, bias=False),
    lambda: LSTMCell(3, 4)])
def test_config_rebuilds_and_weights_are_live(make):
    import json
    import rnnlab
    m = make()
    cfg = json.loads(json.dumps(m.config()))
    m2 = type(m)(**cfg)
    assert repr(m2) == repr(m) and m2.dtype == m.dtype
    assert [n for n, _ in m2.named_parameters()] == [n for n, _ in m.named_parameters()]
    w = m.weights()
    if isinstance(m, rnnlab.RNNBase):
        last = w[-1][-1]
        assert last.w_hh is m.named_parameters().__next__()[1] or last.w_hh is getattr(
            m, m.names()[-1][-1].w_hh)
    else:
        assert w.w_ih is m.weight_ih
