"""rnnlab: PyTorch's recurrent layers in NumPy, with hand-written backpropagation through time.

    from rnnlab import GRU
    gru = GRU(8, 16, num_layers=2, dtype=np.float64)
    output, h_n = gru(x)                  # x: (L, N, 8)
    dx, dh0 = gru.backward(d_output)      # parameter gradients in gru.grads

The house, bottom to top (imports only go downwards):
    errors, checks     exceptions and argument checks
    cells/             one module per cell family: equations, step, back (Family records)
    sequence/          the one sequence driver (time, layers, directions, dropout, lengths)
    nn/                torch-like modules: layers, cells, heads, module base, grad mode
    train/             losses, optimizers, clipping, the training tasks and loop
    io/                files, torch checkpoints without torch, ONNX and Keras
    reference, columns the equations as a plain loop (forward and BPTT); column layout
    tools/             explain, verify, gradcheck, bench and the command line
"""
import sys as _sys

from . import columns, functional, reference
from .errors import BackwardError, DTypeError, ShapeError, StateDictError
from .nn import (GRU, LSTM, RNN, Embedding, GRUCell, Linear, LSTMCell, RNNBase, RNNCell,
                 RNNCellBase, SequenceModel, backprop_cells, enable_grad, no_grad, run_cells)
from .sequence import PackedSequence, from_packed, to_packed
from .sequence.kernels import get_num_threads, set_num_threads
from .sequence.pool import empty_cache
from .io import (export_onnx, from_state_dict, import_onnx, load, load_torch, onnx_layers,
                 save)
from .io.keras import from_keras, to_keras
from .train import clip_grad_norm_, clip_grad_value_, losses, optim

# rnnlab.losses and rnnlab.optim are also importable by those names
_sys.modules[__name__ + ".losses"] = losses
_sys.modules[__name__ + ".optim"] = optim

__version__ = "0.2.0"
__all__ = ["SequenceModel", "RNN", "GRU", "LSTM", "RNNBase", "RNNCell", "GRUCell", "LSTMCell", "RNNCellBase",
           "Linear", "Embedding", "losses", "optim", "clip_grad_norm_", "clip_grad_value_",
           "save", "load", "load_torch", "from_state_dict", "export_onnx", "import_onnx",
           "onnx_layers",
           "to_keras", "from_keras", "empty_cache",
           "functional", "columns", "reference", "run_cells", "backprop_cells", "from_packed",
           "to_packed", "PackedSequence", "no_grad", "enable_grad", "ShapeError",
           "BackwardError", "StateDictError", "DTypeError", "set_num_threads", "get_num_threads"]
