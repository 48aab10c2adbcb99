"""The activations in place on every strided view the cells use (NumPy 2.4.6 computes an
in-place np.negative wrongly on float32 column views of 16-byte rows, which broke LSTM's
o gate at H = 1)."""
import numpy as np
import pytest

from rnnlab.cells.activations import sigmoid


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_sigmoid_in_place_on_strided_views(dt):
    for cols in range(1, 17):
        for lo in range(cols):
            for rows in (1, 3, 4, 16):
                a = (np.arange(rows * cols, dtype=dt).reshape(rows, cols) - 20) / 7
                want = 1 / (1 + np.exp(-a[:, lo:].astype(np.float64)))
                b = a.copy()
                view = b[:, lo:]
                sigmoid(view, out=view)
                np.testing.assert_allclose(view, want, rtol=1e-6, err_msg=f"{cols} {lo} {rows}")
                np.testing.assert_array_equal(b[:, :lo], a[:, :lo])
