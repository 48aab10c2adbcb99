"""``rnnlab convert IN OUT``: move a recurrent layer between .pt/.pth, .safetensors, .npz,
.onnx and .keras (chosen by extension), then prove it: run the written file in its own
runtime (onnxruntime, Keras, torch, or rnnlab for its files) on a random batch and print
the largest difference from the source; fail beyond the float32 tolerance. Nothing is
skipped silently: weights of the input that the layer does not use are listed, and make
the conversion fail unless --allow-unused.
"""
import os
import warnings

import numpy as np

from ..io import (export_onnx, from_state_dict, import_onnx, load, load_torch, read_weights,
                  save)
from ..io.atomic import replacing
from ..io.files import _KEY
from ..nn import no_grad
from .cases import TOL, error

READS = (".pt", ".pth", ".safetensors", ".npz", ".onnx", ".keras")
WRITES = (".pt", ".pth", ".safetensors", ".npz", ".onnx", ".keras")


class ConvertError(ValueError):
    """Input that cannot be converted as asked (one line for the user)."""


def _ext(path, allowed, what):
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in allowed:
        raise ConvertError(f"{what} {path}: unknown extension {ext or '(none)'}; use one of "
                           f"{', '.join(allowed)}")
    return ext


def _state_dict_in(obj, path):
    """The state_dict inside a torch checkpoint: the object itself, or its one entry
    that holds recurrent weights (e.g. {"epoch", "model", "optimizer"})."""
    if not isinstance(obj, dict):
        raise ConvertError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    if any(_KEY.match(str(k)) for k in obj):
        return obj, []
    cands = [k for k, v in obj.items() if isinstance(v, dict) and any(
        _KEY.match(str(kk)) for kk in v)]
    if len(cands) != 1:
        raise ConvertError(f"{path}: " + ("no recurrent layer weights found" if not cands else
                                          f"several entries hold layer weights: {cands}"))
    return obj[cands[0]], [k for k in obj if k != cands[0]]


def read(path, prefix="", nonlinearity=None):
    """(layer, unused weight names, other entries) from any readable file."""
    ext = _ext(path, READS, "input")
    if not os.path.isfile(path):
        raise ConvertError(f"input {path} does not exist")
    over = {} if nonlinearity is None else {"nonlinearity": nonlinearity}
    if ext == ".onnx":
        return import_onnx(path), [], []
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
    used = {str(k) for k in sd if (m := _KEY.match(str(k))) and (m.group(1) == prefix or not
                                                                   prefix)}
    return layer, [k for k in sd if k not in used], others


def write(layer, path, lengths=False):
    ext = _ext(path, WRITES, "output")
    if ext in (".safetensors", ".npz"):
        save(layer, path)
    elif ext == ".onnx":
        export_onnx(layer, path, lengths=lengths)
    elif ext == ".keras":
        from ..io.keras import to_keras
        with replacing(path, ".keras") as tmp:
            to_keras(layer).save(tmp)
    else:
        try:
            import torch
        except ImportError:
            raise ConvertError("writing .pt needs torch (pip install torch)") from None
        with replacing(path) as tmp:
            torch.save({k: torch.from_numpy(np.ascontiguousarray(v))
                        for k, v in layer.state_dict().items()}, tmp)


def run_target(layer, path, x, h0, c0):
    """The written file's output on (x, h0, c0) in its own runtime, or None when the
    runtime is not installed (and the name of the runtime)."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext in (".safetensors", ".npz"):
        m = load(path).to(np.float32)
        with no_grad():
            out = m(x, (h0, c0) if c0 is not None else h0)
        return out[0], "rnnlab"
    if ext == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            return None, "onnxruntime"
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {"input": x, "h0": h0}
        if c0 is not None:
            feeds["c0"] = c0
        names = {i.name for i in s.get_inputs()}
        if "lengths" in names:
            feeds["lengths"] = np.full(x.shape[0 if layer.batch_first else 1],
                                       x.shape[1 if layer.batch_first else 0], np.int64)
        return s.run(["output"], feeds)[0], "onnxruntime"
    if ext == ".keras":
        from ..io.keras import keras_module
        try:
            keras = keras_module()
        except ImportError:
            return None, "keras"
        xb = x if layer.batch_first else x.transpose(1, 0, 2)
        out = np.asarray(keras.saving.load_model(path)(xb))
        return (out if layer.batch_first else out.transpose(1, 0, 2)), "keras"
    try:
        import torch
    except ImportError:
        return None, "torch"
    fam = layer.family
    tm = getattr(torch.nn, fam.torch_class)(**{k: v for k, v in layer.config().items()
                                               if k != "dtype"})
    tm.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*oneDNN")    # torch's note on proj_size
        hx = torch.from_numpy(h0) if c0 is None else (torch.from_numpy(h0),
                                                      torch.from_numpy(c0))
        return tm(torch.from_numpy(x), hx)[0].numpy(), "torch"


def convert(src, dst, prefix="", allow_unused=False, nonlinearity=None, lengths=False,
            print_fn=print):
    """Returns the largest difference (None when the target runtime is missing)."""
    layer, unused, others = read(src, prefix, nonlinearity)
    print_fn(f"read {src}: {layer!r}")
    if others:
        print_fn(f"  other entries of the checkpoint (not weights of the layer): {others}")
    if unused:
        print_fn(f"  weights not used by the layer ({len(unused)}): {unused}")
        if not allow_unused:
            raise ConvertError(f"{len(unused)} weights of {src} are not used by the layer "
                               "(listed above); pass --prefix to pick another layer or "
                               "--allow-unused to convert anyway")
    layer = layer.to(np.float32)
    write(layer, dst, lengths)
    rng = np.random.default_rng(0)
    N, T = 3, 5
    D, H_out = layer.num_directions, layer.proj_size or layer.hidden_size
    x = rng.standard_normal((N, T, layer.input_size) if layer.batch_first
                            else (T, N, layer.input_size)).astype(np.float32)
    h0 = (rng.standard_normal((layer.num_layers * D, N, H_out)) * 0.5).astype(np.float32)
    c0 = ((rng.standard_normal((layer.num_layers * D, N, layer.hidden_size)) * 0.5)
          .astype(np.float32) if layer.family.has_cell_state else None)
    if os.path.splitext(str(dst))[1].lower() == ".keras":
        h0 = np.zeros_like(h0)                        # the Keras model starts from zeros
        c0 = None if c0 is None else np.zeros_like(c0)
    with no_grad():
        want = layer(x, (h0, c0) if c0 is not None else h0)[0]
    got, runtime = run_target(layer, dst, x, h0, c0)
    if got is None:
        print_fn(f"wrote {dst}; {runtime} is not installed, so it was not run (install it to "
                 "verify)")
        return None
    err = error(got, want, "float32")
    verdict = "ok" if err <= TOL["float32"] else "FAILED"
    print_fn(f"wrote {dst}; ran it in {runtime} on a random batch ({N} x {T}): max |difference| "
             f"{err:.1e} (tolerance {TOL['float32']:g}) {verdict}")
    return err
