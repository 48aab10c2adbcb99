"""What import_onnx knows of a graph before it imports anything: the values it can compute
from constants alone (folded here in NumPy: Constant, Identity, Cast, Slice, Split, Concat,
Squeeze, Unsqueeze, Reshape, Transpose, Gather, Expand, Shape, elementwise arithmetic,
ConstantOfShape; sizes checked against rnnlab.io.limits before anything is allocated),
outer-scope names visible inside If / Loop / Scan bodies, and every RNN / GRU / LSTM node
wherever it sits (``onnx_layers``).
"""
import numpy as np

from . import limits

RECURRENT = ("RNN", "GRU", "LSTM")
FOLDABLE = {"Constant", "Identity", "Cast", "Slice", "Split", "Concat", "Squeeze",
            "Unsqueeze", "Reshape", "Transpose", "Gather", "Expand", "Shape", "Add", "Sub",
            "Mul", "Div", "Neg", "ConstantOfShape"}


class GraphError(ValueError):
    """A graph import_onnx cannot read (named by the caller)."""


def attrs(node):
    from onnx import helper
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode("utf-8", "replace") for s in v]
        out[a.name] = v
    return out


def _array(tensor):
    from onnx import numpy_helper
    n = limits.elements(tuple(int(d) for d in tensor.dims), "the graph", f"tensor {tensor.name!r}")
    if n * 8 > limits.MAX_BYTES:
        raise limits.LimitError(f"tensor {tensor.name!r} claims {n:,} elements (over "
                                f"rnnlab.io.limits.MAX_BYTES)")
    return numpy_helper.to_array(tensor)


def _fold(node, ins, a):
    """The outputs of one foldable node over known arrays ``ins`` (None for an absent
    optional input), or a GraphError."""
    op = node.op_type
    if op == "Constant":
        for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            if key in a:
                v = a[key]
                return [_array(v) if hasattr(v, "dims") else np.array(v)]
        raise GraphError(f"Constant {node.name!r} holds no value rnnlab reads")
    if op == "Identity":
        return [ins[0]]
    if op == "Cast":
        from onnx import helper
        return [ins[0].astype(helper.tensor_dtype_to_np_dtype(a["to"]))]
    if op == "Shape":
        return [np.array(ins[0].shape, np.int64)]
    if op in ("Add", "Sub", "Mul", "Div"):
        with np.errstate(all="ignore"):
            return [{"Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
                     "Div": np.divide}[op](ins[0], ins[1])]
    if op == "Neg":
        return [-ins[0]]
    if op == "Transpose":
        return [np.transpose(ins[0], a.get("perm"))]
    if op == "Concat":
        return [np.concatenate(ins, axis=a["axis"])]
    if op in ("Squeeze", "Unsqueeze"):
        axes = a.get("axes", None if len(ins) < 2 or ins[1] is None else ins[1].tolist())
        if op == "Squeeze":
            return [np.squeeze(ins[0], axis=None if axes is None else tuple(axes))]
        out = ins[0]
        for ax in sorted(int(x) % (out.ndim + len(axes)) for x in axes):
            out = np.expand_dims(out, ax)
        return [out]
    if op == "Reshape":
        shape = [int(s) for s in ins[1]]
        if not a.get("allowzero", 0):
            shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return [ins[0].reshape(shape)]
    if op == "Gather":
        return [np.take(ins[0], ins[1], axis=a.get("axis", 0))]
    if op == "Slice":
        data = ins[0]
        if len(ins) > 1:
            starts, ends = ins[1].tolist(), ins[2].tolist()
            axes = ins[3].tolist() if len(ins) > 3 and ins[3] is not None else \
                list(range(len(starts)))
            steps = ins[4].tolist() if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
        else:
            starts, ends = a["starts"], a["ends"]
            axes, steps = a.get("axes", list(range(len(starts)))), [1] * len(starts)
        index = [slice(None)] * data.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            index[int(ax)] = slice(int(s), int(e), int(st))
        return [data[tuple(index)]]
    if op == "Split":
        axis = a.get("axis", 0)
        sizes = a.get("split") or (ins[1].tolist() if len(ins) > 1 and ins[1] is not None
                                   else None)
        n = len(node.output)
        if sizes is None:
            return np.array_split(ins[0], n, axis=axis)
        return np.split(ins[0], np.cumsum(sizes)[:-1], axis=axis)
    if op in ("Expand", "ConstantOfShape"):
        shape = tuple(int(s) for s in (ins[1] if op == "Expand" else ins[0]))
        if op == "Expand":
            shape = np.broadcast_shapes(ins[0].shape, shape)
        n = limits.elements(shape, "the graph", f"{op} {node.name!r}")
        if n * 8 > limits.budget(None, 0):
            raise limits.LimitError(f"{op} {node.name!r} would make {n:,} elements (over "
                                    "rnnlab.io.limits)")
        if op == "Expand":
            return [np.broadcast_to(ins[0], shape).copy()]
        v = _array(a["value"]) if "value" in a else np.zeros(1, np.float32)
        return [np.full(shape, v.reshape(-1)[0], v.dtype)]
    raise GraphError(f"{op} is not folded")


class Scope:
    """The known (constant) values of one graph, seeing its parents' (outer scope)."""

    def __init__(self, graph, parent=None, given=None):
        self.graph, self.parent = graph, parent
        self.values = {}
        for t in graph.initializer:
            self.values[t.name] = _array(t)
        for name, value in (given or {}).items():
            self.values[name] = value
        for n in graph.node:                         # in order: ONNX graphs are sorted
            if n.op_type not in FOLDABLE:
                continue
            ins = [None if not i else self.get(i) for i in n.input]
            if any(v is None for v, i in zip(ins, n.input) if i):
                continue                             # depends on data: not folded
            try:
                outs = _fold(n, ins, attrs(n))
            except limits.LimitError:
                raise
            except (GraphError, ValueError, TypeError, IndexError, KeyError) as exc:
                raise GraphError(f"{n.op_type} {n.name!r} cannot be evaluated on its "
                                 f"constants ({type(exc).__name__}: {exc})") from None
            for name, v in zip(n.output, outs):
                self.values[name] = np.asarray(v)

    def get(self, name):
        """A constant's value, looking outwards; None when it depends on data."""
        if name in self.values:
            return self.values[name]
        return None if self.parent is None else self.parent.get(name)


def walk(graph, path="", parent=None, given=None):
    """(path, node, scope) for every node of ``graph`` and of the bodies in it."""
    scope = Scope(graph, parent, given)
    for n in graph.node:
        yield path, n, scope
        for a in n.attribute:
            subs = [a.g] if a.HasField("g") else list(a.graphs)
            for g in subs:
                where = f"{path}{n.op_type} {n.name or n.output[0]!r}/{a.name}/"
                yield from walk(g, where, scope)


def describe(node, scope, path):
    """One entry of onnx_layers."""
    a = attrs(node)
    ins = list(node.input) + [""] * (8 - len(node.input))
    const = {k: bool(ins[i]) and scope.get(ins[i]) is not None
             for i, k in enumerate(("X", "W", "R", "B", "sequence_lens", "initial_h",
                                    "initial_c", "P")) if ins[i]}
    R = scope.get(ins[2]) if ins[2] else None
    hidden = a.get("hidden_size", None if R is None or R.ndim != 3 else R.shape[-1])
    W = scope.get(ins[1]) if ins[1] else None
    return {"name": node.name or node.output[0], "op": node.op_type, "path": path or "(top)",
            "hidden_size": hidden,
            "input_size": None if W is None or W.ndim != 3 else int(W.shape[-1]),
            "direction": a.get("direction", "forward"),
            "attributes": {k: v for k, v in a.items() if k not in ("hidden_size", "direction")},
            "constant_weights": all(const.get(k, False) for k in ("W", "R")) and
            const.get("B", True), "inputs": const}
