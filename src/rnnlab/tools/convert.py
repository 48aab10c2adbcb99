"""``rnnlab convert IN OUT``: move a recurrent layer, or a whole model (a run directory of
``rnnlab train``, or a saved SequenceModel), between .pt/.pth, .safetensors, .npz, .onnx
and .keras (chosen by extension), then prove it: run the SOURCE file in its own runtime
(onnxruntime for .onnx, Keras for .keras, torch for .pt when it is installed, rnnlab for
its own files) and the written file in its runtime on the same random batch, and print
the largest difference and the runtimes that ran; fail beyond the float32 tolerance.
Nothing is skipped silently: weights of the input the layer does not use are listed, and
make the conversion fail unless --allow-unused.
"""
import os
import warnings

import numpy as np

from ..io import (export_onnx, from_state_dict, import_onnx, load, load_torch, read_weights,
                  save)
from ..io.atomic import replacing
from ..io.files import _CELL_KEY, _KEY
from ..io.onnx_import import read_graph
from ..io.onnx_result import ImportedLayer
from ..nn import RNNCellBase, SequenceModel, no_grad
from .cases import TOL, error

READS = (".pt", ".pth", ".safetensors", ".npz", ".onnx", ".keras")
WRITES = (".pt", ".pth", ".safetensors", ".npz", ".onnx", ".keras")
N, T = 3, 5


class ConvertError(ValueError):
    """Input that cannot be converted as asked (one line for the user)."""


def _ext(path, allowed, what):
    if what == "input" and os.path.isdir(path):
        return "run"
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in allowed:
        raise ConvertError(f"{what} {path}: unknown extension {ext or '(none)'}; use one of "
                           f"{', '.join(allowed)} (or a run directory as input)")
    return ext


def _state_dict_in(obj, path):
    """The state_dict inside a torch checkpoint: the object itself, or its one entry
    that holds recurrent weights (e.g. {"epoch", "model", "optimizer"})."""
    if not isinstance(obj, dict):
        raise ConvertError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    if any(_KEY.match(str(k)) or _CELL_KEY.match(str(k)) for k in obj):
        return obj, []
    cands = [k for k, v in obj.items() if isinstance(v, dict) and any(
        _KEY.match(str(kk)) or _CELL_KEY.match(str(kk)) for kk in v)]
    if len(cands) != 1:
        raise ConvertError(f"{path}: " + ("no recurrent layer weights found" if not cands else
                                          f"several entries hold layer weights: {cands}"))
    return obj[cands[0]], [k for k in obj if k != cands[0]]


def read(path, prefix="", nonlinearity=None):
    """(layer or SequenceModel, unused weight names, other entries) from any readable
    file or run directory."""
    ext = _ext(path, READS, "input")
    if ext != "run" and not os.path.isfile(path):
        raise ConvertError(f"input {path} does not exist")
    over = {} if nonlinearity is None else {"nonlinearity": nonlinearity}
    if ext == "run":
        return load(path), [], []
    if ext == ".onnx":
        obj = import_onnx(path)
        if isinstance(obj, ImportedLayer):
            raise ConvertError(f"{path} feeds its recurrent nodes constant "
                               f"{' and '.join(obj.carried)}, which a file of weights does "
                               "not hold; use it in Python (rnnlab.import_onnx(path) keeps "
                               "them)")
        return obj, [], []
    if ext == ".keras":
        from ..io.keras import from_keras, keras_module
        return from_keras(keras_module().saving.load_model(path)), [], []
    if ext in (".pt", ".pth"):
        sd, others = _state_dict_in(load_torch(path), path)
    else:
        sd, info = read_weights(path)
        if info is not None:
            return load(path), [], []
        others = []
    try:
        layer = from_state_dict(sd, prefix, **over)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{path}: {exc}") from None
    if isinstance(layer, RNNCellBase):
        raise ConvertError(f"{path}: the weights under prefix {prefix!r} are a "
                           f"{type(layer).__name__}; convert moves layers and models (a "
                           "cell: rnnlab.from_state_dict(rnnlab.load_torch(path), prefix=...) "
                           "then rnnlab.save)")
    used = {str(k) for k in sd if (m := _KEY.match(str(k))) and (m.group(1) == prefix or not
                                                                   prefix)}
    return layer, [k for k in sd if k not in used], others


def write(obj, path, lengths=False, print_fn=print):
    """Write a layer or a SequenceModel to ``path`` (atomically)."""
    ext = _ext(path, WRITES, "output")
    if ext in (".safetensors", ".npz"):
        save(obj, path)
    elif ext == ".onnx":
        export_onnx(obj, path, lengths=lengths)
    elif ext == ".keras":
        from ..io.keras import to_keras
        with replacing(path, ".keras") as tmp:
            to_keras(obj).save(tmp)
    else:
        rnn = obj.rnn if isinstance(obj, SequenceModel) else obj
        fam = rnn.family
        if rnn.direction == "reverse":
            raise ConvertError(f"{path}: torch has no layer with direction='reverse' (its "
                               "reverse runs only beside a forward, bidirectional=True): "
                               "write .safetensors, .npz or .onnx")
        if fam.torch_class is None:
            opts = fam.options_text() or fam.kind
            raise ConvertError(f"{path}: torch has no {fam.layer_class or 'layer'} with "
                               f"{opts}: its weights in a .pt file would compute another "
                               "function in torch (write .safetensors, .npz, .onnx or "
                               ".keras)")
        try:
            import torch
        except ImportError:
            raise ConvertError("writing .pt needs torch (pip install torch)") from None
        with replacing(path) as tmp:
            torch.save({k: torch.from_numpy(np.ascontiguousarray(v))
                        for k, v in obj.state_dict().items()}, tmp)
        if isinstance(obj, SequenceModel):
            print_fn(f"{path} holds the state_dict of this torch module (torch.load it into "
                     "SequenceModel()):\n" + obj.torch_source())


def _batch(obj, rng, src=None):
    """A random input for ``obj`` (in the layout it takes), of the sizes the source
    graph fixes, if it does."""
    n, t = N, T
    if str(src).lower().endswith(".onnx") and not isinstance(obj, SequenceModel):
        _, gmap = read_graph(src, batch_first=obj.batch_first)
        import onnx
        graph = onnx.load(str(src), load_external_data=False).graph
        dims = [d.dim_value if d.HasField("dim_value") else None for i in graph.input
                if gmap and i.name == gmap.input for d in i.type.tensor_type.shape.dim]
        if len(dims) == 3:
            t, n = (dims[1], dims[0]) if obj.batch_first else (dims[0], dims[1])
            n, t = n or N, t or T
        return rng.standard_normal((n, t, obj.input_size) if obj.batch_first else
                                   (t, n, obj.input_size)).astype(np.float32)
    if isinstance(obj, SequenceModel):
        if obj.embedding is not None:
            return rng.integers(0, obj.embedding.num_embeddings, (T, N))
        return rng.standard_normal((T, N, obj.config()["input_size"])).astype(np.float32)
    shape = (N, T, obj.input_size) if obj.batch_first else (T, N, obj.input_size)
    return rng.standard_normal(shape).astype(np.float32)


def _batch_first(obj):
    return isinstance(obj, SequenceModel) or obj.batch_first


def run_in(path, obj, x, prefix=""):
    """``path``'s output on x (the layout ``obj`` takes, states zero) in the file's own
    runtime: (output, runtime name), or (None, runtime name) when it is not installed.
    prefix: the layer's key prefix in a .pt state_dict."""
    ext = "run" if os.path.isdir(path) else os.path.splitext(str(path))[1].lower()
    if ext in ("run", ".safetensors", ".npz"):
        m = load(path).to(np.float32)
        with no_grad():
            return np.asarray(m.eval()(x)[0]), "rnnlab"
    if ext == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            return None, "onnxruntime"
        return _onnx_output(ort, path, obj, x), "onnxruntime"
    if ext == ".keras":
        from ..io.keras import keras_module
        try:
            keras = keras_module()
        except ImportError:
            return None, "keras"
        km = keras.saving.load_model(path)
        seq = x.ndim == 3
        xb = x if (_batch_first(obj) and not isinstance(obj, SequenceModel)) else (
            x.transpose(1, 0, 2) if seq else x.T)
        out = np.asarray(km(xb))
        if isinstance(obj, SequenceModel):
            return (out.transpose(1, 0, 2) if obj.readout == "every" else out), "keras"
        return (out if obj.batch_first else out.transpose(1, 0, 2)), "keras"
    try:
        import torch
    except ImportError:
        return None, "torch"
    if isinstance(obj, SequenceModel):
        ns = {}
        exec(compile(obj.torch_source(), "torch_source", "exec"), ns)   # rnnlab's own text
        tm, sd = ns["SequenceModel"](), load_torch(path)
    elif _is_script(path):                           # a torch.jit.save archive: run it
        tm = torch.jit.load(str(path)).eval()
        for part in [p for p in prefix.split(".") if p]:
            tm = getattr(tm, part)
        names = tm._c._method_names()               # a scripted nn.GRU: forward__0
        if "forward" not in names and "forward__0" not in names:
            raise ConvertError(f"{path}: the archive's module at {prefix!r} has no forward "
                               "method to run")
        run = tm.forward if "forward" in names else getattr(tm, "forward__0")
        with torch.no_grad():
            return run(torch.from_numpy(x))[0].numpy(), "torch (TorchScript)"
    else:
        cfg = {k: v for k, v in obj.config().items() if k != "dtype"}
        tm = getattr(torch.nn, obj.family.torch_class)(**cfg)
        sd, _ = _state_dict_in(load_torch(path), path)
        sd = {k[len(prefix):]: v for k, v in sd.items()
              if str(k).startswith(prefix) and _KEY.match(str(k)[len(prefix):])}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*oneDNN")    # torch's note on proj_size
        tm.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()})
        with torch.no_grad():
            return tm(torch.from_numpy(x))[0].numpy(), "torch"


def _is_script(path):
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _onnx_output(ort, path, obj, x):
    """The graph's sequence output on x in onnxruntime, in the layout ``obj`` returns;
    its other inputs get zero states and full lengths."""
    gmap = None
    if not isinstance(obj, SequenceModel):
        _, gmap = read_graph(path, batch_first=obj.batch_first)
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {gmap.input if gmap else "input": x}
    n = x.shape[0] if _batch_first(obj) else x.shape[1]
    for i in s.get_inputs():
        if i.name not in feeds:
            shape = [n if isinstance(d, str) or d is None else d for d in i.shape]
            feeds[i.name] = (np.full(n, x.shape[1 if _batch_first(obj) else 0],
                                     np.int32 if "int32" in i.type else np.int64)
                             if "int" in i.type else np.zeros(shape, np.float32))
    outs = dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))
    if gmap is None:
        return outs[s.get_outputs()[0].name]
    seqs = [(name, how[1]) for name, how in gmap.outputs.items() if how[0] == "seq"]
    if not seqs:
        raise ConvertError(f"{path}: the graph's outputs are final states only, so its "
                           "sequence output cannot be compared with the written file's")
    name, labels = seqs[0]
    return gmap.to_layer(outs[name], labels, obj.batch_first)


def convert(src, dst, prefix="", allow_unused=False, nonlinearity=None, lengths=False,
            print_fn=print):
    """Returns the largest difference between the source and the written file, each run
    in its own runtime (None when the target's runtime is missing)."""
    obj, unused, others = read(src, prefix, nonlinearity)
    print_fn(f"read {src}: {obj!r}")
    if others:
        print_fn(f"  other entries of the checkpoint (not weights of the layer): {others}")
    if unused:
        print_fn(f"  weights not used by the layer ({len(unused)}): {unused}")
        if not allow_unused:
            raise ConvertError(f"{len(unused)} weights of {src} are not used by the layer "
                               "(listed above); pass --prefix to pick another layer or "
                               "--allow-unused to convert anyway")
    obj = obj.to(np.float32)
    write(obj, dst, lengths, print_fn)
    x = _batch(obj, np.random.default_rng(0), src)
    want, source = run_in(src, obj, x, prefix)
    if want is None:                                  # no source runtime: rnnlab's reading
        with no_grad():
            want = np.asarray(obj.eval()(x)[0])
        source = f"rnnlab (its reading of {src}" + (", torch not installed)" if
                                                     source == "torch" else ")")
    got, target = run_in(dst, obj, x)
    if got is None:
        print_fn(f"wrote {dst}; {target} is not installed, so it was not run (install it to "
                 "verify)")
        return None
    err = error(got, want, "float32")
    verdict = "ok" if err <= TOL["float32"] else "FAILED"
    print_fn(f"wrote {dst}; ran the source in {source} and {dst} in {target} on a random "
             f"batch of shape {tuple(x.shape)}: max |difference| {err:.1e} (tolerance {TOL['float32']:g}) "
             f"{verdict}")
    return err
