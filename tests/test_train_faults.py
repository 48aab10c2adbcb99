"""Training never loses or corrupts a run: a write that fails at any of its points, a
SIGKILL at any moment, Ctrl-C inside a step or a NaN loss each leave a checkpoint that
resumes to exactly the uninterrupted run (compared bit for bit), and a failed write of a
file leaves the old file as it was."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import rnnlab
from rnnlab.io import atomic
from rnnlab.train import checkpoint, loop
from rnnlab.train.tasks import COMMON, DEFAULTS

HP = dict(DEFAULTS["adding"], **COMMON)
HP.update(hidden=8, batch=4, seq_len=10, steps=8, eval_every=2)


def _final(run_dir):
    """(every weight, the history) of a run directory's latest checkpoint."""
    model, _, state = checkpoint.read_checkpoint(str(run_dir))
    return model.state_dict(), state["history"]


def _same(a, b):
    (wa, ha), (wb, hb) = a, b
    assert sorted(wa) == sorted(wb)
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    assert ha["loss"] == hb["loss"] and ha["eval"] == hb["eval"]


def _quiet(*a, **k):
    pass


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    loop.run("adding", dict(HP), out=str(out), print_fn=_quiet)
    return _final(out)


class _Failing:
    """Counts the renames that finish a write (os.replace of every atomic write, the
    rename of a checkpoint directory) and fails the k-th."""

    def __init__(self, k):
        self.k, self.n = k, 0

    def wrap(self, real):
        def call(*a, **kw):
            self.n += 1
            if self.n == self.k:
                raise OSError(28, "No space left on device (injected)")
            return real(*a, **kw)
        return call


def test_a_write_failing_at_any_point_leaves_a_resumable_run(tmp_path, monkeypatch,
                                                             uninterrupted):
    counter = _Failing(0)
    monkeypatch.setattr(atomic.os, "replace", counter.wrap(os.replace))
    monkeypatch.setattr(checkpoint.os, "rename", counter.wrap(os.rename))
    loop.run("adding", dict(HP), out=str(tmp_path / "count"), print_fn=_quiet)
    points = counter.n                                   # write points of a whole run
    assert points >= 20
    every = range(1, points + 1)                         # all under -m slow, else a fifth
    for k in (every if os.environ.get("RNNLAB_ALL_POINTS") else
              sorted(set(every[::5]) | set(every[-4:]))):
        out = tmp_path / f"k{k}"
        failing = _Failing(k)
        monkeypatch.setattr(atomic.os, "replace", failing.wrap(os.replace))
        monkeypatch.setattr(checkpoint.os, "rename", failing.wrap(os.rename))
        with pytest.raises(OSError, match="injected"):
            loop.run("adding", dict(HP), out=str(out), print_fn=_quiet)
        monkeypatch.setattr(atomic.os, "replace", os.replace)
        monkeypatch.setattr(checkpoint.os, "rename", os.rename)
        latest = out / "checkpoints" / "LATEST"
        if latest.exists() and latest.read_text() != f"ckpt-{HP['steps']:07d}":
            loop.run("adding", dict(HP), resume_dir=str(out), print_fn=_quiet)
        elif not latest.exists():                        # failed before a first checkpoint
            loop.run("adding", dict(HP), out=str(out), force=True, print_fn=_quiet)
        _same(_final(out), uninterrupted)
        leftovers = [f for f in os.listdir(out) + os.listdir(out / "checkpoints")
                     if f.endswith(".tmp") or ".tmp" in f]
        assert not leftovers, (k, leftovers)


_KILLABLE = r"""
import sys
from rnnlab.train import loop
from rnnlab.train.tasks import COMMON, DEFAULTS
hp = dict(DEFAULTS["adding"], **COMMON)
hp.update(hidden=8, batch=4, seq_len=10, steps=int(sys.argv[2]), eval_every=1)
resume = sys.argv[1] if sys.argv[3] == "resume" else None
loop.run("adding", hp, out=sys.argv[1], resume_dir=resume, print_fn=lambda *a: None)
"""


@pytest.mark.slow
def test_every_write_point_under_slow(tmp_path, monkeypatch, uninterrupted):
    monkeypatch.setenv("RNNLAB_ALL_POINTS", "1")
    test_a_write_failing_at_any_point_leaves_a_resumable_run(tmp_path, monkeypatch,
                                                             uninterrupted)


def test_sigkill_at_any_moment_leaves_a_resumable_run(tmp_path):
    """A real SIGKILL at several moments of a run that checkpoints every step; each time
    the run resumes from what is on disk, and ends where the uninterrupted run ends."""
    steps = 100
    whole = tmp_path / "whole"
    subprocess.run([sys.executable, "-c", _KILLABLE, str(whole), str(steps), "new"],
                   check=True, timeout=300)
    out = tmp_path / "killed"
    rng = np.random.default_rng(0)
    mid = []
    for attempt in range(3):
        latest = out / "checkpoints" / "LATEST"
        if latest.exists() and latest.read_text() == f"ckpt-{steps:07d}":
            break                                        # it finished between two kills
        how = "resume" if latest.exists() else "new"
        p = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(out), str(steps), how])
        target = f"ckpt-{int(rng.integers(10, 90)) + 5 * attempt:07d}"
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:      # kill once the run is
            try:                                                 # past a random step, a
                if (out / "checkpoints" / "LATEST").read_text() >= target:   # moment
                    break                                        # into the next writes
            except OSError:
                pass
            time.sleep(0.002)
        time.sleep(rng.random() * 0.02)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if (out / "checkpoints" / "LATEST").exists():
            mid.append((out / "checkpoints" / "LATEST").read_text())
    assert any(m != f"ckpt-{steps:07d}" for m in mid), mid     # some kills landed mid-run
    latest = out / "checkpoints" / "LATEST"
    if not latest.exists() or latest.read_text() != f"ckpt-{steps:07d}":   # not done yet
        how = "resume" if latest.exists() else "new"
        if how == "new" and out.exists():
            import shutil
            shutil.rmtree(out)
        subprocess.run([sys.executable, "-c", _KILLABLE, str(out), str(steps), how],
                       check=True, timeout=300)
    _same(_final(out), _final(whole))


def test_ctrl_c_inside_a_step_saves_a_consistent_state(tmp_path, monkeypatch, uninterrupted):
    """SIGINT arriving in the middle of an optimizer step: the step completes, the run
    stops after it with its checkpoint, exit 130; resuming gives the uninterrupted run."""
    real = rnnlab.optim.Adam.step
    calls = {"n": 0}

    def step(self):
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGINT)          # lands while the step runs
        return real(self)
    monkeypatch.setattr(rnnlab.optim.Adam, "step", step)
    out = tmp_path / "run"
    lines = []
    with pytest.raises(KeyboardInterrupt):
        loop.run("adding", dict(HP), out=str(out), print_fn=lines.append)
    assert "interrupted after step 5" in lines[-1] and "--resume" in lines[-1]
    assert (out / "checkpoints" / "LATEST").read_text() == "ckpt-0000005"
    monkeypatch.setattr(rnnlab.optim.Adam, "step", real)
    loop.run("adding", dict(HP), resume_dir=str(out), print_fn=_quiet)
    _same(_final(out), uninterrupted)


def test_ctrl_c_exit_code(tmp_path, monkeypatch, capsys):
    real = rnnlab.optim.Adam.step

    def step(self):
        os.kill(os.getpid(), signal.SIGINT)
        return real(self)
    monkeypatch.setattr(rnnlab.optim.Adam, "step", step)
    from rnnlab.tools import cli
    assert cli.main(["train", "adding", "--steps", "5", "--hidden", "8", "--out",
                     str(tmp_path / "r")]) == 130
    assert "continue with --resume" in capsys.readouterr().out


def test_a_nan_loss_stops_before_it_changes_anything(tmp_path, monkeypatch, capsys):
    """The first NaN loss stops the run before its step: exit 1 naming the step and what
    to change, the last good checkpoint kept; a resumed run meeting it again keeps it too."""
    from rnnlab.train import tasks
    real = tasks.Adding.loss_and_grad
    seen = {"n": 0}

    def poisoned(self, pred, y):
        seen["n"] += 1
        loss, d = real(self, pred, y)
        return (float("nan"), d) if seen["n"] == 5 else (loss, d)
    monkeypatch.setattr(tasks.Adding, "loss_and_grad", poisoned)
    from rnnlab.tools import cli
    out = tmp_path / "run"
    argv = ["train", "adding", "--steps", "8", "--hidden", "8", "--batch", "4", "--seq-len",
            "10", "--eval-every", "2"]
    assert cli.main(argv + ["--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "step 5" in err and "--lr" in err and "--clip" in err and "is kept" in err
    assert (out / "checkpoints" / "LATEST").read_text() == "ckpt-0000004"
    good = (out / "model.safetensors").read_bytes()
    assert all(np.isfinite(v).all() for v in rnnlab.load(out).state_dict().values())
    seen["n"] = 4                                        # the resumed run meets it at step 5
    assert cli.main(argv + ["--resume", str(out)]) == 1
    assert (out / "model.safetensors").read_bytes() == good


def test_real_learning_rate_explosion_stops(tmp_path, capsys):
    """The issue's case: a huge learning rate without clipping; the run stops at the first
    non-finite loss instead of saving NaN weights."""
    from rnnlab.tools import cli
    code = cli.main(["train", "adding", "--steps", "40", "--hidden", "8", "--batch", "8",
                     "--seq-len", "10", "--optim", "sgd", "--lr", "1e6", "--clip", "none",
                     "--eval-every", "2", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and "the loss is" in err
    if (tmp_path / "r" / "model.safetensors").exists():
        assert all(np.isfinite(v).all()
                   for v in rnnlab.load(tmp_path / "r").state_dict().values())


_FULL_DISK = r"""
import resource, sys
import numpy as np, rnnlab
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
try:
    rnnlab.save(rnnlab.GRU(8, 64), sys.argv[1])          # ~ 80 KB: over the limit
except OSError as exc:
    print("refused", exc.errno)
"""


@pytest.mark.parametrize("ext", [".safetensors", ".npz"])
def test_a_failed_save_keeps_the_old_file(tmp_path, ext):
    path = tmp_path / f"m{ext}"
    rnnlab.save(rnnlab.GRU(2, 3), path)
    before = path.read_bytes()
    r = subprocess.run([sys.executable, "-c", _FULL_DISK, str(path)], capture_output=True,
                       text=True, timeout=120)
    assert "refused" in r.stdout, r.stderr[-1000:]
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]
    assert repr(rnnlab.load(path)) == "GRU(2, 3)"


def test_history_json_is_the_checkpoints(tmp_path):
    out = tmp_path / "run"
    loop.run("adding", dict(HP), out=str(out), print_fn=_quiet)
    top = json.loads((out / "history.json").read_text())
    assert top == _final(out)[1]


def test_a_damaged_checkpoint_is_refused_by_name(tmp_path, capsys):
    """A truncated optimizer.npz (or state.json) in the latest checkpoint: --resume exits 2
    with one line naming the checkpoint, not a BadZipFile traceback."""
    from rnnlab.tools import cli
    out = tmp_path / "run"
    loop.run("adding", dict(HP), out=str(out), print_fn=_quiet)
    ck = out / "checkpoints" / (out / "checkpoints" / "LATEST").read_text()
    for name in ("optimizer.npz", "state.json"):
        good = (ck / name).read_bytes()
        (ck / name).write_bytes(good[:len(good) // 2])
        code = cli.main(["train", "adding", "--steps", "12", "--hidden", "8", "--batch", "4",
                         "--seq-len", "10", "--resume", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and "is damaged" in err and len(err.strip().splitlines()) == 1, err
        (ck / name).write_bytes(good)
