"""A whole SequenceModel as one ONNX graph (``export_onnx(model, path)`` comes here):

    input (T, N) int64 tokens  -> Gather(embedding)          (or (T, N, I) float32 input,
                                                               through MatMul + Add)
    -> the recurrent layer's nodes (onnx_export.layer_nodes; states start at zero)
    -> readout "every": MatMul + Add on every step            -> output (T, N, out)
       readout "last":  the top layer's Y_h, both directions  -> output (N, out)

With ``lengths=True`` the graph also takes ``lengths`` (N,) int64: packed semantics, and
the "last" readout reads each sequence's own last step (Y_h), as the model does.
Time-major like the model; float32.
"""
import numpy as np

from .onnx_export import _Graph, layer_nodes


def export_model(onnx, model, path, *, lengths=False, opset=17):
    rnn = model.rnn
    if rnn.family.onnx is None:
        raise TypeError(f"ONNX has no op for the {rnn.family.kind} family")
    g = _Graph(onnx)
    TP = onnx.TensorProto
    vi = onnx.helper.make_tensor_value_info
    D, H_out = rnn.num_directions, rnn.proj_size or rnn.hidden_size
    if model.embedding is not None:
        inputs = [vi("input", TP.INT64, ["T", "N"])]
        x = g.op("Gather", [g.const("embedding", model.embedding.weight), "input"], axis=0)
    else:
        inputs = [vi("input", TP.FLOAT, ["T", "N", model.config()["input_size"]])]
        x = "input"
        if model.input is not None:
            x = _linear(g, x, model.input)
    if lengths:
        inputs.append(vi("lengths", TP.INT64, ["N"]))
    y, h_parts, _ = layer_nodes(g, rnn, x, "lengths" if lengths else None, None)
    out_f = model.head.out_features
    if model.readout == "every":
        g.nodes.append(onnx.helper.make_node("Identity", [_linear(g, y, model.head)],
                                             ["output"]))
        outputs = [vi("output", TP.FLOAT, ["T", "N", out_f])]
    else:
        top = h_parts[-1]                                   # (D, N, H_out)
        top = g.op("Transpose", [top], perm=[1, 0, 2])      # (N, D, H_out)
        top = g.op("Reshape", [top, g.const("flat", [0, D * H_out], np.int64)])
        g.nodes.append(onnx.helper.make_node("Identity", [_linear(g, top, model.head)],
                                             ["output"]))
        outputs = [vi("output", TP.FLOAT, ["N", out_f])]
    return g.save(path, "rnnlab_SequenceModel", inputs, outputs, opset,
                  {"class": "SequenceModel", "config": dict(model.config(),
                                                            lengths=bool(lengths))})


def _linear(g, x, lin):
    """x W^T + b (a Linear) over the last axis."""
    y = g.op("MatMul", [x, g.const("W", np.ascontiguousarray(lin.weight.T))])
    if "bias" in lin._parameters:
        y = g.op("Add", [y, g.const("b", lin.bias)])
    return y
