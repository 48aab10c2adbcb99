"""The training loop of ``rnnlab train``: steps, gradient norms before and after
clipping, progress, checkpoints (resumable, also on Ctrl-C), the held-out evaluation and
the curves figure.

A run directory holds:
    model.safetensors   tensors rnn.<torch name>, head.weight, head.bias, embedding.weight;
                        the model, task and training configuration as JSON metadata
    optimizer.npz       the optimizer's state (np.load(path, allow_pickle=False) reads it)
    history.json        loss and gradient norm (before / after clipping) per step
    curves.png          those curves (matplotlib)
"""
import json
import math
import os
import sys
import time

import numpy as np

from ..io import load_safetensors, save_safetensors
from . import optim as O
from .clip import clip_grad_norm_
from .model import SeqModel
from .tasks import TaskError, make_task

OPTIMIZERS = {"adam": O.Adam, "sgd": O.SGD}


class CheckpointError(ValueError):
    """--resume of a directory without a checkpoint, or of another model's."""


def build(task, hp, seed):
    model = SeqModel(hp["model"], task.input_size, hp["hidden"], hp["layers"],
                     task.out_features, read=task.read, vocab=task.vocab,
                     embedding_dim=min(32, task.vocab) if task.vocab else None, seed=seed)
    opt = OPTIMIZERS[hp["optim"]](model.modules, lr=hp["lr"])
    return model, opt


def save(out, model, opt, task, hp, history, seed):
    os.makedirs(out, exist_ok=True)
    meta = {"model": json.dumps(model.config()), "task": json.dumps(task.config()),
            "train": json.dumps(dict(hp, seed=seed)), "step": str(len(history["loss"])),
            "format": "rnnlab-train-1"}
    save_safetensors(model.tensors(), os.path.join(out, "model.safetensors.tmp"), meta)
    os.replace(os.path.join(out, "model.safetensors.tmp"), os.path.join(out, "model.safetensors"))
    sd = opt.state_dict()
    arrays = {f"state/{k}/{n}": np.asarray(v) for k, s in sd["state"].items()
              for n, v in s.items()}
    arrays["param_groups"] = np.array(json.dumps(sd["param_groups"]))
    np.savez(os.path.join(out, "optimizer.npz"), **arrays)
    with open(os.path.join(out, "history.json"), "w") as f:
        json.dump(history, f)


def load_run(path):
    """(tensors, metadata) of a run directory, or CheckpointError."""
    f = os.path.join(path, "model.safetensors")
    if not os.path.isfile(f):
        raise CheckpointError(f"{path} holds no checkpoint (no model.safetensors)")
    try:
        tensors, meta = load_safetensors(f)
        for key in ("model", "task", "train"):
            meta[key] = json.loads(meta[key])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{f} is not an rnnlab train checkpoint ({exc})") from None
    return tensors, meta


def resume(path, task, hp):
    """Model, optimizer and history from a run directory, checked against this run."""
    tensors, meta = load_run(path)
    if meta["task"]["task"] != task.name:
        raise CheckpointError(f"{path} is a checkpoint of task {meta['task']['task']!r}, "
                              f"not {task.name!r}")
    for key in ("model", "hidden", "layers", "optim"):
        if meta["train"][key] != hp[key]:
            raise CheckpointError(f"{path} holds a model with --{key} {meta['train'][key]}, "
                                  f"this run asks for {hp[key]}")
    model, opt = build(task, hp, meta["train"]["seed"])
    try:
        model.load_tensors(tensors)
        with np.load(os.path.join(path, "optimizer.npz"), allow_pickle=False) as z:
            state = {}
            for name in z.files:
                if name.startswith("state/"):
                    _, key, n = name.split("/", 2)
                    state.setdefault(key, {})[n] = z[name]
            groups = json.loads(str(z["param_groups"]))
        groups[0]["lr"] = hp["lr"]
        if "betas" in groups[0]:
            groups[0]["betas"] = tuple(groups[0]["betas"])
        opt.load_state_dict({"state": state, "param_groups": groups})
        with open(os.path.join(path, "history.json")) as f:
            history = json.load(f)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: the checkpoint does not fit this model ({exc})") \
            from None
    return model, opt, history, meta["train"]["seed"]


class Progress:
    """tqdm on a terminal, plain lines every ~5% otherwise."""

    def __init__(self, start, total, stream=None):
        stream = sys.stdout if stream is None else stream
        self.total, self.stream, self.bar = total, stream, None
        self.every = max(1, (total - start) // 20)
        if stream.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=start, file=stream, unit="step")
            except ImportError:
                pass

    def update(self, step, loss, norm):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", grad_norm=f"{norm:.3g}")
        elif step % self.every == 0 or step == self.total:
            print(f"step {step}/{self.total}  loss {loss:.4f}  grad norm {norm:.3g}",
                  file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run(task_name, hp, seed=0, out=None, resume_dir=None, text=None, print_fn=print,
        png=True):
    """Train; returns (test value, baseline, history). hp: model, hidden, layers, seq_len,
    batch, steps, lr, optim, clip (None: no clipping)."""
    task = make_task(task_name, hp.get("seq_len"), text)
    history = {"loss": [], "norm": [], "clipped": []}
    if resume_dir is not None:
        model, opt, history, seed = resume(resume_dir, task, hp)
        out = out or resume_dir
    else:
        model, opt = build(task, hp, seed)
    start = len(history["loss"])
    steps = hp["steps"]
    print_fn(f"rnnlab train {task.name}: {hp['model']} hidden {hp['hidden']} layers "
             f"{hp['layers']}, {hp['optim']} lr {hp['lr']}, clip {hp['clip']}, steps "
             f"{start}..{steps}, batch {hp['batch']}, seq-len {task.seq_len}")
    progress = Progress(start, steps)
    t0 = time.perf_counter()
    step = start
    try:
        for step in range(start + 1, steps + 1):
            x, y = task.batch(np.random.default_rng([seed, step]), hp["batch"])
            if x.dtype.kind == "f":
                x = x.astype(model.rnn.dtype)
            for m in model.modules:
                m.zero_grad()
            pred, _ = model(x)
            loss, d = task.loss_and_grad(pred, y)
            model.backward(d)
            norm = clip_grad_norm_(model.modules, hp["clip"] if hp["clip"] else math.inf)
            clipped = min(norm, hp["clip"]) if hp["clip"] else norm
            opt.step()
            history["loss"].append(float(loss))
            history["norm"].append(float(norm))
            history["clipped"].append(float(clipped))
            progress.update(step, loss, norm)
    except KeyboardInterrupt:
        progress.close()
        done = len(history["loss"])
        if out:
            save(out, model, opt, task, hp, history, seed)
            print_fn(f"interrupted after step {done}; checkpoint in {out}; continue with "
                     f"--resume {out}")
        raise
    progress.close()
    if out:
        save(out, model, opt, task, hp, history, seed)
        if png and not curves(history, os.path.join(out, "curves.png"),
                              f"{task.name}, {hp['model']}", hp["clip"]):
            print_fn("curves.png not written: it needs matplotlib (pip install matplotlib)")
    model.eval()
    value, base = task.evaluate(model), task.baseline()
    elapsed = time.perf_counter() - t0
    print_fn(f"trained {steps - start} steps in {elapsed:.1f} s" +
             (f"; wrote {out}" if out else ""))
    print_fn(f"test {task.metric} {value:.4f} (baseline {base:.4f})")
    return value, base, history


def curves(history, path, title, clip=None):
    """Loss and gradient norm (before and after clipping) per step, log scale."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    steps = np.arange(1, len(history["loss"]) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(steps, history["loss"], lw=0.8)
    a.set_xlabel("step")
    a.set_ylabel("training loss")
    a.set_yscale("log")
    a.set_title(f"loss ({title})", fontsize=10)
    b.plot(steps, history["norm"], lw=0.8, label="before clipping")
    if clip:
        b.plot(steps, history["clipped"], lw=0.8, label=f"after clipping (max {clip})")
    b.set_xlabel("step")
    b.set_ylabel("global gradient norm")
    b.set_yscale("log")
    b.legend(fontsize=8)
    b.set_title("gradient norm", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def sample(run_dir, prime="", length=200, temperature=1.0, seed=0):
    """Text from a charlm checkpoint: feed ``prime``, then draw ``length`` characters."""
    tensors, meta = load_run(run_dir)
    if meta["task"]["task"] != "charlm":
        raise CheckpointError(f"{run_dir} holds a checkpoint of task "
                              f"{meta['task']['task']!r}; sample needs one of charlm")
    if not temperature > 0:
        raise ValueError(f"--temperature must be positive, got {temperature}")
    cfg = meta["model"]
    chars = meta["task"]["chars"]
    model = SeqModel(cfg["kind"], cfg["input_size"], cfg["hidden_size"], cfg["num_layers"],
                     cfg["out_features"], cfg["read"], cfg["vocab"], cfg["embedding_dim"])
    model.load_tensors(tensors)
    model.eval()
    lookup = {c: i for i, c in enumerate(chars)}
    unknown = sorted(set(prime) - set(lookup))
    if unknown:
        raise TaskError(f"--prime has characters the model never saw: {unknown[:10]}")
    rng = np.random.default_rng(seed)
    idx = [lookup[c] for c in prime] or [int(rng.integers(len(chars)))]
    out, state = list(prime), None
    logits, state = model(np.array(idx)[:, None], state)
    for _ in range(length):
        z = logits[-1].astype(np.float64) / temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        nxt = int(rng.choice(len(chars), p=p))
        out.append(chars[nxt])
        logits, state = model(np.array([[nxt]]), state)
    return "".join(out)
