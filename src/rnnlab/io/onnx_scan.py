"""The Scan graphs rnnlab's export_onnx writes for LSTM with proj_size: their weights are
read from the Scan bodies' outer-scope constants (Wi, Wh, b = b_ih + b_hh, Wr) and checked
against the graph's rnnlab metadata before the layer is built."""
import numpy as np

from ..nn.kinds import LAYERS
from ..nn.module import parameter_shapes
from ..nn.state_dict import check_tensors


class ScanGraphError(ValueError):
    """A Scan graph that is not one rnnlab's export_onnx wrote."""


def from_scans(scans, meta, scope, batch_first, dtype):
    cfg = dict(meta.get("config") or {})
    for key in ("lengths", "states", "dtype"):              # the graph's, not the layer's
        cfg.pop(key, None)
    cls = LAYERS.get(meta.get("class"))
    if cls is None or not cfg.get("proj_size"):
        raise ScanGraphError("the graph uses Scan: only the Scan graphs rnnlab's export_onnx "
                             "writes (LSTM with proj_size) are read")
    if batch_first is not None:
        cfg["batch_first"] = batch_first
    shapes = parameter_shapes(cls, **cfg, dtype=dtype)
    D = 2 if cfg.get("bidirectional") else 1
    if len(scans) != cfg.get("num_layers", 1) * D:
        raise ScanGraphError(f"expected {cfg.get('num_layers', 1) * D} Scan nodes, found "
                             f"{len(scans)}")
    sd = {}
    for j, node in enumerate(scans):
        body = [a.g for a in node.attribute if a.name == "body"]
        used = [i for n in (body[0].node if body else ()) for i in n.input
                if scope.get(i) is not None]
        pick = {p: [v for v in used if v.startswith(p + "_")] for p in ("Wi", "Wh", "Wr", "b")}
        if not all(pick.values()):
            missing = [p for p, v in pick.items() if not v]
            raise ScanGraphError(f"Scan node {j}: its body does not read {missing}: not a "
                                 "graph rnnlab's export_onnx wrote")
        pick = {p: np.asarray(scope.get(v[0])) for p, v in pick.items()}
        if any(pick[p].ndim != 2 for p in ("Wi", "Wh", "Wr")) or pick["b"].ndim != 1:
            raise ScanGraphError(f"Scan node {j}: its weights are not matrices")
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
        raise ScanGraphError("the Scan graph's weights do not fit its metadata: "
                             + "; ".join(problems)[:300])
    layer = cls(**cfg, dtype=dtype)
    layer.load_state_dict(sd)
    return layer
