"""rnnlab: PyTorch's recurrent layers in NumPy, with hand-written backpropagation through time.

    from rnnlab import GRU
    gru = GRU(8, 16, num_layers=2, dtype=np.float64)
    output, h_n = gru(x)                  # x: (L, N, 8)
    dx, dh0 = gru.backward(d_output)      # parameter gradients in gru.grads
"""
from . import columns, functional
from ._module import BackwardError, ShapeError, StateDictError, no_grad
from .cells import GRUCell, LSTMCell, RNNCell, backprop_cells, run_cells
from .layers import GRU, LSTM, RNN
from .packed import from_packed

__version__ = "0.1.0"
__all__ = ["RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell", "functional", "columns", "run_cells", "backprop_cells", "from_packed", "no_grad",
           "ShapeError", "BackwardError", "StateDictError"]
