"""The training loop of ``rnnlab train``: a SequenceModel, steps with gradient norms before
and after clipping, held-out evaluation every ``eval_every`` steps, checkpoints that switch
atomically (checkpoint.py), a stop at the first non-finite loss or gradient norm, and
Ctrl-C honoured between steps (a second Ctrl-C stops at once).
"""
import math
import os
import signal
import time

import numpy as np

from ..nn import SequenceModel
from . import optim as O
from .checkpoint import (FORMAT, CheckpointError, holds_run, read_checkpoint,
                         save_checkpoint)
from .clip import clip_grad_norm_
from .tasks import MIN_TEXT, make_task

OPTIMIZERS = {"adam": O.Adam, "adamw": O.AdamW, "sgd": O.SGD}


class NonFiniteLoss(RuntimeError):
    """The loss or the gradient norm became NaN or inf: training stopped before it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C: the run stopped between two steps, its checkpoint saved."""


def build(task, hp, seed):
    """The model, optimizer and schedule of a run."""
    model = SequenceModel(hp["model"], task.input_size, hp["hidden"], task.out_features,
                          num_layers=hp["layers"], bidirectional=hp["bidirectional"],
                          dropout=hp["dropout"] if hp["layers"] > 1 else 0.0,
                          vocab=task.vocab, readout=task.read, objective=task.objective,
                          tokens=task.tokens, seed=seed,
                          cell_options=hp.get("cell_options") or None)
    return (model,) + optimizer(model, hp)


def optimizer(model, hp):
    """(optimizer, schedule or None) over ``model`` for the run's settings."""
    kw = {"lr": hp["lr"]}
    if hp["weight_decay"] or hp["optim"] == "adamw":
        kw["weight_decay"] = hp["weight_decay"]
    opt = OPTIMIZERS[hp["optim"]](model, **kw)
    sched = None
    if hp["schedule"] == "step":
        sched = O.StepLR(opt, step_size=max(1, hp["steps"] // 3), gamma=0.3)
    elif hp["schedule"] == "cosine":
        sched = O.CosineAnnealingLR(opt, T_max=hp["steps"])
    return opt, sched


def eval_every(hp):
    return hp["eval_every"] or max(1, min(100, hp["steps"] // 10))


def check_out(out, resume_dir, force):
    """Where the run writes, checked before the first step: a file is refused; another run
    is refused unless --force (or --resume of it)."""
    if out is None:
        return None
    if os.path.exists(out) and not os.path.isdir(out):
        raise CheckpointError(f"--out {out} is a file; give a directory")
    if holds_run(out) and not force and (resume_dir is None or
                                         os.path.abspath(out) != os.path.abspath(resume_dir)):
        raise CheckpointError(f"--out {out} holds another run; pass --force to replace it, "
                              f"or --resume {out} to continue it")
    if force and holds_run(out) and resume_dir is None:
        import shutil
        shutil.rmtree(os.path.join(out, "checkpoints"), ignore_errors=True)
        for name in ("model.safetensors", "best.safetensors", "history.json", "curves.png"):
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
    return out


def _check_resume(state, task, hp, path):
    """A checkpoint fits this run: same task, data, model and optimizer; more steps."""
    try:
        if not all(isinstance(state[k], dict) for k in ("task", "train", "history")) or \
                not isinstance(state["step"], int) or state["step"] < 0 or \
                not isinstance(state["history"].get("loss"), list):
            raise TypeError
    except (KeyError, TypeError):
        raise CheckpointError(f"{path}: the checkpoint's state.json is damaged (its task, "
                              "settings, step or history are missing or malformed)") from None
    if state["task"].get("task") != task.name:
        raise CheckpointError(f"{path} is a checkpoint of task {state['task'].get('task')!r}, "
                              f"not {task.name!r}")
    for key, value in task.fingerprint().items():
        if state["task"].get(key) != value:
            what = {"text_sha256": "a different text", "chars": "another character set"}
            raise CheckpointError(f"{path} was trained on {what.get(key, f'another {key}')} "
                                  f"({key} {state['task'].get(key)!r:.40}, this run "
                                  f"{value!r:.40})")
    for key in ("model", "hidden", "layers", "optim", "bidirectional", "cell_options"):
        if state["train"].get(key) != hp.get(key):
            what = ("the variant options" if key == "cell_options"
                    else f"--{key.replace('_', '-')}")
            raise CheckpointError(f"{path} holds a model with {what} "
                                  f"{state['train'].get(key)}, this run asks for "
                                  f"{hp.get(key)}")
    done = state["step"]
    if hp["steps"] <= done:
        raise CheckpointError(f"{path} has {done} steps done; --steps {hp['steps']} must be "
                              "more to continue it")


class _StopFlag:
    """SIGINT sets a flag the loop reads between steps; a second one interrupts at once."""

    def __init__(self):
        self.set = False

    def __enter__(self):
        try:
            self.old = signal.signal(signal.SIGINT, self._handler)
        except ValueError:                        # not the main thread: no handler
            self.old = None
        return self

    def _handler(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        return False


def _state(task, hp, seed, step, history, model, sched):
    return {"format": FORMAT, "task": task.fingerprint(), "train": dict(hp, seed=seed),
            "step": step, "history": history,
            "rng": model.rnn._rng.bit_generator.state,
            "schedule": None if sched is None else sched.state_dict()}


def run(task_name, hp, seed=0, out=None, resume_dir=None, text=None, force=False,
        print_fn=print, png=True):
    """Train; returns (held-out metric, baseline, history). hp: model, hidden, layers,
    seq_len, batch, steps, lr, optim, clip (None: no clipping), dropout, bidirectional,
    weight_decay, schedule, eval_every."""
    task = make_task(task_name, hp.get("seq_len"), text)
    history = {"loss": [], "norm": [], "clipped": [], "eval": []}
    if resume_dir is not None:
        model, opt_state, state = read_checkpoint(resume_dir)
        _check_resume(state, task, hp, resume_dir)
        seed, history = state["train"]["seed"], state["history"]
        out = check_out(out or resume_dir, resume_dir, force)
        opt, sched = optimizer(model, hp)
        try:
            opt.load_state_dict(opt_state)
            if sched is not None and state.get("schedule"):
                sched.load_state_dict(state["schedule"])
            model.rnn._rng.bit_generator.state = state["rng"]
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{resume_dir}: the checkpoint does not fit this run "
                                  f"({str(exc)[:200]})") from None
    else:
        out = check_out(out, None, force)
        model, opt, sched = build(task, hp, seed)
    start, steps, every = len(history["loss"]), hp["steps"], eval_every(hp)
    if getattr(task, "chars", MIN_TEXT) < MIN_TEXT:
        print_fn(f"warning: the text has {task.chars:,} characters; below about "
                 f"{MIN_TEXT:,} a model can only memorise it (held-out bits/char end above "
                 "the baseline): give it more text")
    print_fn(f"rnnlab train {task.name}: {hp['model']} hidden {hp['hidden']} layers "
             f"{hp['layers']}{', bidirectional' if hp['bidirectional'] else ''}, "
             f"{hp['optim']} lr {hp['lr']}, clip {hp['clip']}, steps {start}..{steps}, batch "
             f"{hp['batch']}, seq-len {task.seq_len}; held-out every {every} steps")
    if out is None:
        print_fn("no --out: nothing will be saved")
    best = min((e["loss"] for e in history["eval"]), default=math.inf)
    t0, step = time.perf_counter(), start
    model.train()
    with _StopFlag() as stop:
        try:
            for step in range(start + 1, steps + 1):
                x, y = task.batch(np.random.default_rng([seed, step]), hp["batch"])
                if x.dtype.kind == "f":
                    x = x.astype(model.dtype)
                model.zero_grad()
                pred, _ = model(x)
                loss, d = task.loss_and_grad(pred, y)
                model.backward(d)
                norm = clip_grad_norm_(model, hp["clip"] if hp["clip"] else math.inf)
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    raise NonFiniteLoss(step, loss, norm)
                opt.step()
                if sched is not None:
                    sched.step()
                history["loss"].append(float(loss))
                history["norm"].append(float(norm))
                history["clipped"].append(float(min(norm, hp["clip"]) if hp["clip"] else norm))
                if step % every == 0 or step == steps:
                    best = _evaluate(task, model, opt, sched, hp, seed, step, history, best,
                                     out, print_fn, every)
                    model.train()
                elif step % max(1, steps // 20) == 0:
                    print_fn(f"step {step}/{steps}  loss {loss:.4f} {task.loss_unit}  grad "
                             f"norm {norm:.3g}")
                if stop.set:
                    raise Interrupted
        except NonFiniteLoss as exc:
            bad, value, norm = exc.args
            raise NonFiniteLoss(
                f"step {bad}: the loss is {value} and the gradient norm {norm}; stopped before "
                "that step changed the weights" + (f" (the last checkpoint in {out} is kept)"
                                                   if out else "")
                + f". Lower --lr (now {hp['lr']}) or clip the gradients (--clip, now "
                f"{hp['clip']})") from None
        except KeyboardInterrupt:
            done = len(history["loss"])
            if out and done > start:
                save_checkpoint(out, done, model, opt.state_dict(),
                                _state(task, hp, seed, done, history, model, sched))
                if png:
                    curves(history, os.path.join(out, "curves.png"),
                           f"{task.name}, {hp['model']}", hp["clip"], task.loss_unit)
            print_fn(f"interrupted after step {done}" + (
                f"; checkpoint in {out}; continue with --resume {out}" if out else ""))
            raise Interrupted from None
    if out and png and not curves(history, os.path.join(out, "curves.png"),
                                  f"{task.name}, {hp['model']}", hp["clip"], task.loss_unit):
        print_fn("curves.png not written: it needs matplotlib (pip install matplotlib)")
    model.eval()
    loss, value = task.evaluate(model)
    base = task.baseline()
    print_fn(f"trained {steps - start} steps in {time.perf_counter() - t0:.1f} s"
             + (f"; wrote {out}" if out else ""))
    print_fn(f"held-out loss {loss:.4f} {task.loss_unit}")
    worse = value > base if task.metric in ("mse", "bits/char") else value < base
    if worse:
        print_fn(f"warning: the held-out {task.metric} ends worse than the baseline (a model "
                 "that learned nothing): more data or steps, or a smaller model")
    print_fn(f"test {task.metric} {value:.4f} (baseline {base:.4f})")
    return value, base, history


def _evaluate(task, model, opt, sched, hp, seed, step, history, best, out, print_fn, every):
    """Held-out loss and metric at ``step``: recorded, printed, checkpointed (the best one
    kept beside the last), and an overfitting warning when held-out loss rises while the
    training loss falls."""
    loss, metric = task.evaluate(model)
    train = float(np.mean(history["loss"][-every:]))
    history["eval"].append({"step": step, "loss": float(loss), "metric": float(metric),
                            "train_loss": train})
    print_fn(f"step {step}/{hp['steps']}  loss {train:.4f} {task.loss_unit}  held-out "
             f"{loss:.4f} {task.loss_unit}, {task.metric} {metric:.4f}")
    ev = history["eval"]
    if len(ev) >= 3 and ev[-1]["loss"] > ev[-2]["loss"] > ev[-3]["loss"] and \
            ev[-1]["train_loss"] < ev[-3]["train_loss"] and not history.get("warned"):
        history["warned"] = True
        print_fn(f"warning: held-out loss rose from {ev[-3]['loss']:.4f} to "
                 f"{ev[-1]['loss']:.4f} while the training loss fell: the model is "
                 "memorising (the best checkpoint is kept as best.safetensors)")
    is_best = loss < best
    if out:
        save_checkpoint(out, step, model, opt.state_dict(),
                        _state(task, hp, seed, step, history, model, sched), best=is_best)
    return min(best, loss)


def curves(history, path, title, clip=None, unit="loss"):
    """Training and held-out loss, and the gradient norm before and after clipping, log
    scale; written atomically. False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from ..io.atomic import replacing
    steps = np.arange(1, len(history["loss"]) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(steps, history["loss"], lw=0.8, label="training")
    if history["eval"]:
        a.plot([e["step"] for e in history["eval"]], [e["loss"] for e in history["eval"]],
               marker="o", ms=3, lw=1.2, label="held-out")
    a.set_xlabel("step")
    a.set_ylabel(f"loss ({unit})")
    a.set_yscale("log")
    a.legend(fontsize=8)
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
    with replacing(path, ".png") as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return True


def sample(run_dir, prime="", length=200, temperature=1.0, seed=0):
    """Text from a charlm run: feed ``prime``, then draw ``length`` characters."""
    model, _, state = read_checkpoint(run_dir)
    if state["task"]["task"] != "charlm" or model.tokens is None:
        raise CheckpointError(f"{run_dir} holds a checkpoint of task "
                              f"{state['task']['task']!r}; sample needs one of charlm")
    return model.generate(prime, length, temperature, seed)


__all__ = ["run", "sample", "curves", "build", "optimizer", "CheckpointError", "NonFiniteLoss"]
