"""Import ONNX recurrent layers into rnnlab, exactly or not at all.

``import_onnx(path)`` reads a graph whose top level is one RNN / GRU / LSTM node or a
chain of them, with the plumbing exporters write between the graph's inputs, the nodes
and its outputs (Transpose, Squeeze, Reshape, Concat of final states, Slice of state rows,
Cast of lengths, zeros built from Shape), and graphs written by rnnlab.export_onnx
(including LSTM projection, as Scan). Each op on that path is understood (it decides
batch_first and which output is which) or the import is refused naming the node.
Weights may be computed from constants (folded in NumPy, onnx_graph.py) or fed by the
caller (``inputs=``); constant initial states and sequence lengths are kept
(onnx_result.ImportedLayer). ``onnx_layers(path)`` lists every recurrent node, including
those in If / Loop / Scan bodies, and ``import_onnx(path, node=NAME)`` imports one alone.
GRU nodes with linear_before_reset=0 become GRU(reset_after=False), direction "reverse"
a direction="reverse" layer, and every other option of the ops (activations with their
alpha / beta, clip, input_forget, peepholes) the variant layer computing it
(cells/variants.py). Anything rnnlab cannot compute is refused naming it (an activation
without a value it needs, an op on the data path, ...).
"""
import json

import numpy as np

from . import limits
from .onnx_export import require
from .onnx_graph import RECURRENT, GraphError, Scope, attrs, describe, walk
from .onnx_nodes import OnnxImportError, build
from .onnx_paths import PathError, Paths
from .onnx_result import GraphMap, ImportedLayer
from .onnx_scan import ScanGraphError, from_scans

HINT = ("rnnlab.onnx_layers(path) lists the graph's recurrent nodes; import_onnx(path, "
        "node=NAME) imports one of them alone")


def import_onnx(path_or_model, *, batch_first=None, dtype=np.float32, inputs=None,
                node=None):
    """An rnnlab RNN / GRU / LSTM computing what the ONNX graph computes (an ImportedLayer
    when the graph also feeds it constant initial states or lengths).

    batch_first: the layout the returned layer takes (default: the graph's own).
    inputs: {graph input name: array} for weights the graph takes as inputs (ONNX's
    conformance cases do). node: import only the recurrent node of this name (see
    onnx_layers), wherever it sits. Anything it cannot reproduce, or a damaged graph, is an
    OnnxImportError (a ValueError) naming the file and the node."""
    return read_graph(path_or_model, batch_first=batch_first, dtype=dtype, inputs=inputs,
                      node=node)[0]


def read_graph(path_or_model, *, batch_first=None, dtype=np.float32, inputs=None, node=None):
    """(import_onnx's result, GraphMap): ``graph.run(layer, feeds)`` computes the graph's
    own outputs from its own feeds (None for node=)."""
    onnx = require("onnx", "onnx")
    return _guard(path_or_model, lambda: _import(onnx, path_or_model, batch_first, dtype,
                                                 inputs, node), inputs)


def onnx_layers(path_or_model, *, inputs=None):
    """Every RNN / GRU / LSTM node of the graph, top level and inside If / Loop / Scan
    bodies: a list of dicts with name, op, path (the subgraphs it sits in), hidden_size,
    input_size, direction, attributes, whether its weights are constant, and which of its
    inputs are."""
    onnx = require("onnx", "onnx")

    def run():
        model = _load(onnx, path_or_model)
        given = _given(model.graph, inputs)
        return [describe(n, scope, path) for path, n, scope in walk(model.graph, given=given)
                if n.op_type in RECURRENT]
    return _guard(path_or_model, run, inputs)


def _guard(path_or_model, run, inputs):
    if inputs is not None and not isinstance(inputs, dict):
        raise TypeError(f"inputs must be a dict of graph input name -> array, got "
                        f"{type(inputs).__name__}")
    where = "the model" if hasattr(path_or_model, "graph") else str(path_or_model)
    try:
        return run()
    except (OnnxImportError, GraphError, PathError, ScanGraphError) as exc:
        if where in str(exc):
            raise OnnxImportError(str(exc)) from None
        raise OnnxImportError(f"{where}: {exc}") from None
    except limits.LimitError as exc:
        raise limits.LimitError(f"{where}: {exc}") from None
    except (OSError, ImportError):
        raise
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, StopIteration,
            RecursionError, MemoryError, OverflowError) as exc:
        raise OnnxImportError(f"{where}: not a graph rnnlab can read ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None


def _load(onnx, src):
    if hasattr(src, "graph"):
        return src
    try:
        return onnx.load(str(src))
    except OSError:
        raise
    except Exception as exc:                     # protobuf's DecodeError and the like
        raise OnnxImportError(f"{src}: not a readable ONNX model ({exc})") from None


def _given(graph, inputs):
    if inputs is None:
        return {}
    names = [i.name for i in graph.input]
    out = {}
    for name, value in inputs.items():
        if name not in names:
            raise OnnxImportError(f"inputs: {name!r} is not an input of the graph (its inputs: "
                                  f"{names})")
        a = np.asarray(value)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"inputs[{name!r}] must be a numeric array, got {a.dtype}")
        out[name] = a
    return out


def _import(onnx, src, batch_first, dtype, inputs, node):
    model = _load(onnx, src)
    graph = model.graph
    given = _given(graph, inputs)
    if node is not None:
        return _one_node(graph, node, given, batch_first, dtype)
    scope = Scope(graph, given=given)
    meta = {p.key: p.value for p in model.metadata_props}.get("rnnlab")
    meta = json.loads(meta) if meta else None
    if meta is not None and not isinstance(meta, dict):
        raise OnnxImportError("its rnnlab metadata is not a JSON object")
    if any(n.op_type == "Scan" for n in graph.node) and meta is not None:
        return from_scans([n for n in graph.node if n.op_type == "Scan"], meta, scope,
                          batch_first, dtype), None
    if not any(n.op_type in RECURRENT for n in graph.node):
        nested = [f"{p}{n.op_type} {n.name or n.output[0]!r}"
                  for p, n, _ in walk(graph, given=given) if n.op_type in RECURRENT]
        if nested:
            where = ", ".join(nested)[:300]
            raise OnnxImportError(f"its recurrent nodes sit inside subgraphs ({where}), not "
                                  f"at the top level; {HINT}")
        ops = sorted({n.op_type for n in graph.node})
        hint = (" (torch exports RNNCell / GRUCell / LSTMCell as Gemm and activation ops: "
                "load the cell's state_dict instead, rnnlab.from_state_dict)"
                if "Gemm" in ops else "")
        raise OnnxImportError(f"the graph holds no RNN, GRU or LSTM node (its ops: "
                              f"{', '.join(ops)[:200]}){hint}")
    try:
        paths = Paths(graph, scope)
        derived = paths.batch_first(_seq_output_labels(paths))
    except PathError as exc:
        raise OnnxImportError(f"{exc}; {HINT}") from None
    rec = paths.layers
    layer = build(rec, scope, graph, derived if batch_first is None else batch_first, dtype)
    carried, states = _states(paths, layer)
    lens = paths.lengths_in
    if lens is not None and lens[0] == "const":
        carried["lengths"] = _lengths(lens[1], rec[0])
    D = 2 if layer.bidirectional else 1
    gmap = GraphMap(paths.x_input, states, lens[1] if lens and lens[0] == "lens" else None,
                    _outputs(paths, len(rec)), D)
    if derived != layer.batch_first:
        gmap = None                              # the caller asked for another layout
    return (ImportedLayer(layer, **carried) if carried else layer), gmap


def _seq_output_labels(paths):
    seqs = [k for _, k in paths.outputs if k is not None and k[0] == "seq"
            and k[2] == ("layer", len(paths.layers) - 1) and "F" in _merged(k[1])]
    return seqs[0][1] if seqs else None


def _merged(labels):
    from .onnx_paths import _features
    return _features(list(labels))


def _outputs(paths, L):
    out = {}
    for name, k in paths.outputs:
        if k is None or k[0] in ("const", "in", "shape", "zero", "lens", "rows"):
            raise OnnxImportError(f"graph output {name!r} is not computed by the recurrent "
                                  "nodes; import_onnx reproduces graphs whose outputs are "
                                  "their results")
        if k[0] == "seq":
            if k[2] != ("layer", L - 1):
                raise OnnxImportError(f"graph output {name!r} is the sequence output of "
                                      f"recurrent node {k[2][1]}, not of the last one; the "
                                      f"imported layer returns only the last's; {HINT}")
            labels = _merged(k[1])
            if sorted(labels) not in (sorted(["T", "N", "F"]), sorted(["T", "N", "D1", "H"]),
                                      sorted(["T", "N", "D2", "H"])):
                raise OnnxImportError(f"graph output {name!r} has axes {labels}")
            out[name] = ("seq", tuple(labels))
        elif k[0] == "yh":
            out[name] = ("part", k[1], k[2], k[3])
        elif k[0] == "states":
            if k[2] != L:
                raise OnnxImportError(f"graph output {name!r} concatenates the final states "
                                      f"of {k[2]} of the {L} recurrent nodes")
            out[name] = ("all", k[1])
        else:
            raise OnnxImportError(f"graph output {name!r} is not one rnnlab reproduces")
    return out


def _lengths(v, node):
    v = np.asarray(v)
    if v.ndim != 1 or v.dtype.kind not in "iu" or (v < 1).any():
        raise OnnxImportError(f"{node.op_type} {node.name!r}: its constant sequence_lens "
                              f"{v.tolist()[:8]} are not positive integers (one per sequence)")
    return v.astype(np.int64)


def _states(paths, layer):
    """(constants to carry, graph inputs feeding hx by role)."""
    L, D = layer.num_layers, 2 if layer.bidirectional else 1
    carried, inputs = {}, {}
    for role, per_layer in paths.state_in.items():
        kinds = {v[0] for v in per_layer.values()}
        if kinds == {"const"}:
            parts = {k: np.asarray(v[1]) for k, v in per_layer.items()}
            shapes = {p.shape for p in parts.values()}
            width = layer.hidden_size if role == "c0" else (layer.proj_size or
                                                            layer.hidden_size)
            if len(shapes) != 1 or any(len(s) != 3 or s[0] != D or s[2] != width
                                       for s in shapes):
                raise OnnxImportError(f"constant initial {role[0]} of shape(s) "
                                      f"{sorted(shapes)} where ({D}, batch, {width}) belongs")
            n = shapes.pop()[1]
            full = np.zeros((L * D, n, width), layer.dtype)
            for k, p in parts.items():
                full[k * D:(k + 1) * D] = p
            carried[role] = full
        elif kinds == {"in"} and L == 1:
            inputs[role] = per_layer[0][1]
        elif kinds == {"rows"} and len(per_layer) == L and len({v[1] for v in
                                                                per_layer.values()}) == 1 and \
                all(v[2:4] == (k * D, (k + 1) * D) for k, v in per_layer.items()):
            inputs[role] = per_layer[0][1]
        else:
            raise OnnxImportError(f"the recurrent nodes take their initial {role[0]} in a way "
                                  "rnnlab's single hx does not reproduce (mixed constants "
                                  "and inputs, or separate inputs per node)")
    return carried, inputs


def _one_node(graph, name, given, batch_first, dtype):
    found = [(p, n, s) for p, n, s in walk(graph, given=given)
             if n.op_type in RECURRENT and name in (n.name, n.output[0])]
    if len(found) != 1:
        names = [n.name or n.output[0] for _, n, _ in walk(graph, given=given)
                 if n.op_type in RECURRENT]
        raise OnnxImportError(f"node={name!r}: " + ("no recurrent node of that name" if not
                                                   found else "several nodes have that name")
                              + f" (the graph's recurrent nodes: {names})")
    path, node, scope = found[0]
    a = attrs(node)
    layout = a.get("layout", 0)
    layer = build([node], scope, graph if not path else None,
                   bool(layout) if batch_first is None else batch_first, dtype)
    ins = list(node.input) + [""] * 8
    carried = {}
    D = 2 if layer.bidirectional else 1
    for slot, role in ((5, "h0"), (6, "c0")):
        v = scope.get(ins[slot]) if ins[slot] else None
        if v is not None:
            v = np.asarray(v).transpose(1, 0, 2) if layout and v.ndim == 3 else np.asarray(v)
            if v.ndim != 3 or v.shape[0] != D:
                raise OnnxImportError(f"node {name!r}: its constant initial {role[0]} has "
                                      f"shape {v.shape}")
            if np.any(v):
                carried[role] = v.astype(layer.dtype)
    lens = scope.get(ins[4]) if ins[4] else None
    if lens is not None:
        carried["lengths"] = _lengths(lens, node)
    return (ImportedLayer(layer, **carried) if carried else layer), None
