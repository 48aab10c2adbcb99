"""Export an rnnlab layer to ONNX, exactly (checked by running it in onnxruntime).

Graph inputs: ``input`` (L, N, H_in), or (N, L, H_in) with batch_first, L and N dynamic;
with states=True ``h0`` (num_layers * D, N, H_out) and ``c0`` (LSTM, (num_layers * D, N,
H)), else the states start at zero; with lengths=True ``lengths`` (N,) int64 with torch's
packed semantics. Outputs ``output``, ``h_n`` (and ``c_n``), shaped as the rnnlab layer's.
The graph computes in float32.

Each layer is one ONNX RNN / GRU (linear_before_reset=1 for torch's variant, 0 for
GRU(reset_after=False)) / LSTM node,
weights permuted to ONNX's gate order (the families' ``gate_order["onnx"]``) and the two
biases concatenated. ONNX has no projection: an LSTM with proj_size is exported as a Scan
over time whose body is the LSTM step written with MatMul / Sigmoid / Tanh; with lengths
the body keeps the state unchanged past each length (Where), which gives torch's packed
semantics for both directions. The model carries the layer's configuration in its
metadata ("rnnlab"), so import_onnx rebuilds any graph written here.
"""
import json

import numpy as np

from ..cells import to_framework
from .atomic import replacing
from ..nn import RNNBase

def require(name, extra):
    try:
        return __import__(name)
    except ImportError:
        raise ImportError(f"this needs {name}: pip install '{extra}' (or "
                          f"pip install 'rnnlab[onnx]')") from None


class _Graph:
    def __init__(self, onnx):
        self.onnx, self.h = onnx, onnx.helper
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, base, value, dtype=np.float32):
        n = self.name(base)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), n))
        return n

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op_type, inputs, outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def save(self, path, name, inputs, outputs, opset, meta):
        """Check the graph, write it atomically, return the ModelProto."""
        onnx = self.onnx
        graph = self.h.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = self.h.make_model(graph, opset_imports=[self.h.make_opsetid("", opset)],
                                  producer_name="rnnlab")
        model.ir_version = min(model.ir_version, 9)
        self.h.set_model_props(model, {"rnnlab": json.dumps(meta)})
        onnx.checker.check_model(model)
        with replacing(path, ".onnx") as tmp:
            onnx.save(model, tmp)
        return model


MIN_OPSET = 13      # Unsqueeze's axes and Split's sizes as inputs


def check_opset(onnx, opset):
    """The opset asked for, or a ValueError naming the range export_onnx writes."""
    top = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= top:
        raise ValueError(f"opset must be an integer from {MIN_OPSET} (the minimum rnnlab's "
                         f"graphs need) to {top} (this onnx package's newest), got {opset!r}")
    return opset


def export_onnx(module, path, *, lengths=False, states=False, opset=17):
    """Write ``module`` to ``path`` as ONNX: a recurrent layer (RNN, GRU, LSTM; proj_size
    included) or a whole SequenceModel (model_export.py).

    A layer's graph takes ``input`` (L, N, H_in), or (N, L, H_in) with batch_first, L and N
    dynamic; with ``lengths=True`` also ``lengths`` (N,), int64, with torch's packed
    semantics; with ``states=True`` also ``h0`` (num_layers * D, N, H_out) and LSTM's
    ``c0`` (num_layers * D, N, H) — without them the states start at zero, as the layer's
    do. Outputs ``output``, ``h_n`` (and ``c_n``), shaped as the layer's. float32.
    Written atomically; opset from MIN_OPSET up."""
    onnx = require("onnx", "onnx")
    check_opset(onnx, opset)
    from ..nn import SequenceModel
    if isinstance(module, SequenceModel):
        from .model_export import export_model
        return export_model(onnx, module, path, lengths=lengths, opset=opset)
    if not isinstance(module, RNNBase) or module.family.onnx is None:
        raise TypeError(f"export_onnx takes an rnnlab RNN, GRU or LSTM layer or a "
                        f"SequenceModel, got {type(module).__name__} (cells, heads and other "
                        "families have no ONNX equivalent here)")
    fam = module.family
    if fam.variant is not None and module.proj_size:
        raise ValueError("export_onnx: an LSTM with proj_size is written as a Scan of the "
                         "standard LSTM equations, which cannot carry "
                         f"{', '.join(sorted(fam.options))}; ONNX's LSTM op has no projection")
    L, D, H = module.num_layers, module.num_directions, module.hidden_size
    H_out, I = module.proj_size or H, module.input_size
    g = _Graph(onnx)
    TP = onnx.TensorProto
    vi = onnx.helper.make_tensor_value_info
    inputs = [vi("input", TP.FLOAT, ["N", "L", I] if module.batch_first else ["L", "N", I])]
    if states:
        inputs.append(vi("h0", TP.FLOAT, [L * D, "N", H_out]))
        if fam.has_cell_state:
            inputs.append(vi("c0", TP.FLOAT, [L * D, "N", H]))
    if lengths:
        inputs.append(vi("lengths", TP.INT64, ["N"]))
    x = g.op("Transpose", ["input"], perm=[1, 0, 2]) if module.batch_first else "input"
    x, h_parts, c_parts = layer_nodes(g, module, x, "lengths" if lengths else None,
                                      ("h0", "c0") if states else None)
    out = g.op("Transpose", [x], perm=[1, 0, 2]) if module.batch_first else x
    g.nodes.append(onnx.helper.make_node("Identity", [out], ["output"]))
    g.nodes.append(onnx.helper.make_node("Concat", h_parts, ["h_n"], axis=0))
    outputs = [vi("output", TP.FLOAT, ["N", "L", D * H_out] if module.batch_first
                  else ["L", "N", D * H_out]), vi("h_n", TP.FLOAT, [L * D, "N", H_out])]
    if fam.has_cell_state:
        g.nodes.append(onnx.helper.make_node("Concat", c_parts, ["c_n"], axis=0))
        outputs.append(vi("c_n", TP.FLOAT, [L * D, "N", H]))
    cfg = dict(module.config(), lengths=bool(lengths), states=bool(states))
    return g.save(path, f"rnnlab_{type(module).__name__}", inputs, outputs, opset,
                  {"class": type(module).__name__, "config": cfg})


def layer_nodes(g, module, x, lengths, states):
    """The nodes of every layer of ``module`` reading ``x`` (time-major): ``lengths`` the
    name of an int64 (N,) input or None; ``states`` the names of h0 (and c0) inputs, or
    None (zeros). Returns (output, [h_n rows per layer], [c_n rows per layer])."""
    fam = module.family
    TP = g.onnx.TensorProto
    L, D, H = module.num_layers, module.num_directions, module.hidden_size
    H_out = module.proj_size or H
    seq_lens = g.op("Cast", [lengths], to=TP.INT32) if lengths else ""
    mask = _mask(g, x, lengths) if lengths and module.proj_size else None
    h_parts, c_parts = [], []
    for k in range(L):
        if states is not None:
            rows = lambda name: g.op("Slice", [name, g.const("s", [k * D], np.int64),  # noqa
                                               g.const("e", [(k + 1) * D], np.int64),
                                               g.const("a", [0], np.int64)])
            h0k = rows(states[0])
            c0k = rows(states[1]) if fam.has_cell_state else None
        elif module.proj_size:                    # Scan needs its states: zeros
            h0k, c0k = _zeros(g, x, D, H_out), _zeros(g, x, D, H)
        else:                                     # the ops' own zeros
            h0k, c0k = "", ("" if fam.has_cell_state else None)
        ws = module.weights()[k]
        if module.proj_size:
            x, hk, ck = _scan_layer(g, x, ws, h0k, c0k, mask, D, H, TP,
                                    module.direction == "reverse")
        else:
            x, hk, ck = _native_layer(g, fam, module, x, ws, h0k, c0k, seq_lens, D, H)
        h_parts.append(hk)
        c_parts.append(ck)
    return x, h_parts, c_parts


def _zeros(g, x, D, width):
    """(D, N, width) zeros, N taken from x (T, N, F)."""
    n = g.op("Gather", [g.op("Shape", [x]), g.const("i1", [1], np.int64)], axis=0)
    shape = g.op("Concat", [g.const("d", [D], np.int64), n, g.const("w", [width], np.int64)],
                 axis=0)
    return g.op("ConstantOfShape", [shape],
                value=g.onnx.numpy_helper.from_array(np.zeros(1, np.float32)))


def _native_layer(g, fam, module, x, ws, h0k, c0k, seq_lens, D, H):
    """One ONNX RNN/GRU/LSTM node for layer k (both directions)."""
    W = np.stack([to_framework(w.w_ih, fam, "onnx") for w in ws])
    R = np.stack([to_framework(w.w_hh, fam, "onnx") for w in ws])
    ins = [x, g.const("W", W), g.const("R", R)]
    if module.bias:
        ins.append(g.const("B", np.stack([np.concatenate([to_framework(w.b_ih, fam, "onnx"),
                                                          to_framework(w.b_hh, fam, "onnx")])
                                          for w in ws])))
    else:
        ins.append("")
    ins += [seq_lens, h0k] + ([c0k] if c0k is not None else [])
    if fam.onnx.get("peepholes"):                           # P: p_i | p_o | p_f per direction
        ins.append(g.const("P", np.stack([w.w_p for w in ws])))
    attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else module.direction)
    repeat = 1 if fam.onnx.get("per_direction") else D      # one list per direction
    for key, value in fam.onnx["attributes"].items():       # what says this family
        attrs[key] = value * repeat if key.startswith("activation") else value
    n_out = 3 if c0k is not None else 2
    outs = g.op(fam.onnx["op"], ins, n_out=n_out, **attrs)
    y = g.op("Transpose", [outs[0]], perm=[0, 2, 1, 3])            # (T, N, D, H)
    y = g.op("Reshape", [y, g.const("shape", [0, 0, -1], np.int64)])  # (T, N, D*H)
    return y, outs[1], (outs[2] if c0k is not None else None)


def _mask(g, x, lengths):
    """(T, N, 1) bool: step t < lengths[n]."""
    shape = g.op("Shape", [x])
    T = g.op("Gather", [shape, g.const("i0", 0, np.int64)], axis=0)
    t = g.op("Range", [g.const("z", 0, np.int64), T, g.const("one", 1, np.int64)])
    t = g.op("Unsqueeze", [t, g.const("ax", [1], np.int64)])            # (T, 1)
    m = g.op("Less", [t, g.op("Unsqueeze", [lengths, g.const("ax0", [0], np.int64)])])
    return g.op("Unsqueeze", [m, g.const("ax2", [2], np.int64)])        # (T, N, 1)


def _scan_layer(g, x, ws, h0k, c0k, mask, D, H, TP, reverse=False):
    """LSTM with projection: one Scan per direction (reverse: the one runs backwards)."""
    hp = g.onnx.helper
    ys, hs, cs = [], [], []
    H_out = ws[0].w_hr.shape[0]
    for d, w in enumerate(ws):
        pick = lambda t: g.op("Gather", [t, g.const("d", d, np.int64)], axis=0)  # noqa: E731
        h0, c0 = pick(h0k), pick(c0k)
        wi, wh, wr = (g.const(n, a.T) for n, a in (("Wi", w.w_ih), ("Wh", w.w_hh),
                                                    ("Wr", w.w_hr)))
        b = g.const("b", (w.b_ih + w.b_hh) if w.b_ih is not None else np.zeros(4 * H))
        body, n = [], [0]

        def op(op_type, ins, **attrs):
            n[0] += 1
            out = f"b{d}_{op_type.lower()}_{n[0]}"
            body.append(hp.make_node(op_type, ins, [out], **attrs))
            return out
        a = op("Add", [op("Add", [op("MatMul", ["x_t", wi]), op("MatMul", ["h", wh])]), b])
        parts = [f"b{d}_gate_{j}" for j in range(4)]
        body.append(hp.make_node("Split", [a, g.const("split", [H] * 4, np.int64)], parts,
                                 axis=1))
        i, f = op("Sigmoid", [parts[0]]), op("Sigmoid", [parts[1]])
        gg, o = op("Tanh", [parts[2]]), op("Sigmoid", [parts[3]])
        c_new = op("Add", [op("Mul", [f, "c"]), op("Mul", [i, gg])])
        h_new = op("MatMul", [op("Mul", [o, op("Tanh", [c_new])]), wr])
        scan_ins = [hp.make_tensor_value_info("h", TP.FLOAT, ["N", H_out]),
                    hp.make_tensor_value_info("c", TP.FLOAT, ["N", H]),
                    hp.make_tensor_value_info("x_t", TP.FLOAT, ["N", None])]
        if mask is not None:
            scan_ins.append(hp.make_tensor_value_info("m_t", TP.BOOL, ["N", 1]))
            zero = g.const("zero", 0.0)
            y = op("Where", ["m_t", h_new, zero])
            h_new, c_new = op("Where", ["m_t", h_new, "h"]), op("Where", ["m_t", c_new, "c"])
        else:
            y = op("Identity", [h_new])
        h_out, c_out, y_out = op("Identity", [h_new]), op("Identity", [c_new]), y
        body_graph = hp.make_graph(
            body, f"lstm_proj_step_{d}", scan_ins,
            [hp.make_tensor_value_info(h_out, TP.FLOAT, ["N", H_out]),
             hp.make_tensor_value_info(c_out, TP.FLOAT, ["N", H]),
             hp.make_tensor_value_info(y_out, TP.FLOAT, ["N", H_out])])
        n_scan = 2 if mask is not None else 1
        outs = g.op("Scan", [h0, c0, x] + ([mask] if mask is not None else []), n_out=3,
                    body=body_graph, num_scan_inputs=n_scan,
                    scan_input_directions=[d or int(reverse)] * n_scan,
                    scan_output_directions=[d or int(reverse)])
        hs.append(g.op("Unsqueeze", [outs[0], g.const("ax", [0], np.int64)]))
        cs.append(g.op("Unsqueeze", [outs[1], g.const("ax", [0], np.int64)]))
        ys.append(outs[2])
    y = ys[0] if D == 1 else g.op("Concat", ys, axis=2)
    h = hs[0] if D == 1 else g.op("Concat", hs, axis=0)
    c = cs[0] if D == 1 else g.op("Concat", cs, axis=0)
    return y, h, c
