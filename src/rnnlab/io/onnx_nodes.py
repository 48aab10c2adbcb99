"""One ONNX RNN / GRU / LSTM node, or a chain of them, as an rnnlab layer: the family its
attributes say (each family's ONNX record, or refusal naming the attribute), the weights
(constants, folded or fed by the caller, or refusal saying how to feed them), shapes
checked before anything is built."""
import numpy as np

from ..cells import from_framework
from ..cells.variants import from_onnx
from ..nn import make_layer
from .onnx_graph import attrs


class OnnxImportError(ValueError):
    """The graph holds something rnnlab cannot reproduce exactly."""


def _weights(node, scope, graph, k):
    ins = list(node.input) + [""] * 8
    graph_inputs = {i.name for i in graph.input} if graph is not None else set()
    out = []
    for slot, name in ((1, "W"), (2, "R"), (3, "B"), (7, "P")):
        key = ins[slot]
        if not key:
            out.append(None)
            continue
        v = scope.get(key)
        if v is None:
            if key in graph_inputs:
                raise OnnxImportError(f"{node.op_type} node {k}: its {name} is the graph input "
                                      f"{key!r}; pass its value as import_onnx(path, inputs="
                                      f"{{{key!r}: array}})")
            raise OnnxImportError(f"{node.op_type} node {k}: its {name} ({key!r}) is computed "
                                  "from data, not from constants")
        out.append(v)
    return out


def _shortest(v):
    """A float attribute (stored as float32) as the shortest decimal that is the same
    float32: 0.3, not 0.30000001192092896 (the layer then prints what was written)."""
    return float(np.format_float_positional(np.float32(v), unique=True, trim="0"))


def _check_node(node, k, a):
    """The node's family (registered, or the variant its attributes say), number of
    directions and whether it runs reversed, or refusal by attribute."""
    op = node.op_type
    direction = a.get("direction", "forward")
    if direction not in ("forward", "bidirectional", "reverse"):
        raise OnnxImportError(f"{op} node {k}: direction {direction!r} is not one of "
                              "ONNX's forward, reverse, bidirectional")
    D = 2 if direction == "bidirectional" else 1
    try:
        fam = from_onnx(op, a, len(node.input) > 7 and bool(node.input[7]), D,
                        number=_shortest)
    except (ValueError, TypeError) as e:
        raise OnnxImportError(f"{op} node {k}: {e}") from None
    return fam, D, direction == "reverse"


def build(rec, scope, graph, batch_first, dtype):
    op = rec[0].op_type
    if any(n.op_type != op for n in rec):
        raise OnnxImportError(f"mixed recurrent ops {[n.op_type for n in rec]}")
    layers, fam, D, H, bias, rev = [], None, None, None, False, None
    for k, node in enumerate(rec):
        a = attrs(node)
        f, d, r = _check_node(node, k, a)
        if fam is not None and (f, d, r) != (fam, D, rev):
            raise OnnxImportError("the layers differ in family, activation or direction "
                                  "(rnnlab's layer has one of each)")
        fam, D, rev = f, d, r
        W, R, B, P = _weights(node, scope, graph, k)
        G = f.num_gates
        for name, arr, ndim in (("W", W, 3), ("R", R, 3), ("B", B, 2), ("P", P, 2)):
            if arr is not None and (arr.ndim != ndim or arr.dtype.kind != "f"):
                raise OnnxImportError(f"{op} node {k}: {name} must be a {ndim}-D float "
                                      f"tensor, got {arr.ndim}-D {arr.dtype}")
        H = R.shape[2]
        if int(a.get("hidden_size", H)) != H or W.shape[:2] != (d, G * H) or \
                R.shape != (d, G * H, H) or (B is not None and B.shape != (d, 2 * G * H)):
            raise OnnxImportError(
                f"{op} node {k}: W {W.shape}, R {R.shape}" + (f", B {B.shape}" if B is not None
                                                              else "")
                + f" do not fit hidden_size {a.get('hidden_size', H)} with {d} "
                f"direction(s) and {G} gate(s)")
        if P is not None and P.shape != (d, 3 * H):
            raise OnnxImportError(f"{op} node {k}: P {P.shape} does not fit hidden_size {H} "
                                  f"with {d} direction(s) (expected {(d, 3 * H)})")
        if H == 0 or W.shape[2] == 0:
            raise OnnxImportError(f"{op} node {k}: W {W.shape} / R {R.shape} are empty")
        bias = bias or B is not None
        layers.append((W, R, B, P))
    G, I = fam.num_gates, layers[0][0].shape[2]
    for k, (W, R, B, _) in enumerate(layers):
        want = I if k == 0 else D * H
        if R.shape[2] != H or W.shape[2] != want:
            raise OnnxImportError(f"layer {k}: W {W.shape} / R {R.shape} do not chain "
                                  f"(expected input size {want}, hidden size {H})")
    kw = dict(num_layers=len(layers), bias=bias, bidirectional=D == 2,
              batch_first=bool(batch_first), dtype=dtype,
              **({"direction": "reverse"} if rev else {}))
    layer = make_layer(fam, I, H, **kw)
    sd = {}
    for k, (W, R, B, P) in enumerate(layers):
        for d in range(D):
            s = f"_l{k}" + ("_reverse" if d else "")
            sd["weight_ih" + s] = from_framework(W[d], fam, "onnx")
            sd["weight_hh" + s] = from_framework(R[d], fam, "onnx")
            if bias:
                b = np.zeros(2 * G * H, W.dtype) if B is None else B[d]
                sd["bias_ih" + s] = from_framework(b[:G * H], fam, "onnx")
                sd["bias_hh" + s] = from_framework(b[G * H:], fam, "onnx")
            if P is not None:
                sd["weight_p" + s] = P[d]                  # p_i | p_o | p_f, ONNX's order
    layer.load_state_dict(sd)
    return layer
