"""A loop of cells equals the layer when weights are shared, forward and backward (S0)."""
import numpy as np
import pytest

from rnnlab import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

PAIRS = [(RNN, RNNCell, {}), (RNN, RNNCell, {"nonlinearity": "relu"}), (GRU, GRUCell, {}),
         (LSTM, LSTMCell, {})]


@pytest.mark.parametrize("layer_cls, cell_cls, kw", PAIRS)
@pytest.mark.parametrize("direction", ["layer->cell", "cell->layer"])
def test_cell_loop_equals_layer(layer_cls, cell_cls, kw, direction):
    rng = np.random.default_rng(0)
    layer = layer_cls(3, 5, **kw, dtype=np.float64, seed=1)
    cell = cell_cls(3, 5, **kw, dtype=np.float64, seed=2)
    if direction == "layer->cell":
        cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    else:
        layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    lstm = layer_cls is LSTM
    T, N = 6, 4
    x = rng.standard_normal((T, N, 3))
    h0, c0 = rng.standard_normal((N, 5)), rng.standard_normal((N, 5))
    dy = rng.standard_normal((T, N, 5))
    out, state = layer(x, (h0[None], c0[None]) if lstm else h0[None])
    h, c, hs = h0, c0, []
    for t in range(T):
        if lstm:
            h, c = cell(x[t], (h, c))
        else:
            h = cell(x[t], h)
        hs.append(h)
    np.testing.assert_allclose(np.stack(hs), out, rtol=0, atol=1e-13)
    np.testing.assert_allclose(h, (state[0] if lstm else state)[0], rtol=0, atol=1e-13)

    grads = layer.backward(dy)
    dh, dc, dxs = np.zeros((N, 5)), np.zeros((N, 5)), []
    for t in range(T - 1, -1, -1):
        if lstm:
            dx, dh, dc = cell.backward(dh + dy[t], dc)
        else:
            dx, dh = cell.backward(dh + dy[t])
        dxs.append(dx)
    np.testing.assert_allclose(np.stack(dxs[::-1]), grads[0], rtol=0, atol=1e-13)
    np.testing.assert_allclose(dh, grads[1][0], rtol=0, atol=1e-13)
    if lstm:
        np.testing.assert_allclose(dc, grads[2][0], rtol=0, atol=1e-13)
    for name, g in cell.grads.items():
        np.testing.assert_allclose(g, layer.grads[name + "_l0"], rtol=0, atol=1e-12)


def test_independent_init_differs():
    """S0's first half: without shared weights the loop and the layer disagree."""
    x = np.random.default_rng(0).standard_normal((3, 1, 2))
    layer, cell = RNN(2, 4, dtype=np.float64, seed=1), RNNCell(2, 4, dtype=np.float64, seed=2)
    out, _ = layer(x)
    h = None
    for t in range(3):
        h = cell(x[t], h)
    assert np.abs(out[-1] - h).max() > 1e-3
