"""What import_onnx returns besides the layer: constants the graph feeds its recurrent nodes
(``ImportedLayer``), and how the graph's own inputs and outputs map onto the layer's
(``GraphMap``), so that ``graph.run(layer, feeds)`` gives the same named outputs, in the
same shapes, as onnxruntime does for the file.
"""
import numpy as np


class ImportedLayer:
    """An imported layer plus the constant initial states and / or sequence lengths its
    graph feeds it. Called like the layer: ``hx`` and ``lengths`` default to the graph's
    constants (a caller's own replace them). Everything else (state_dict, parameters,
    eval, config, ...) is the layer's; ``layer`` is the plain layer."""

    def __init__(self, layer, h0=None, c0=None, lengths=None):
        self.layer = layer
        self.h0, self.c0, self.lengths = h0, c0, lengths

    @property
    def carried(self):
        """The graph's constants this object adds to its layer, by name."""
        return {k: v for k, v in (("h0", self.h0), ("c0", self.c0), ("lengths", self.lengths))
                if v is not None}

    def _hx(self, n):
        if self.h0 is None and self.c0 is None:
            return None
        shape = (self.layer.num_layers * (2 if self.layer.bidirectional else 1), n)
        dt = self.layer.dtype
        h = self.h0 if self.h0 is not None else np.zeros(
            shape + (getattr(self.layer, "proj_size", 0) or self.layer.hidden_size,), dt)
        if not self.layer.family.has_cell_state:
            return h.astype(dt, copy=False)
        c = self.c0 if self.c0 is not None else np.zeros(shape + (self.layer.hidden_size,), dt)
        return (h.astype(dt, copy=False), c.astype(dt, copy=False))

    def forward(self, input, hx=None, lengths=None, **kwargs):
        x = np.asarray(input)
        n = x.shape[0 if self.layer.batch_first else 1] if x.ndim == 3 else None
        constant_n = next((v.shape[1] for v in (self.h0, self.c0) if v is not None), None)
        if hx is None and constant_n is not None:
            if n != constant_n:
                raise ValueError(f"the graph's constant initial state is for a batch of "
                                 f"{constant_n}; the input has "
                                 f"{'no batch axis' if n is None else f'a batch of {n}'} "
                                 "(pass hx= to use other states)")
            hx = self._hx(n)
        if lengths is None and self.lengths is not None:
            if n != len(self.lengths):
                raise ValueError(f"the graph's constant sequence_lens are for a batch of "
                                 f"{len(self.lengths)}; the input has "
                                 f"{'no batch axis' if n is None else f'a batch of {n}'} "
                                 "(pass lengths= to use others)")
            lengths = self.lengths
        return self.layer(input, hx, lengths, **kwargs)

    __call__ = forward

    def __getattr__(self, name):
        if name == "layer":                      # not yet set (copying, unpickling)
            raise AttributeError(name)
        return getattr(self.layer, name)

    def to(self, dtype):
        self.layer = self.layer.to(dtype)
        return self

    def __repr__(self):
        parts = [f"{k}={v.shape if k != 'lengths' else v.tolist()}"
                 for k, v in self.carried.items()]
        return f"ImportedLayer({self.layer!r}, graph constants: {', '.join(parts)})"


class GraphMap:
    """Where a graph's inputs go into the layer and where its outputs come from.

    input: the graph input holding the sequence; states: the graph input(s) holding hx
    (role -> name); lengths: the graph input holding sequence lengths; outputs: graph
    output name -> ("seq", axis labels) | ("part", layer k, "h" | "c", layout) |
    ("all", "h" | "c")."""

    def __init__(self, input, states, lengths, outputs, num_directions):
        self.input, self.states, self.lengths = input, states, lengths
        self.outputs, self.D = outputs, num_directions

    def run(self, layer, feeds):
        """The graph's outputs (name -> array) computed by ``layer`` from the graph's
        ``feeds`` (name -> array), as onnxruntime would name and shape them."""
        x = np.asarray(feeds[self.input])
        hx = None
        if self.states:
            h = np.asarray(feeds[self.states["h0"]]) if "h0" in self.states else None
            c = np.asarray(feeds[self.states["c0"]]) if "c0" in self.states else None
            if layer.family.has_cell_state:
                n = x.shape[0 if layer.batch_first else 1]
                rows = layer.num_layers * self.D
                h = np.zeros((rows, n, layer.hidden_size), x.dtype) if h is None else h
                c = np.zeros((rows, n, layer.hidden_size), x.dtype) if c is None else c
                hx = (h, c)
            else:
                hx = h
        lengths = np.asarray(feeds[self.lengths]) if self.lengths else None
        out, state = layer(x, hx, lengths) if (hx is not None or lengths is not None) else \
            layer(x)
        h_n, c_n = state if isinstance(state, tuple) else (state, None)
        out = np.asarray(out)
        if layer.batch_first:
            out = out.transpose(1, 0, 2)
        T, N = out.shape[:2]
        split = out.reshape(T, N, self.D, -1)                        # (T, N, D, H)
        result = {}
        for name, how in self.outputs.items():
            if how[0] == "seq":
                result[name] = _view(split, how[1])
            elif how[0] == "all":
                result[name] = np.asarray(h_n if how[1] == "h" else c_n)
            else:
                _, k, what, layout = how
                part = np.asarray(h_n if what == "h" else c_n)[k * self.D:(k + 1) * self.D]
                result[name] = part.transpose(1, 0, 2) if layout else part
        return result


    def to_layer(self, value, labels, batch_first):
        """A graph's sequence output (axes ``labels``) as the layer returns it."""
        names = [x if not x.startswith("D") else "D" for x in labels]
        value = np.asarray(value)
        if "F" in names:
            value = value.reshape(value.shape[:-1] + (self.D, -1))
            names = names[:-1] + ["D", "H"]
        value = value.transpose([names.index(x) for x in ("T", "N", "D", "H")])
        value = value.reshape(value.shape[:2] + (-1,))
        return value.transpose(1, 0, 2) if batch_first else value


def _view(split, labels):
    """(T, N, D, H) rearranged to the graph's axis labels (T, N, D1 / D2, H, or F for D and
    H merged)."""
    names = {"T": 0, "N": 1, "D1": 2, "D2": 2, "H": 3}
    if "F" in labels:
        order = [names[x] for x in labels if x != "F"] + [2, 3]
        a = split.transpose(order)
        return a.reshape(a.shape[:-2] + (-1,))
    return split.transpose([names[x] for x in labels])
