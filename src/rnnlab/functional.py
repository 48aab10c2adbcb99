"""The functional core, pure functions under the classes (the public name of
rnnlab.sequence's driver):

    (output, h_n, c_n), cache = rnnlab.functional.forward(mode, x, weights, h0, c0, ...)
    grads = rnnlab.functional.backward(cache, d_output, d_h_n, d_c_n)

See rnnlab.sequence.checked (forward, backward) for the arguments.
"""
from .sequence import LayerWeights, backward, dropout_mask, forward

__all__ = ["forward", "backward", "dropout_mask", "LayerWeights"]
