"""Import ONNX recurrent layers into rnnlab, exactly or not at all.

Reads graphs of ONNX RNN / GRU / LSTM nodes — one node, or one per layer chained through
Transpose / Reshape / Squeeze / Concat / Slice plumbing as torch's and tf2onnx's exporters
write them — and graphs written by rnnlab.export_onnx (including LSTM projection, as a
Scan). Anything torch's layers cannot compute is refused with an error naming it: GRU
linear_before_reset=0, activations other than the defaults (RNN: Tanh or Relu), clip,
input_forget, peepholes (LSTM input P), direction "reverse", and any other op between the
layers.
"""
import json

import numpy as np

from ..cells import FAMILIES, from_framework
from ..nn import make_layer
from ..nn.kinds import LAYERS
from ..nn.module import parameter_shapes
from ..nn.state_dict import check_tensors
from .onnx_export import require

PLUMBING = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Concat", "Slice", "Gather",
            "Shape", "Constant", "ConstantOfShape", "Cast", "Identity", "Split", "Expand",
            "Range", "Less", "Where"}


class OnnxImportError(ValueError):
    """The graph holds something rnnlab cannot reproduce exactly."""


def import_onnx(path_or_model, *, batch_first=None, dtype=np.float32):
    """An rnnlab RNN / GRU / LSTM computing what the ONNX graph computes.
    batch_first: override (default: the graph's own, from rnnlab metadata or the nodes'
    layout attribute). Anything it cannot reproduce, or a damaged graph, is an
    OnnxImportError (a ValueError) naming the file and the node."""
    onnx = require("onnx", "onnx")
    where = "the model" if hasattr(path_or_model, "graph") else str(path_or_model)
    try:
        return _import(onnx, path_or_model, batch_first, dtype)
    except OnnxImportError as exc:
        if where in str(exc):
            raise
        raise OnnxImportError(f"{where}: {exc}") from None
    except (OSError, ImportError):
        raise
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, StopIteration,
            RecursionError, MemoryError, OverflowError) as exc:
        raise OnnxImportError(f"{where}: not a graph rnnlab can read ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None


def _import(onnx, path_or_model, batch_first, dtype):
    from onnx import numpy_helper
    if hasattr(path_or_model, "graph"):
        model = path_or_model
    else:
        try:
            model = onnx.load(str(path_or_model))
        except OSError:
            raise
        except Exception as exc:                     # protobuf's DecodeError and the like
            raise OnnxImportError(f"{path_or_model}: not a readable ONNX model ({exc})") \
                from None
    graph = model.graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    values[n.output[0]] = numpy_helper.to_array(a.t)
    meta = {p.key: p.value for p in model.metadata_props}.get("rnnlab")
    meta = json.loads(meta) if meta else None
    if meta is not None and not isinstance(meta, dict):
        raise OnnxImportError("its rnnlab metadata is not a JSON object")
    ops = {f.onnx["op"] for f in FAMILIES.values() if f.onnx}
    rec = [n for n in graph.node if n.op_type in ops]
    scans = [n for n in graph.node if n.op_type == "Scan"]
    other = sorted({n.op_type for n in graph.node} - PLUMBING - ops - {"Scan"})
    if other:
        raise OnnxImportError(f"the graph holds {', '.join(other)} besides the recurrent "
                              "layers; import_onnx reads graphs of recurrent layers only")
    if scans:
        if meta is None or not rec == []:
            raise OnnxImportError("the graph uses Scan: only the Scan graphs rnnlab's "
                                  "export_onnx writes (LSTM with proj_size) are read")
        return _from_scans(scans, meta, values, batch_first, dtype)
    if not rec:
        raise OnnxImportError("the graph holds no RNN, GRU or LSTM node")
    return _from_nodes(graph, rec, values, meta, batch_first, dtype)


def _attrs(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _check_chain(graph, rec):
    """Layer k must read layer k-1's Y (through plumbing only); layer 0 a graph input."""
    producer = {o: n for n in graph.node for o in n.output}
    inputs = {i.name for i in graph.input}
    for k, node in enumerate(rec):
        want = {rec[k - 1].output[0]} if k else inputs
        seen, stack, ok = set(), [node.input[0]], False
        while stack:
            name = stack.pop()
            if name in want:
                ok = True
                break
            if name in seen or name not in producer or producer[name] in rec:
                continue
            seen.add(name)
            stack.extend(i for i in producer[name].input if i)
        if not ok:
            raise OnnxImportError(f"{node.op_type} node {k} does not read "
                                  + ("the previous layer's output" if k else "a graph input"))


def _family_for(node, k, a, D):
    """The registered family whose ONNX record says what node ``k`` computes, or an
    OnnxImportError naming the attribute no family has."""
    op = node.op_type
    got = {key: (v.decode() if isinstance(v, bytes) else v) for key, v in a.items()}
    if "activations" in got:
        got["activations"] = [s.decode() if isinstance(s, bytes) else s
                               for s in got["activations"]]
    candidates = [f for f in FAMILIES.values() if f.onnx and f.onnx["op"] == op]
    misses = []
    for fam in candidates:
        want = dict(fam.onnx["attributes"])
        if "activations" in want:
            want["activations"] = want["activations"] * D
        seen = {key: got.get(key, fam.onnx["defaults"].get(key)) for key in want}
        if "activations" in seen and "activations" not in got:
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


def _from_nodes(graph, rec, values, meta, batch_first, dtype):
    op = rec[0].op_type
    if any(n.op_type != op for n in rec):
        raise OnnxImportError(f"mixed recurrent ops {[n.op_type for n in rec]}")
    _check_chain(graph, rec)
    layers, fam, D, H, bias = [], None, None, None, False
    for k, node in enumerate(rec):
        a = _attrs(node)
        for bad in ("clip", "activation_alpha", "activation_beta"):
            if bad in a:
                raise OnnxImportError(f"{op} node {k}: attribute {bad} has no torch equivalent")
        if a.get("input_forget", 0):
            raise OnnxImportError(f"{op} node {k}: input_forget=1 (coupled input and forget "
                                  "gates) has no torch equivalent")
        direction = a.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction not in ("forward", "bidirectional"):
            raise OnnxImportError(f"{op} node {k}: direction {direction!r} has no torch "
                                  "equivalent (torch's reverse runs only beside a forward)")
        d = 2 if direction == "bidirectional" else 1
        if len(node.input) > 7 and node.input[7]:
            raise OnnxImportError(f"{op} node {k}: peepholes (input P) have no torch "
                                  "equivalent")
        f = _family_for(node, k, {key: v for key, v in a.items()
                                  if key not in ("hidden_size", "direction", "layout")}, d)
        if fam is not None and (f, d) != (fam, D):
            raise OnnxImportError("the layers differ in activation or direction")
        fam, D = f, d
        try:
            W, R = values[node.input[1]], values[node.input[2]]
        except (KeyError, IndexError):
            raise OnnxImportError(f"{op} node {k}: W and R must be constant "
                                  "initializers") from None
        B = values.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        if len(node.input) > 3 and node.input[3] and B is None:
            raise OnnxImportError(f"{op} node {k}: B must be a constant initializer")
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
                "direction(s) and " + f"{G} gate(s)")
        if H == 0 or W.shape[2] == 0:
            raise OnnxImportError(f"{op} node {k}: W {W.shape} / R {R.shape} are empty")
        bias = bias or B is not None
        layers.append((W, R, B))
    G = fam.num_gates
    I = layers[0][0].shape[2]
    if batch_first is None:
        batch_first = bool((meta or {}).get("config", {}).get("batch_first",
                                                              _attrs(rec[0]).get("layout", 0)))
    kw = dict(num_layers=len(layers), bias=bias, bidirectional=D == 2,
              batch_first=batch_first, dtype=dtype)
    for k, (W, R, B) in enumerate(layers):
        want = I if k == 0 else D * H
        if R.shape[2] != H or W.shape[2] != want:
            raise OnnxImportError(f"layer {k}: W {W.shape} / R {R.shape} do not chain "
                                  f"(expected input size {want}, hidden size {H})")
    layer = make_layer(fam.kind, I, H, **kw)
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


def _from_scans(scans, meta, values, batch_first, dtype):
    """rnnlab's own LSTM-with-projection graphs: weights from the Scan bodies' outer
    initializers (Wi, Wh, b = b_ih + b_hh, Wr), checked against the metadata's
    configuration before the layer is built."""
    cfg = dict(meta.get("config") or {})
    for key in ("lengths", "states", "dtype"):              # the graph's, not the layer's
        cfg.pop(key, None)
    cls = LAYERS.get(meta.get("class"))
    if cls is None or not cfg.get("proj_size"):
        raise OnnxImportError("unexpected Scan graph metadata")
    if batch_first is not None:
        cfg["batch_first"] = batch_first
    shapes = parameter_shapes(cls, **cfg, dtype=dtype)
    D = 2 if cfg.get("bidirectional") else 1
    if len(scans) != cfg.get("num_layers", 1) * D:
        raise OnnxImportError(f"expected {cfg.get('num_layers', 1) * D} Scan nodes, found "
                              f"{len(scans)}")
    sd = {}
    for j, node in enumerate(scans):
        body = [a.g for a in node.attribute if a.name == "body"]
        used = [i for n in (body[0].node if body else ()) for i in n.input if i in values]
        pick = {p: [v for v in used if v.startswith(p + "_")] for p in ("Wi", "Wh", "Wr", "b")}
        if not all(pick.values()):
            missing = [p for p, v in pick.items() if not v]
            raise OnnxImportError(f"Scan node {j}: its body does not read {missing}: not a "
                                  "graph rnnlab's export_onnx wrote")
        pick = {p: values[v[0]] for p, v in pick.items()}
        if any(pick[p].ndim != 2 for p in ("Wi", "Wh", "Wr")) or pick["b"].ndim != 1:
            raise OnnxImportError(f"Scan node {j}: its weights are not matrices")
        k, d = divmod(j, D)
        s = f"_l{k}" + ("_reverse" if d else "")
        sd["weight_ih" + s] = pick["Wi"].T
        sd["weight_hh" + s] = pick["Wh"].T
        sd["weight_hr" + s] = pick["Wr"].T
        if cfg.get("bias", True):
            sd["bias_ih" + s] = pick["b"]
            sd["bias_hh" + s] = np.zeros_like(pick["b"])
    problems = check_tensors(shapes, sd)[2]
    if problems:
        raise OnnxImportError("the Scan graph's weights do not fit its metadata: "
                              + "; ".join(problems)[:300])
    layer = cls(**cfg, dtype=dtype)
    layer.load_state_dict(sd)
    return layer
