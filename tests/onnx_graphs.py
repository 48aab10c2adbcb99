"""Small ONNX graphs of recurrent nodes built the ways exporters build them — and a few ways
they must not be read — for tests/test_onnx_import.py.

``graph(spec)`` returns (model, feeds for onnxruntime, inputs= for import_onnx, whether
rnnlab must accept it). spec keys: op, L (nodes chained), D (1 | 2), layout ("time" |
"transpose": batch-major input transposed in and out | "layout1": the nodes' layout=1),
out ("raw": the last Y as it is | "merged": (T, N, D*H)), final ("h" | "all" | None: which
final states are outputs), states ("none" | "zeros" | "const" | "input"), lens ("none" |
"const" | "input"), weights ("init" | "folded" | "fed"), attrs (extra node attributes),
fault (None | "slice_x" | "scale_y" | "shift_h0" | "relu_between").
"""
import numpy as np

N, T, I, H = 2, 4, 3, 5
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
FAULTS = (None, "slice_x", "scale_y", "shift_h0", "relu_between")


def graph(spec, seed=0):
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(seed)
    op, L, D = spec["op"], spec["L"], spec["D"]
    layout1 = spec["layout"] == "layout1"
    G = GATES[op]
    nodes, inits, ins, feeds, given = [], [], [], {}, {}
    counter = [0]

    def name(base):
        counter[0] += 1
        return f"{base}_{counter[0]}"

    def const(value, base="c"):
        n = name(base)
        inits.append(numpy_helper.from_array(np.asarray(value), n))
        return n

    def node(op_type, inputs, n_out=1, **attrs):
        outs = [name(op_type) for _ in range(n_out)]
        nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0], **attrs))
        return outs if n_out > 1 else outs[0]

    def graph_input(n, value, feed=True):
        ins.append(helper.make_tensor_value_info(
            n, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
        if feed:
            feeds[n] = value
        return n

    def weight(value, base):
        if spec["weights"] == "init":
            return const(value, base)
        if spec["weights"] == "fed":
            n = graph_input(name(base), value, feed=True)
            given[n] = value
            return n
        half = value.shape[1] // 2                    # Concat of two Constant nodes
        parts = [value[:, :half], value[:, half:]]
        consts = [node("Constant", [], value=numpy_helper.from_array(p)) for p in parts]
        return node("Concat", consts, axis=1)

    xin = rng.standard_normal((N, T, I) if spec["layout"] != "time" else (T, N, I))
    x = graph_input("x", xin.astype(np.float32))
    if spec["layout"] == "transpose":
        x = node("Transpose", [x], perm=[1, 0, 2])
    if spec["fault"] == "slice_x":
        x = node("Slice", [x, const(np.array([1])), const(np.array([T])), const(np.array([0]))])
    lens = ""
    if spec["lens"] == "const":
        lens = const(rng.integers(1, T + 1, N).astype(np.int32), "lens")
    elif spec["lens"] == "input":
        lens = graph_input("lens", rng.integers(1, T + 1, N).astype(np.int32))
    state_names = ("h0", "c0") if op == "LSTM" else ("h0",)
    state_full = {}
    if spec["states"] == "input":
        for s in state_names:
            state_full[s] = graph_input(s, rng.standard_normal((L * D, N, H)).astype(np.float32))
    finals = {"h": [], "c": []}
    y = None
    for k in range(L):
        in_size = I if k == 0 else D * H
        W = (rng.standard_normal((D, G * H, in_size)) * 0.5).astype(np.float32)
        R = (rng.standard_normal((D, G * H, H)) * 0.5).astype(np.float32)
        B = (rng.standard_normal((D, 2 * G * H)) * 0.5).astype(np.float32)
        states = []
        for s in state_names:
            if spec["states"] == "none":
                states.append("")
            elif spec["states"] == "zeros":
                shape = node("Concat", [const(np.array([D])), node("Unsqueeze", [
                    node("Gather", [node("Shape", [x]), const(np.array(0 if layout1 else 1))],
                         axis=0), const(np.array([0]))]), const(np.array([H]))], axis=0)
                states.append(node("Expand", [const(np.zeros(1, np.float32)), shape]))
            elif spec["states"] == "const":
                v = rng.standard_normal((N, D, H) if layout1 else (D, N, H))
                states.append(const(v.astype(np.float32), s))
            else:
                src = state_full[s]
                if spec["fault"] == "shift_h0":
                    src = node("Add", [src, const(np.ones(1, np.float32))])
                states.append(node("Slice", [src, const(np.array([k * D])),
                                             const(np.array([(k + 1) * D])),
                                             const(np.array([0]))]) if L > 1 else src)
        attrs = dict(spec.get("attrs") or {})
        if D == 2:
            attrs["direction"] = "bidirectional"
            for key in ("activations", "activation_alpha", "activation_beta"):
                if key in attrs:                   # one list per direction
                    attrs[key] = attrs[key] * 2
        if layout1:
            attrs["layout"] = 1
        if op == "GRU":
            attrs.setdefault("linear_before_reset", 1)
        n_out = 3 if op == "LSTM" else 2
        outs = node(op, [x, weight(W, "W"), weight(R, "R"), weight(B, "B"), lens] + states,
                    n_out=n_out, hidden_size=H, **attrs)
        y = outs[0]
        finals["h"].append(outs[1])
        if op == "LSTM":
            finals["c"].append(outs[2])
        if k < L - 1 or spec["out"] == "merged":
            if not layout1:
                y = node("Transpose", [y], perm=[0, 2, 1, 3])
            y = node("Reshape", [y, const(np.array([0, 0, -1]))])
        if k < L - 1:
            x = node("Relu", [y]) if spec["fault"] == "relu_between" else y
    if spec["fault"] == "scale_y":
        y = node("Mul", [y, const(np.full(1, 2.0, np.float32))])
    if spec["layout"] == "transpose" and spec["out"] == "merged":
        y = node("Transpose", [y], perm=[1, 0, 2])
    outputs = [y]
    if spec["final"] == "h":
        outputs.append(finals["h"][-1])
    elif spec["final"] == "all" and not layout1:
        outputs += [node("Concat", finals[w], axis=0) for w in ("h", "c") if finals[w]]
    outs = [helper.make_empty_tensor_value_info(o) for o in outputs]
    g = helper.make_graph(nodes, "g", ins, outs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, feeds, given, accepts(spec)


def accepts(spec):
    """Whether import_onnx must reproduce the graph (True) or refuse it (False)."""
    if spec["fault"] is not None:
        return False
    clip = (spec.get("attrs") or {}).get("clip")
    if clip is not None and not 0 < clip < float("inf"):
        return False                              # refused by name: no such clip
    if spec["layout"] == "layout1" and spec["states"] == "input":
        return False                              # batch-major states: refused by name
    return True
