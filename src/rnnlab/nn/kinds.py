"""Layers and cells by family kind ("rnn", "rnn_relu", "gru", "lstm", or any registered
family): what the command line, conformance, gradcheck, explain and bench build. A family
with a torch class gets that class (RNN, GRU, LSTM); any other gets RNNBase / RNNCellBase."""
from ..cells import by_kind
from .cells import GRUCell, LSTMCell, RNNCell, RNNCellBase
from .layers import GRU, LSTM, RNN, RNNBase

LAYERS = {c.__name__: c for c in (RNN, GRU, LSTM)}            # by the torch class they mirror
CELLS = {c.__name__[:-len("Cell")]: c for c in (RNNCell, GRUCell, LSTMCell)}


def layer_class(fam):
    """The layer class of a family: its torch class's rnnlab twin, or RNNBase."""
    return LAYERS.get(fam.torch_class or fam.layer_class, RNNBase)


def _make(classes, base, kind, input_size, hidden_size, kwargs):
    fam = by_kind(kind)                  # a name, or a Family (a variant's)
    cls = classes.get(fam.torch_class or fam.layer_class)
    if cls is None:
        return base(fam, input_size, hidden_size, **kwargs)
    return cls(input_size, hidden_size, **fam.options, **kwargs)


def make_layer(kind, input_size, hidden_size, **kwargs):
    """The layer of family ``kind`` (keywords as for RNN/GRU/LSTM); ``kind`` may also be a
    Family record itself, e.g. a variant family (cells/variants.py), built with its
    options."""
    return _make(LAYERS, RNNBase, kind, input_size, hidden_size, kwargs)


def make_cell(kind, input_size, hidden_size, **kwargs):
    """The cell of family ``kind``."""
    return _make(CELLS, RNNCellBase, kind, input_size, hidden_size, kwargs)
