"""One ONNX RNN / GRU / LSTM node, or a chain of them, as an rnnlab layer: the family its
attributes say (each family's ONNX record, or refusal naming the attribute), the weights
(constants, folded or fed by the caller, or refusal saying how to feed them), shapes
checked before anything is built."""
import numpy as np

from ..cells import FAMILIES, from_framework
from ..nn import make_layer
from .onnx_graph import attrs


class OnnxImportError(ValueError):
    """The graph holds something rnnlab cannot reproduce exactly."""


def _weights(node, scope, graph, k):
    ins = list(node.input) + [""] * 8
    graph_inputs = {i.name for i in graph.input} if graph is not None else set()
    out = []
    for slot, name in ((1, "W"), (2, "R"), (3, "B")):
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


def _check_node(node, k, a):
    """The node's family and number of directions, or refusal by attribute."""
    op = node.op_type
    for bad in ("clip", "activation_alpha", "activation_beta"):
        if bad in a:
            raise OnnxImportError(f"{op} node {k}: attribute {bad} has no torch equivalent")
    if a.get("input_forget", 0):
        raise OnnxImportError(f"{op} node {k}: input_forget=1 (coupled input and forget "
                              "gates) has no torch equivalent")
    direction = a.get("direction", "forward")
    if direction not in ("forward", "bidirectional", "reverse"):
        raise OnnxImportError(f"{op} node {k}: direction {direction!r} is not one of "
                              "ONNX's forward, reverse, bidirectional")
    D = 2 if direction == "bidirectional" else 1
    if len(node.input) > 7 and node.input[7]:
        raise OnnxImportError(f"{op} node {k}: peepholes (input P) have no torch equivalent")
    fam = _family_for(node, k, {key: v for key, v in a.items()
                                if key not in ("hidden_size", "direction", "layout")}, D)
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
        W, R, B = _weights(node, scope, graph, k)
        G = f.num_gates
        for name, arr, ndim in (("W", W, 3), ("R", R, 3), ("B", B, 2)):
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
        if H == 0 or W.shape[2] == 0:
            raise OnnxImportError(f"{op} node {k}: W {W.shape} / R {R.shape} are empty")
        bias = bias or B is not None
        layers.append((W, R, B))
    G, I = fam.num_gates, layers[0][0].shape[2]
    for k, (W, R, B) in enumerate(layers):
        want = I if k == 0 else D * H
        if R.shape[2] != H or W.shape[2] != want:
            raise OnnxImportError(f"layer {k}: W {W.shape} / R {R.shape} do not chain "
                                  f"(expected input size {want}, hidden size {H})")
    layer = make_layer(fam.kind, I, H, num_layers=len(layers), bias=bias,
                       bidirectional=D == 2, batch_first=bool(batch_first), dtype=dtype,
                       **({"direction": "reverse"} if rev else {}))
    sd = {}
    for k, (W, R, B) in enumerate(layers):
        for d in range(D):
            s = f"_l{k}" + ("_reverse" if d else "")
            sd["weight_ih" + s] = from_framework(W[d], fam, "onnx")
            sd["weight_hh" + s] = from_framework(R[d], fam, "onnx")
            if bias:
                b = np.zeros(2 * G * H, W.dtype) if B is None else B[d]
                sd["bias_ih" + s] = from_framework(b[:G * H], fam, "onnx")
                sd["bias_hh" + s] = from_framework(b[G * H:], fam, "onnx")
    layer.load_state_dict(sd)
    return layer


def _family_for(node, k, a, D):
    """The registered family whose ONNX record says what node ``k`` computes, or an
    OnnxImportError naming the attribute no family has."""
    op = node.op_type
    candidates = [f for f in FAMILIES.values() if f.onnx and f.onnx["op"] == op]
    misses = []
    for fam in candidates:
        want = dict(fam.onnx["attributes"])
        if "activations" in want:
            want["activations"] = want["activations"] * D
        seen = {key: a.get(key, fam.onnx["defaults"].get(key)) for key in want}
        if "activations" in seen and "activations" not in a:
            seen["activations"] = fam.onnx["defaults"]["activations"] * D
        bad = [key for key in want if seen[key] != want[key]]
        if not bad:
            return fam
        misses.append((fam, bad, seen))
    if not misses:
        raise OnnxImportError(f"{op} node {k}: no rnnlab family computes this op")
    fam, bad, seen = min(misses, key=lambda m: len(m[1]))
    key = bad[0]
    if key == "linear_before_reset":
        raise OnnxImportError(f"{op} node {k}: linear_before_reset={seen[key]} applies the "
                              "reset gate before the matmul, which torch's GRU does not "
                              "compute")
    raise OnnxImportError(f"{op} node {k}: {key} {seen[key]} (torch computes "
                          f"{fam.onnx['attributes'][key]}; custom activations have no torch "
                          "equivalent)")
