"""Argument checks of the layers and cells: what torch refuses is refused with torch's
wording (TypeError / ValueError / ShapeError), before anything changes."""
import warnings

import numpy as np
import pytest

from rnnlab import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell


def f64(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# -- validation --------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, err, text", [
    (dict(dropout=1.5), ValueError, "dropout should be a number in range"),
    (dict(dropout=-0.1), ValueError, "dropout should be a number in range"),
    (dict(dropout=True), ValueError, "dropout should be a number in range"),
    (dict(hidden_size=2.0), TypeError, "hidden_size should be of type int"),
    (dict(hidden_size=0), ValueError, "hidden_size must be greater than zero"),
    (dict(input_size=0), ValueError, "input_size must be greater than zero"),
    (dict(num_layers=0), ValueError, "num_layers must be greater than zero"),
    (dict(bias=1), TypeError, "bias should be of type bool"),
    (dict(batch_first="yes"), TypeError, "batch_first should be of type bool"),
])
@pytest.mark.parametrize("cls", [RNN, GRU, LSTM])
def test_constructor_args_check(cls, kwargs, err, text):
    args = dict(input_size=3, hidden_size=4)
    args.update(kwargs)
    with pytest.raises(err, match=text):
        cls(args.pop("input_size"), args.pop("hidden_size"), **args)


def test_projection_and_nonlinearity_checks():
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="proj_size should be a positive integer or zero"):
        LSTM(3, 4, proj_size=-1)
    for cls in (RNN, GRU):
        with pytest.raises(ValueError, match="only supported for LSTM"):
            cls(3, 4, proj_size=2)
    for make in (lambda: RNN(3, 4, nonlinearity="sigmoid"), lambda: RNNCell(3, 4, nonlinearity="gelu")):
        with pytest.raises(ValueError, match="Unknown nonlinearity"):
            make()
    with pytest.raises(TypeError, match="dtype"):
        GRU(3, 4, dtype=np.int32)


def test_dropout_warning_single_layer():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1, "
                                         "but got dropout=0.5 and num_layers=1"):
        GRU(3, 4, dropout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GRU(3, 4, num_layers=2, dropout=0.5)


@pytest.mark.parametrize("cls", [RNN, GRU, LSTM])
def test_forward_input_checks(cls):
    """test_rnn_args_check: wrong sizes anywhere raise a clear error, never IndexError."""
    m = cls(3, 4, num_layers=2, dtype=np.float64)
    lstm = cls is LSTM
    good_h = np.zeros((2, 5, 4))
    hx = lambda h, c=None: (h, good_h if c is None else c) if lstm else h  # noqa: E731
    with pytest.raises(ValueError, match="input.size\\(-1\\) must be equal to input_size. Expected 3, got 2"):
        m(np.zeros((6, 5, 2)))
    with pytest.raises(ValueError, match="Expected input to be 2D or 3D, got 4D"):
        m(np.zeros((6, 5, 3, 1)))
    label = "hidden\\[0\\]" if lstm else "hidden"
    with pytest.raises(ValueError, match=f"Expected {label} size \\(2, 5, 4\\), got \\[3, 5, 4\\]"):
        m(np.zeros((6, 5, 3)), hx(np.zeros((3, 5, 4))))
    with pytest.raises(ValueError, match=f"Expected {label} size \\(2, 5, 4\\), got \\[2, 4, 4\\]"):
        m(np.zeros((6, 5, 3)), hx(np.zeros((2, 4, 4))))
    with pytest.raises(ValueError, match="For unbatched 2-D input, hx should also be 2-D but got 3-D"):
        m(np.zeros((6, 3)), hx(good_h))
    with pytest.raises(ValueError, match="For batched 3-D input, hx should also be 3-D but got 2-D"):
        m(np.zeros((6, 5, 3)), hx(np.zeros((2, 4)), np.zeros((2, 4))))
    with pytest.raises(ValueError, match="sequence length greater than zero"):
        m(np.zeros((0, 5, 3)))
    if lstm:
        with pytest.raises(ValueError, match="Expected hidden\\[1\\] size \\(2, 5, 4\\), got \\[2, 5, 3\\]"):
            m(np.zeros((6, 5, 3)), (good_h, np.zeros((2, 5, 3))))
        with pytest.raises(TypeError, match="tuple"):
            m(np.zeros((6, 5, 3)), good_h)


def test_failed_forward_keeps_previous_backward():
    m = GRU(3, 4, dtype=np.float64)
    out, _ = m(f64(2, 1, 3))
    with pytest.raises(ValueError):
        m(np.zeros((2, 1, 5)))
    dx, _ = m.backward(np.ones_like(out))
    assert dx.shape == (2, 1, 3)


def test_backward_checks():
    m = GRU(3, 4, dtype=np.float64)
    with pytest.raises(ValueError, match="before forward"):
        m.backward(np.zeros((2, 1, 4)))
    out, h = m(f64(2, 1, 3))
    with pytest.raises(ValueError, match="d_output must have the shape"):
        m.backward(np.zeros((2, 1, 5)))
    with pytest.raises(ValueError, match="d_h_n must have the shape"):
        m.backward(None, np.zeros((2, 1, 4)))
    dx, dh0 = m.backward()                                 # both None: zero gradients
    assert not dx.any() and not dh0.any()
    cell = GRUCell(3, 4)
    with pytest.raises(RuntimeError, match="no forward call left"):
        cell.backward(np.zeros((1, 4), np.float32))


@pytest.mark.parametrize("cls", [RNNCell, GRUCell, LSTMCell])
def test_cell_checks(cls):
    """test_RNN_cell_no_broadcasting and friends."""
    c = cls(3, 4, dtype=np.float64)
    lstm = cls is LSTMCell
    hx = lambda h: (h, h) if lstm else h  # noqa: E731
    with pytest.raises(ValueError, match="Expected input to be 1D or 2D, got 3D"):
        c(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="input has inconsistent input_size: got 2 expected 3"):
        c(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="Input batch size 5 doesn't match"):
        c(np.zeros((5, 3)), hx(np.zeros((1, 4))))
    with pytest.raises(ValueError, match="inconsistent hidden_size: got 3, expected 4"):
        c(np.zeros((5, 3)), hx(np.zeros((5, 3))))
    with pytest.raises(ValueError, match="2-D like the batched input"):
        c(np.zeros((5, 3)), hx(np.zeros(4)))
    out = c(np.zeros(3))                                   # unbatched
    h = out[0] if lstm else out
    assert h.shape == (4,)


def test_lengths_checks():
    m = GRU(2, 3, dtype=np.float64)
    x = np.zeros((4, 3, 2))
    with pytest.raises(ValueError, match="between 1 and the padded length 4"):
        m(x, lengths=[4, 0, 2])
    with pytest.raises(ValueError, match="between 1 and the padded length 4"):
        m(x, lengths=[5, 1, 2])
    with pytest.raises(ValueError, match="one per sequence"):
        m(x, lengths=[4, 2])
    with pytest.raises(TypeError, match="integers"):
        m(x, lengths=[4, 2.5, 1])
