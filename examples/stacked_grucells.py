"""Can a hand-made stack of GRUCells replace nn.GRU(num_layers=3)?

A research codebase decodes one step at a time with a list of GRUCells; each layer's
output (after dropout, except the last layer) feeds the next; it returns (output, hn) with
hn stacked per layer. Here the cells get their weights from rnnlab.GRU(num_layers=3) and
we check, for one step: equal in eval mode, and equal in training mode when the stack
uses the same dropout masks as the layer.

    python examples/stacked_grucells.py
"""
import numpy as np

import rnnlab


class StackedGRUCells:
    """The paper's multi-layer cell: GRUCells in a list, dropout between layers."""

    def __init__(self, input_size, hidden_size, num_layers, dropout, seed=None):
        self.cells = [rnnlab.GRUCell(input_size if k == 0 else hidden_size, hidden_size,
                                     dtype=np.float64, seed=seed)
                      for k in range(num_layers)]
        self.dropout = dropout

    def load_from_layer(self, gru):
        """Copy layer k's weights (weight_ih_l{k}, ...) into cell k."""
        for k, cell in enumerate(self.cells):
            cell.load_state_dict({name: gru.state_dict()[f"{name}_l{k}"]
                                  for name, _ in cell.named_parameters()})

    def __call__(self, x, hidden, masks=None):
        """x (N, input_size), hidden (num_layers, N, H); masks: one per layer but the last
        (already scaled by 1/(1-p)), or None for eval mode. Returns (output, hn)."""
        hn = []
        inp = x
        for k, cell in enumerate(self.cells):
            h = cell(inp, hidden[k])
            hn.append(h)
            inp = h
            if masks is not None and k < len(self.cells) - 1:
                inp = h * masks[k]                   # dropout on every layer but the last
        return inp, np.stack(hn)


def check(seed=0, N=4, input_size=5, hidden_size=6, num_layers=3, dropout=0.1):
    """Returns the max abs differences (eval, train with shared masks) of output and hn."""
    rng = np.random.default_rng(seed)
    gru = rnnlab.GRU(input_size, hidden_size, num_layers=num_layers, dropout=dropout,
                     dtype=np.float64, seed=seed)
    stack = StackedGRUCells(input_size, hidden_size, num_layers, dropout, seed=seed + 1)
    stack.load_from_layer(gru)
    x = rng.standard_normal((N, input_size))
    h = rng.standard_normal((num_layers, N, hidden_size))
    result = {}
    gru.eval()
    y_layer, h_layer = gru.step(x, h)
    y_stack, h_stack = stack(x, h)
    result["eval"] = max(np.abs(y_layer - y_stack).max(), np.abs(h_layer - h_stack).max())
    gru.train()
    y_layer, h_layer = gru.step(x, h)                # draws its own masks ...
    masks = gru.last_dropout_masks                   # ... which the stack then reuses
    y_stack, h_stack = stack(x, h, masks)
    result["train, shared masks"] = max(np.abs(y_layer - y_stack).max(),
                                        np.abs(h_layer - h_stack).max())
    other = [(rng.random(m.shape) >= dropout) / (1 - dropout) for m in masks]
    y_stack, _ = stack(x, h, other)
    result["train, independent masks"] = float(np.abs(y_layer - y_stack).max())
    return result


if __name__ == "__main__":
    for what, diff in check().items():
        print(f"{what:26s} max |layer - stack| = {diff:.3g}")
