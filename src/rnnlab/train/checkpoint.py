"""Run directories that change from one complete checkpoint to the next, or not at all.

    RUN/
      checkpoints/LATEST        the name of the newest complete checkpoint ("ckpt-0001200")
      checkpoints/BEST          the one with the lowest held-out loss so far
      checkpoints/ckpt-0001200/ model.safetensors, optimizer.npz, state.json
      model.safetensors         a copy of LATEST's model (rnnlab.load(RUN), torch)
      best.safetensors          a copy of BEST's model
      history.json              a copy of LATEST's history
      curves.png                training and held-out curves

A checkpoint is written complete under a temporary name, flushed, renamed into place, and
only then does LATEST switch to it (one atomic rename of a small file); older checkpoints
are removed after that. A kill at any moment therefore leaves LATEST naming a complete
checkpoint, and resuming from it continues exactly as the uninterrupted run (batches are
seeded by step; the optimizer, schedule and dropout generator are saved). The top-level
copies are replaced atomically too, each on its own.
"""
import json
import os
import shutil

import numpy as np

from ..io.atomic import _fsync_dir, replacing, write_text
from ..io.files import load, read_weights, save
from ..io.limits import LimitError

FORMAT = "rnnlab-run-2"
FILES = ("model.safetensors", "optimizer.npz", "state.json")


class CheckpointError(ValueError):
    """A run directory that cannot be used as asked (none there, another run's, damaged)."""


def _ckdir(run):
    return os.path.join(run, "checkpoints")


def _pointer(run, which):
    try:
        with open(os.path.join(_ckdir(run), which), encoding="utf-8") as f:
            name = f.read(100).strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{run}: checkpoints/{which} is unreadable ({exc})") from None
    if not name.startswith("ckpt-") or os.sep in name or "/" in name:
        raise CheckpointError(f"{run}: checkpoints/{which} names {name[:40]!r}, no checkpoint")
    return name


def holds_run(run):
    """Whether ``run`` holds a run (of this format or an older one)."""
    return os.path.isdir(_ckdir(run)) or os.path.exists(os.path.join(run, "model.safetensors"))


def _write_checkpoint(path, model, opt_state, state):
    """The three files of one checkpoint, each flushed to disk."""
    save(model, os.path.join(path, "model.safetensors"))
    arrays = {f"state/{k}/{n}": np.asarray(v) for k, s in opt_state["state"].items()
              for n, v in s.items()}
    arrays["param_groups"] = np.array(json.dumps(opt_state["param_groups"]))
    with replacing(os.path.join(path, "optimizer.npz")) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    write_text(os.path.join(path, "state.json"), json.dumps(state))


def save_checkpoint(run, step, model, opt_state, state, best=False):
    """Write the checkpoint of ``step`` and switch LATEST (and BEST) to it."""
    ck = _ckdir(run)
    os.makedirs(ck, exist_ok=True)
    name = f"ckpt-{step:07d}"
    target = os.path.join(ck, name)
    if _pointer(run, "LATEST") != name or not os.path.isdir(target):
        tmp = os.path.join(ck, f".{name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        _write_checkpoint(tmp, model, opt_state, state)
        _fsync_dir(tmp)
        if os.path.isdir(target):              # a leftover of a kill before LATEST moved
            shutil.rmtree(target)
        os.rename(tmp, target)
        _fsync_dir(ck)
        write_text(os.path.join(ck, "LATEST"), name)
    if best:
        write_text(os.path.join(ck, "BEST"), name)
    _mirror(run, name, "model.safetensors")
    if best:
        _mirror(run, name, "best.safetensors", "model.safetensors")
    write_text(os.path.join(run, "history.json"), json.dumps(state["history"]))
    _prune(run)


def _mirror(run, name, to, src=None):
    """RUN/to = a copy of checkpoint ``name``'s file, replaced atomically (a hard link
    where the file system has them, else a copy)."""
    source = os.path.join(_ckdir(run), name, src or to)
    with replacing(os.path.join(run, to)) as tmp:
        os.remove(tmp)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def _prune(run):
    """Remove every checkpoint but LATEST and BEST, and temporaries of killed writes."""
    keep = {_pointer(run, "LATEST"), _pointer(run, "BEST")}
    for entry in os.listdir(_ckdir(run)):
        if entry.startswith(("ckpt-", ".ckpt-")) and entry not in keep:
            shutil.rmtree(os.path.join(_ckdir(run), entry), ignore_errors=True)


def read_checkpoint(run, which="LATEST"):
    """(model, optimizer state, state) of the run's checkpoint, or CheckpointError."""
    if not os.path.isdir(run):
        raise CheckpointError(f"{run} holds no checkpoint (no such directory)")
    name = _pointer(run, which)
    if name is None:
        if os.path.exists(os.path.join(run, "model.safetensors")):
            raise CheckpointError(f"{run} was written by an older rnnlab (no "
                                  "checkpoints/LATEST); start a new run")
        raise CheckpointError(f"{run} holds no checkpoint (no checkpoints/{which})")
    path = os.path.join(_ckdir(run), name)
    try:
        model = load(os.path.join(path, "model.safetensors"))
        with open(os.path.join(path, "state.json"), encoding="utf-8") as f:
            state = json.loads(f.read(1 << 26))
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError("state.json is not an rnnlab run's")
        opt = _read_optimizer(os.path.join(path, "optimizer.npz"))
    except (OSError, ValueError, RecursionError) as exc:
        if isinstance(exc, LimitError):
            raise
        raise CheckpointError(f"{run}: checkpoint {name} is damaged ({exc})") from None
    return model, opt, state


def _read_optimizer(path):
    from ..io.files import _read_npz
    z = _read_npz(path)
    state = {}
    for key, value in z.items():
        if key.startswith("state/"):
            _, k, n = key.split("/", 2)
            state.setdefault(k, {})[n] = value
    groups = json.loads(str(z["param_groups"]))
    if not isinstance(groups, list) or not groups or not isinstance(groups[0], dict):
        raise ValueError("optimizer.npz: param_groups is not a list of settings")
    for g in groups:
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def load_run(run, which="LATEST"):
    """The model of a run directory (rnnlab.load(RUN) calls this)."""
    return read_checkpoint(run, which)[0]


def run_metadata(run):
    """The state.json of the run's latest checkpoint (task, settings, history)."""
    return read_checkpoint(run)[2]


__all__ = ["CheckpointError", "save_checkpoint", "read_checkpoint", "load_run", "holds_run",
           "read_weights"]
