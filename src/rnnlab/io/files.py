"""Modules to files and back, and layers rebuilt from a torch state_dict.

    rnnlab.save(module, "gru.safetensors")     # or .npz
    module = rnnlab.load("gru.safetensors")    # the same class, configuration and weights
    layer = rnnlab.from_state_dict(rnnlab.load_torch("model.pt")["model"], prefix="encoder.")

Both formats carry the configuration (class, constructor arguments, dtype) as JSON next to
the weights: safetensors in its metadata (key "rnnlab"), .npz in an entry
``__rnnlab__`` — an .npz reads with ``np.load(path, allow_pickle=False)``.
"""
import json
import os
import re
import zipfile
import zlib

import numpy as np

from ..cells.variants import OPTION_KEYS
from ..checks import to_numpy
from ..errors import StateDictError
from ..nn import (GRU, LSTM, RNN, Embedding, GRUCell, Linear, LSTMCell, RNNBase, RNNCell,
                  RNNCellBase, SequenceModel)
from ..nn.module import parameter_shapes
from ..nn.state_dict import check_tensors
from . import limits
from .atomic import replacing
from .limits import Budget
from .safetensors import load_safetensors, save_safetensors

CLASSES = {c.__name__: c for c in (RNN, GRU, LSTM, RNNBase, RNNCell, GRUCell, LSTMCell,
                                   RNNCellBase, Linear, Embedding, SequenceModel)}
FORMAT = "rnnlab-module-1"


def _extension(path):
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in (".safetensors", ".npz"):
        raise ValueError(f"{path}: rnnlab.save / rnnlab.load read and write .safetensors and "
                         f".npz files, not {ext or 'a file without extension'}")
    return ext


def save(module, path):
    """Write the module's weights and configuration to ``path`` (.safetensors or .npz),
    atomically: a failed write leaves the old file as it was."""
    name = type(module).__name__
    if name not in CLASSES or not hasattr(module, "config"):
        raise TypeError(f"save takes an rnnlab layer, cell, Linear, Embedding or "
                        f"SequenceModel, got {name}")
    meta = json.dumps({"format": FORMAT, "class": name, "config": module.config()})
    tensors = module.state_dict()
    if _extension(path) == ".safetensors":
        save_safetensors(tensors, path, {"rnnlab": meta})
    else:
        with replacing(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, __rnnlab__=np.array(meta), **tensors)


def _read_npz(path):
    """{name: array} of an .npz, each member's header checked against the size the archive
    declares for it (and rnnlab.io.limits) before its array is allocated."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            held = 0
            for info in infos:
                limits.check_member(path, info)
                held += info.file_size
            budget = Budget(path, held)
            for info in infos:
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    shape, fortran, dtype = {(1, 0): np.lib.format.read_array_header_1_0,
                                             (2, 0): np.lib.format.read_array_header_2_0
                                             }.get(version, np.lib.format.read_array_header_2_0
                                                   )(f)
                    need = limits.elements(shape, path, info.filename) * dtype.itemsize
                    if dtype.hasobject:
                        raise ValueError(f"{info.filename} holds Python objects (pickles), "
                                         "which rnnlab does not read")
                    limits.check_member(path, info, need)
                    budget.take(need, info.filename)
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except limits.LimitError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error,
            NotImplementedError, TypeError, SyntaxError) as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        text = str(exc)[:300]
        if str(path) in text:
            raise ValueError(text) from None
        raise ValueError(f"{path}: not a readable .npz file ({type(exc).__name__}: "
                         f"{text})") from None


def read_weights(path):
    """(tensors, rnnlab metadata dict or None) of a .safetensors or .npz file."""
    if _extension(path) == ".safetensors":
        tensors, meta = load_safetensors(path)
        raw = meta.get("rnnlab")
    else:
        tensors = _read_npz(path)
        raw = tensors.pop("__rnnlab__", None)
        raw = None if raw is None else str(raw)
    info = None
    if raw is not None:
        try:
            info = json.loads(raw)
            if info.get("format") != FORMAT or info.get("class") not in CLASSES or \
                    not isinstance(info.get("config"), dict):
                raise ValueError
        except (ValueError, AttributeError, RecursionError):
            raise ValueError(f"{path}: its rnnlab configuration is not readable: {raw:.80}") \
                from None
    return tensors, info


def load(path):
    """The module saved by ``save``: same class, configuration, dtype and weights; for a
    run directory of ``rnnlab train`` its SequenceModel (``RUN/model.safetensors``). The
    configuration must describe the tensors the file holds: it is checked against them
    before the module is built (a file cannot make rnnlab allocate what it does not hold)."""
    if os.path.isdir(path):                    # a run: its latest complete checkpoint
        inside = os.path.join(path, "model.safetensors")
        try:
            with open(os.path.join(path, "checkpoints", "LATEST"), encoding="utf-8") as f:
                name = f.read(100).strip()
            if name.startswith("ckpt-") and "/" not in name and os.sep not in name:
                inside = os.path.join(path, "checkpoints", name, "model.safetensors")
        except (OSError, UnicodeDecodeError):
            pass
        if not os.path.isfile(inside):
            raise ValueError(f"{path} is a directory without model.safetensors: not a run "
                             "directory of rnnlab train")
        path = inside
    tensors, info = read_weights(path)
    if info is None:
        raise ValueError(f"{path} holds weights without an rnnlab configuration; build the "
                         "module with rnnlab.from_state_dict(tensors) instead")
    cls = CLASSES[info["class"]]
    try:
        shapes = parameter_shapes(cls, **info["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot rebuild {info['class']} from {info['config']}: "
                         f"{exc}") from None
    problems = check_tensors(shapes, tensors)[2]
    if problems:
        raise ValueError(f"{path}: its configuration does not describe its tensors: "
                         + "; ".join(problems)[:400])
    module = cls(**info["config"])
    module.load_state_dict(tensors)
    return module


_KEY = re.compile(r"^(.*?)(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr|weight_p)_l(\d+)"
                  r"(_reverse)?$")
_CELL_KEY = re.compile(r"^(.*?)(weight_ih|weight_hh|bias_ih|bias_hh|weight_p)$")


def _peepholes_named(has_p, overrides):
    if has_p and not overrides.get("peepholes"):
        raise ValueError("these weights hold peepholes (weight_p...): pass peepholes=True, "
                         "and the other options they were trained with (activations=, "
                         "cell_clip=, input_forget=), which weights cannot tell")


def _weight_like(state_dict, prefixes):
    keys = [str(k) for k in state_dict if re.search(r"weight|bias|kernel", str(k))]
    return (f"prefixes with such weights: {sorted(prefixes)}" if prefixes else
            f"the weight-like keys it holds ({len(keys)}): {keys[:12]}"
            + (" ..." if len(keys) > 12 else ""))


def _cell(state_dict, prefix, overrides):
    """RNNCell / GRUCell / LSTMCell from torch's cell keys (weight_ih, weight_hh, bias_ih,
    bias_hh under ``prefix``)."""
    found = {m.group(2): to_numpy(v, str(k)) for k, v in state_dict.items()
             if (m := _CELL_KEY.match(str(k))) and m.group(1) == prefix}
    w_ih, w_hh = found.get("weight_ih"), found.get("weight_hh")
    if w_ih is None or w_hh is None or w_ih.ndim != 2 or w_hh.ndim != 2 or w_hh.shape[1] == 0:
        raise ValueError(f"{prefix}weight_ih / weight_hh are missing or not matrices")
    H = w_hh.shape[1]
    G, rem = divmod(w_hh.shape[0], H)
    kinds = {1: RNNCell, 3: GRUCell, 4: LSTMCell}
    if rem or G not in kinds:
        raise ValueError(f"{prefix}weight_hh has shape {w_hh.shape}: not an RNNCell, GRUCell "
                         "or LSTMCell of torch's layout")
    cls = kinds[G]
    if cls is RNNCell and "nonlinearity" not in overrides:
        raise ValueError("an RNNCell's weights do not say whether it used tanh or relu: pass "
                         "nonlinearity='tanh' or 'relu'")
    extra = set(overrides) - {"nonlinearity", "dtype", "reset_after"} - set(OPTION_KEYS)
    _peepholes_named("weight_p" in found, overrides)
    if cls is not RNNCell and "nonlinearity" in overrides:
        raise ValueError(f"nonlinearity is only for RNNCell; these weights are a "
                         f"{cls.__name__}")
    if extra:
        raise TypeError(f"from_state_dict got unexpected override(s) {sorted(extra)} for a "
                        "cell")
    kw = dict(bias="bias_ih" in found,
              dtype=w_ih.dtype if w_ih.dtype in (np.float32, np.float64) else np.float32)
    kw.update(overrides)
    shapes = parameter_shapes(cls, input_size=w_ih.shape[1], hidden_size=H, **kw)
    problems = check_tensors(shapes, found)[2]
    if problems:
        raise StateDictError(f"the weights under prefix {prefix!r} do not form a "
                             f"{cls.__name__}: " + "; ".join(problems)[:400])
    cell = cls(w_ih.shape[1], H, **kw)
    cell.load_state_dict(found)
    return cell


def from_state_dict(state_dict, prefix="", **overrides):
    """Build the layer a torch state_dict (or the sub-module at ``prefix`` of one) holds:
    kind, input and hidden size, layers, bidirectional, bias and proj_size come from the
    names and shapes; ``nonlinearity`` (RNN: required, the weights cannot tell tanh from
    relu), ``batch_first``, ``dropout``, ``dtype`` (default: the weights' float dtype) and
    the options weights cannot tell — ``reset_after`` (GRU), ``direction`` and the variant
    options (``activations``, ``activation_alpha/beta``, ``cell_clip``, ``peepholes``,
    ``input_forget``) — are overrides (weight_p keys without peepholes=True: ValueError).
    Cell keys (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``) give
    an RNNCell / GRUCell / LSTMCell. With prefix="" a state_dict holding one layer or cell
    under some prefix uses it; several are a ValueError naming the prefixes to choose
    from; none lists the weight-like keys it does hold."""
    if not hasattr(state_dict, "items"):
        raise TypeError(f"from_state_dict expects a mapping of names to arrays, got "
                        f"{type(state_dict).__name__}")
    prefixes = sorted({m.group(1) for m in map(_KEY.match, map(str, state_dict)) if m})
    cells = sorted({m.group(1) for m in map(_CELL_KEY.match, map(str, state_dict)) if m})
    if not prefix and len(prefixes) + len(cells) > 1:
        raise ValueError(f"several recurrent layers or cells in this state_dict: pass "
                         f"prefix= one of {sorted(prefixes + cells)}")
    if not prefix and len(prefixes) + len(cells) == 1:
        prefix = (prefixes + cells)[0]                    # the only one there is
    if prefix in cells and prefix not in prefixes:
        return _cell(state_dict, prefix, overrides)
    found = {}
    for key, value in state_dict.items():
        m = _KEY.match(str(key))
        if m and m.group(1) == prefix:
            found[m.group(2, 3, 4)] = to_numpy(value, str(key))
    if not found:
        raise ValueError(f"no recurrent layer or cell weights (weight_ih_l0, ... or "
                         f"weight_ih, ...) under prefix {prefix!r}; "
                         + _weight_like(state_dict, prefixes + cells))
    indices = sorted({int(k[1]) for k in found})
    if indices != list(range(len(indices))):
        have = set(indices)
        gaps = [k for k in range(len(indices) + 5) if k not in have][:5]
        raise ValueError(f"the weights under prefix {prefix!r} skip layer(s) {gaps} (found "
                         f"layers {indices[:10]}{' ...' if len(indices) > 10 else ''})")
    layers = len(indices)
    bi = any(k[2] for k in found)
    bias = ("bias_ih", "0", None) in found
    proj = ("weight_hr", "0", None) in found
    w_ih, w_hh = found.get(("weight_ih", "0", None)), found.get(("weight_hh", "0", None))
    if w_ih is None or w_hh is None or w_ih.ndim != 2 or w_hh.ndim != 2:
        raise ValueError(f"{prefix}weight_ih_l0 / weight_hh_l0 are missing or not matrices")
    H = found[("weight_hr", "0", None)].shape[1] if proj and found[("weight_hr", "0", None)] \
        .ndim == 2 else w_hh.shape[1]
    if H == 0 or w_hh.shape[0] == 0:
        raise ValueError(f"{prefix}weight_hh_l0 has shape {w_hh.shape}: a layer needs at least "
                         "one hidden unit")
    G, rem = divmod(w_hh.shape[0], H)
    kinds = {1: RNN, 3: GRU, 4: LSTM}
    if rem or G not in kinds or (proj and G != 4):
        raise ValueError(f"{prefix}weight_hh_l0 has shape {w_hh.shape}: not an RNN, GRU or "
                         "LSTM of torch's layout")
    cls = kinds[G]
    kw = dict(num_layers=layers, bias=bias, bidirectional=bi)
    if proj:
        kw["proj_size"] = w_hh.shape[1]
    if cls is RNN and "nonlinearity" not in overrides:
        raise ValueError("an RNN's weights do not say whether it used tanh or relu: pass "
                         "nonlinearity='tanh' or 'relu'")
    if cls is not RNN and "nonlinearity" in overrides:
        raise ValueError(f"nonlinearity is only for RNN; these weights are a {cls.__name__}")
    extra = set(overrides) - {"nonlinearity", "batch_first", "dropout", "dtype", "seed",
                              "direction", "reset_after"} - set(OPTION_KEYS)
    _peepholes_named(any(k[0] == "weight_p" for k in found), overrides)
    if "reset_after" in overrides and cls is not GRU:
        raise ValueError(f"reset_after is only for GRU; these weights are a {cls.__name__}")
    if overrides.get("direction", "forward") == "reverse" and bi:
        raise ValueError("direction='reverse' is for one direction; these weights have "
                         "_reverse twins (bidirectional)")
    if extra:
        raise TypeError(f"from_state_dict got unexpected override(s) {sorted(extra)}")
    dt = w_ih.dtype if w_ih.dtype in (np.float32, np.float64) else np.float32
    kw.update(dtype=dt)
    kw.update(overrides)
    sd = {f"{n}_l{k}{r or ''}": v for (n, k, r), v in found.items()}
    try:
        shapes = parameter_shapes(cls, input_size=w_ih.shape[1], hidden_size=H, **kw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{prefix or 'the state_dict'}: not a layer rnnlab can build: {exc}") \
            from None
    problems = check_tensors(shapes, sd)[2]
    if problems:                                 # checked before anything is allocated
        raise StateDictError(f"the weights under prefix {prefix!r} do not form a "
                             f"{cls.__name__}: " + "; ".join(problems)[:400])
    layer = cls(w_ih.shape[1], H, **kw)
    layer.load_state_dict(sd)
    return layer
