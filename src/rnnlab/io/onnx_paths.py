"""Every op between a graph's inputs, its recurrent nodes and its outputs, understood or
refused by name (import_onnx's analysis).

Each value of the graph gets a kind: a constant (folded, onnx_graph.Scope), all zeros of
some shape (Expand / ConstantOfShape of a zero), a shape computation (Shape of data and
what only shapes feed), a graph input, a view of the sequence data whose axes are named
(T, N, F, or a recurrent node's (T, D, N, H)), a state or lengths input, a node's Y_h /
Y_c, or their concatenation over layers. The layout ops exporters write — Transpose,
Squeeze, Unsqueeze, Reshape that merges trailing axes, Identity, Concat of final states,
Slice of state rows, Cast of lengths — move the axis names; whatever the names say at a
recurrent node's input and at the graph's outputs decides batch_first and the layer's
wiring. Any other op touching data, or the layout ops used otherwise, is refused naming
the node.
"""
import numpy as np

from .onnx_graph import RECURRENT, attrs


class PathError(ValueError):
    """An op on the data path import_onnx does not reproduce (named)."""


def _name(n):
    return f"{n.op_type} {n.name or n.output[0]!r}"


class Paths:
    """The analysis of one graph's top level (``scope``: its constants)."""

    def __init__(self, graph, scope):
        self.scope = scope
        self.kind = {}                          # value name -> kind tuple
        self.layers = []                        # recurrent nodes, in order
        self.x_of = []                          # per layer: the labels its X had
        self.state_in, self.lengths_in, self.x_input = {}, None, None
        for i in graph.input:
            if scope.get(i.name) is None:
                dims = i.type.tensor_type.shape.dim
                self.kind[i.name] = ("in", i.name, len(dims))
        for n in graph.node:
            if all(scope.get(o) is not None for o in n.output if o):
                continue                        # folded: a constant
            self._node(n)
        self.outputs = [(o.name, self.kind.get(o.name, ("const",) if scope.get(o.name)
                                                        is not None else None))
                        for o in graph.output]

    def _k(self, name):
        if not name:
            return None
        v = self.scope.get(name)
        if v is not None:
            return ("const", v)
        if name not in self.kind:
            raise PathError(f"value {name!r} comes from nothing import_onnx reads")
        return self.kind[name]

    def _node(self, n):
        op, a = n.op_type, attrs(n)
        ins = [self._k(i) for i in n.input]
        kinds = [k[0] for k in ins if k is not None]
        if op in RECURRENT:
            return self._recurrent(n, a, ins)
        out = None
        if all(k in ("const", "shape", "zero") for k in kinds):
            if op in ("Expand", "ConstantOfShape"):
                value = ins[0][1] if op == "Expand" and ins[0][0] == "const" else \
                    a.get("value")
                zero = value is None or not np.any(np.asarray(
                    value if not hasattr(value, "dims") else _tensor(value)))
                out = ("zero",) if zero else None
            elif op in ("Shape", "Gather", "Unsqueeze", "Concat", "Squeeze", "Cast", "Slice",
                        "Reshape", "Identity", "Add", "Sub", "Mul", "Div"):
                out = ("shape",) if "zero" not in kinds else None
        elif op == "Shape" and ins[0][0] in ("in", "seq"):
            out = ("shape",)
        elif op == "Identity":
            out = ins[0]
        elif kinds and kinds[0] in ("in", "seq") and op in ("Transpose", "Squeeze",
                                                             "Unsqueeze", "Reshape"):
            out = self._layout(n, op, a, ins)
        elif op == "Slice" and ins[0][0] == "in":
            out = self._state_rows(n, ins)
        elif op == "Cast" and ins[0][0] == "in":
            out = ("lens", ins[0][1])
        elif op == "Concat" and kinds and all(k == "yh" for k in kinds) and a.get("axis") == 0:
            what = {k[2] for k in ins}
            if len(what) == 1 and [k[1] for k in ins] == list(range(len(ins))):
                out = ("states", what.pop(), len(ins))
        if out is None:
            raise PathError(f"{_name(n)} works on the data between the graph's inputs, its "
                            "recurrent nodes and its outputs, and import_onnx does not "
                            "reproduce it")
        for o in n.output:
            self.kind[o] = out

    def _layout(self, n, op, a, ins):
        """Move the axis names of a sequence view (or a graph input, named i0, i1, ...)."""
        k = ins[0]
        labels = list(k[1]) if k[0] == "seq" else [f"i{j}" for j in range(k[2])]
        origin = k[2] if k[0] == "seq" else k[1]
        if op == "Transpose":
            perm = a.get("perm", list(range(len(labels)))[::-1])
            labels = [labels[p] for p in perm]
        elif op == "Squeeze":
            axes = a.get("axes") if "axes" in a else (None if len(ins) < 2 or ins[1] is None
                                                      else ins[1][1].tolist())
            for ax in sorted((int(x) % len(labels) for x in axes or ()), reverse=True):
                if labels[ax] != "D1":
                    return None                   # only a direction axis of size 1
                del labels[ax]
        elif op == "Unsqueeze":
            return None
        elif op == "Reshape":
            shape = None if ins[1][0] != "const" else [int(s) for s in ins[1][1]]
            if shape is None or a.get("allowzero", 0) or shape.count(-1) != 1 or \
                    shape[-1] != -1 or any(s != 0 for s in shape[:-1]):
                return None                       # only (.., 0, 0, -1): merge trailing axes
            keep = len(shape) - 1
            tail = labels[keep:]
            if tail not in (["D1", "H"], ["D2", "H"], ["F"]):
                return None
            labels = labels[:keep] + ["F"]
        return ("seq", tuple(labels), origin)

    def _state_rows(self, n, ins):
        """Slice of rows k*D:(k+1)*D of a state input along axis 0 (our exporter's h0)."""
        if len(ins) < 4 or any(ins[i] is None or ins[i][0] != "const" for i in (1, 2, 3)):
            return None
        starts, ends, axes = (ins[i][1].tolist() for i in (1, 2, 3))
        if axes != [0] or len(starts) != 1:
            return None
        return ("rows", ins[0][1], int(starts[0]), int(ends[0]), _name(n))

    def _recurrent(self, n, a, ins):
        k = len(self.layers)
        self.layers.append(n)
        layout = a.get("layout", 0)
        D = 2 if a.get("direction", "forward") == "bidirectional" else 1
        x = ins[0]
        if x is not None and x[0] == "rows":
            raise PathError(f"{x[4]} works on the data between the graph's inputs and "
                            f"{_name(n)} (it cuts the sequence), and import_onnx does not "
                            "reproduce it")
        if x is None or x[0] not in ("in", "seq"):
            raise PathError(f"{_name(n)}: its input X is not the sequence data")
        labels = list(x[1]) if x[0] == "seq" else ["i0", "i1", "i2"]
        origin = x[2] if x[0] == "seq" else x[1]
        want_prev = ("layer", k - 1) if k else None
        if k == 0 and not (isinstance(origin, str)):
            raise PathError(f"{_name(n)}: the first recurrent node must read a graph input")
        if k == 0:
            self.x_input = origin
        if k and origin != want_prev:
            raise PathError(f"{_name(n)}: it does not read the previous recurrent node's "
                            "output")
        if len(labels) != 3:
            raise PathError(f"{_name(n)}: its input has {len(labels)} axes where 3 belong")
        labels = _features(labels)
        seq_axes = [labels[1], labels[0], labels[2]] if layout else labels
        if k and seq_axes != ["T", "N", "F"]:
            raise PathError(f"{_name(n)}: the previous node's output reaches it with its "
                            f"axes as {labels}, not (T, N, features)")
        self.x_of.append((labels, layout))
        for slot, role in ((5, "h0"), (6, "c0")):
            v = ins[slot] if len(ins) > slot else None
            if v is None or v[0] == "zero":
                continue
            if v[0] == "const":
                value = np.asarray(v[1])
                if layout and value.ndim == 3:       # layout=1 states are (N, D, H)
                    value = value.transpose(1, 0, 2)
                self.state_in.setdefault(role, {})[k] = ("const", value)
            elif v[0] in ("in", "rows") and layout:
                raise PathError(f"{_name(n)}: layout=1 with its initial state fed as a graph "
                                "input (batch-major states) is not reproduced")
            elif v[0] in ("in", "rows"):
                self.state_in.setdefault(role, {})[k] = v
            else:
                raise PathError(f"{_name(n)}: its initial state is computed from the data")
        if len(ins) > 4 and ins[4] is not None:
            lens = ins[4]
            if lens[0] == "const":
                lens = ("const", lens[1])
            elif lens[0] == "in":
                lens = ("lens", lens[1])
            elif lens[0] != "lens":
                raise PathError(f"{_name(n)}: its sequence_lens are computed from the data")
            if self.lengths_in is not None and _key(self.lengths_in) != _key(lens):
                raise PathError(f"{_name(n)}: the nodes read different sequence lengths")
            self.lengths_in = lens
        Y = ("T", "D2" if D == 2 else "D1", "N", "H")
        if layout:
            Y = ("N", "T", Y[1], "H")
        outs = list(n.output) + ["", "", ""]
        self.kind[outs[0]] = ("seq", Y, ("layer", k))
        for j, what in ((1, "h"), (2, "c")):
            if outs[j]:
                self.kind[outs[j]] = ("yh", k, what, layout)

    def batch_first(self, output_labels):
        """The layer's batch_first from the names at layer 0's input and at the graph's
        sequence output; a PathError when the two disagree."""
        labels, layout = self.x_of[0]
        if layout:
            first = True
            if labels != ["i0", "i1", "i2"]:
                raise PathError("the first node reads its input with layout=1 through a "
                                "transpose: a layout rnnlab does not reproduce")
        elif labels == ["i1", "i0", "i2"]:
            first = True
        elif labels == ["i0", "i1", "i2"]:
            first = False
        else:
            raise PathError(f"the input reaches the first node with its axes as {labels}")
        if output_labels is not None:
            out = _features(list(output_labels))
            want = ["N", "T", "F"] if first else ["T", "N", "F"]
            if out != want:
                raise PathError(f"the sequence output leaves the graph with its axes as "
                                f"{output_labels}, the input comes in as "
                                f"{'(N, T, F)' if first else '(T, N, F)'}: no single "
                                "batch_first reproduces both")
        return first


def _features(labels):
    """A one-direction output whose direction axis was squeezed away: its H axis is the
    features axis."""
    if "H" in labels and not any(x.startswith("D") for x in labels) and labels[-1] == "H":
        return labels[:-1] + ["F"]
    return labels


def _key(lens):
    return (lens[0], lens[1].tobytes() if hasattr(lens[1], "tobytes") else lens[1])


def _tensor(t):
    from onnx import numpy_helper
    return numpy_helper.to_array(t)
