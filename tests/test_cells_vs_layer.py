"""A loop of cells equals the layer when weights are shared, forward and backward  (docs/questions.md, question 1)."""
import numpy as np
import pytest

from rnnlab import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from rnnlab import backprop_cells, run_cells

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
    hs, final = run_cells(cell, x, (h0, c0) if lstm else h0)
    h = final[0] if lstm else final
    np.testing.assert_allclose(hs, out, rtol=0, atol=1e-13)
    np.testing.assert_allclose(h, (state[0] if lstm else state)[0], rtol=0, atol=1e-13)

    grads = layer.backward(dy)
    dxs, d_state = backprop_cells(cell, dy)
    dh, dc = d_state if lstm else (d_state, None)
    np.testing.assert_allclose(dxs, grads[0], rtol=0, atol=1e-13)
    np.testing.assert_allclose(dh, grads[1][0], rtol=0, atol=1e-13)
    if lstm:
        np.testing.assert_allclose(dc, grads[2][0], rtol=0, atol=1e-13)
    for name, g in cell.grads.items():
        np.testing.assert_allclose(g, layer.grads[name + "_l0"], rtol=0, atol=1e-12)


def test_independent_init_differs():
    """Question 1, first half: without shared weights the loop and the layer disagree."""
    x = np.random.default_rng(0).standard_normal((3, 1, 2))
    layer, cell = RNN(2, 4, dtype=np.float64, seed=1), RNNCell(2, 4, dtype=np.float64, seed=2)
    out, _ = layer(x)
    hs, _ = run_cells(cell, x)
    assert np.abs(out - hs).max() > 1e-3
