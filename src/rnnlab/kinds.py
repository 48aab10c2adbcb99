"""The families by the names the command line and the test matrices use.

One table for conformance, gradcheck, explain and bench: name -> (layer class, cell class,
constructor keywords). torch's classes have the same names (``getattr(torch.nn, cls.__name__)``).
"""
from . import gru, lstm, rnn
from .cells import GRUCell, LSTMCell, RNNCell
from .layers import GRU, LSTM, RNN

KINDS = {
    "rnn": (RNN, RNNCell, {}),
    "rnn_relu": (RNN, RNNCell, {"nonlinearity": "relu"}),
    "gru": (GRU, GRUCell, {}),
    "lstm": (LSTM, LSTMCell, {}),
}

#: the letters of each family's gate row blocks, in torch's order
GATE_LETTERS = {"rnn": [], "rnn_relu": [], "gru": list("rzn"), "lstm": list("ifgo")}

#: gates per family, from the cell modules
GATES = {"rnn": rnn.GATES, "rnn_relu": rnn.GATES, "gru": gru.GATES, "lstm": lstm.GATES}
