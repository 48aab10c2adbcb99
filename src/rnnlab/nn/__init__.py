"""torch.nn-like modules: the recurrent layers (RNN, GRU, LSTM, RNNBase), the cells
(RNNCell, GRUCell, LSTMCell, RNNCellBase), the heads (Linear, Embedding), the module base
(parameters, gradients, state_dict, per-thread records) and grad mode (no_grad,
enable_grad). Depends on rnnlab.sequence and rnnlab.cells."""
from .cells import GRUCell, LSTMCell, RNNCell, RNNCellBase, backprop_cells, run_cells
from .grad_mode import enable_grad, is_recording, no_grad
from .heads import Embedding, Linear
from .kinds import layer_class, make_cell, make_layer
from .layers import GRU, LSTM, RNN, RNNBase, param_names
from .model import SequenceModel
from .module import Module

__all__ = ["Linear", "Embedding", "RNN", "GRU", "LSTM", "RNNBase", "RNNCell", "GRUCell",
           "LSTMCell", "RNNCellBase",
           "Module", "SequenceModel", "run_cells", "backprop_cells", "no_grad", "enable_grad", "is_recording",
           "make_layer", "make_cell", "layer_class", "param_names"]
