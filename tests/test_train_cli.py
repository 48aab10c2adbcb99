"""rnnlab train / sample: every task runs and writes a run directory that rnnlab, torch,
onnxruntime and Keras can use; held-out evaluation, units and warnings; the checks made
before the first step; bad input exits 2 with one line."""
import json
import os
import re

import pytest

import rnnlab
from rnnlab.tools import cli

PHRASES = "".join(f"{s} {v} {o}.\n" for s in ("the cat", "a dog", "my friend")
                  for v in ("sees", "likes") for o in ("the ball", "a river", "green apples")) * 12
SMALL = ["--hidden", "8", "--batch", "4"]


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def text(tmp_path):
    p = tmp_path / "phrases.txt"
    p.write_text(PHRASES)
    return p


def _task_argv(task, text):
    return ["--text", text, "--seq-len", "16"] if task == "charlm" else []


@pytest.mark.parametrize("task", ["adding", pytest.param("copy", marks=pytest.mark.slow),
                                  "charlm", "digits"])       # copy: also resumed below
def test_every_task_runs_writes_and_converts_whole(capsys, tmp_path, text, task):
    """A run directory: LATEST and BEST checkpoints, the model, history with held-out
    entries, curves; rnnlab.load gives the SequenceModel back; converted whole to ONNX,
    Keras and torch, each run in its runtime equals it (rnnlab convert's own check)."""
    if task == "digits":
        pytest.importorskip("sklearn")
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "train", task, "--steps", "6", *SMALL, "--eval-every", "3",
                            "--out", out, *_task_argv(task, text))
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith("test ") and "(baseline " in lines[-1]
    assert any(("nats" in line or "MSE" in line) and "held-out" in line for line in lines)
    names = set(os.listdir(out))
    assert {"model.safetensors", "best.safetensors", "history.json", "checkpoints"} <= names
    latest = (out / "checkpoints" / "LATEST").read_text()
    assert latest == "ckpt-0000006"
    assert set(os.listdir(out / "checkpoints" / latest)) == {
        "model.safetensors", "optimizer.npz", "state.json"}
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 6 and [e["step"] for e in history["eval"]] == [3, 6]
    assert all(n >= c for n, c in zip(history["norm"], history["clipped"]))
    model = rnnlab.load(out)
    assert isinstance(model, rnnlab.SequenceModel) and repr(rnnlab.load(
        out / "model.safetensors")) == repr(model)
    for ext in (".onnx", ".keras", ".pt"):
        pytest.importorskip({".onnx": "onnxruntime", ".keras": "keras", ".pt": "torch"}[ext])
        code, stdout, err = run(capsys, "convert", out, tmp_path / f"m{ext}")
        assert code == 0 and " ok" in stdout and "ran the source in rnnlab" in stdout, err


def test_run_equals_the_sequence_model_it_saves(capsys, tmp_path, text):
    """The saved model predicts what the training run's model predicted (float input and
    tokens), and sample generates from the charlm run."""
    out = tmp_path / "lm"
    assert run(capsys, "train", "charlm", "--text", text, "--steps", "3", *SMALL,
               "--seq-len", "16", "--out", out)[0] == 0
    model = rnnlab.load(out)
    assert model.tokens is not None and model.readout == "every"
    idx = model.encode("the cat")
    assert model.predict(idx[:, None]).shape == (7, 1)
    code, stdout, _ = run(capsys, "sample", out, "--prime", "the ", "--length", "30",
                          "--seed", "1")
    assert code == 0 and stdout.startswith("the ") and len(stdout.rstrip("\n")) >= 34
    assert run(capsys, "sample", out, "--prime", "€")[0] == 2


def test_checks_before_the_first_step(capsys, tmp_path, text):
    out = tmp_path / "run"
    common = ["--steps", "4", *SMALL, "--seq-len", "10"]
    f = tmp_path / "story.txt"
    f.write_text("keep me")
    code, _, err = run(capsys, "train", "adding", *common, "--out", f)
    assert code == 2 and "is a file" in err and f.read_text() == "keep me"
    assert run(capsys, "train", "adding", *common, "--out", out)[0] == 0
    before = (out / "model.safetensors").read_bytes()
    code, _, err = run(capsys, "train", "adding", *common, "--out", out)
    assert code == 2 and "holds another run" in err and "--force" in err
    assert (out / "model.safetensors").read_bytes() == before
    assert run(capsys, "train", "adding", *common, "--seed", "3", "--out", out,
               "--force")[0] == 0
    assert (out / "model.safetensors").read_bytes() != before
    code, _, err = run(capsys, "train", "adding", *common, "--resume", out)
    assert code == 2 and "4 steps done" in err
    code, stdout, _ = run(capsys, "train", "adding", "--steps", "2", *SMALL)
    assert code == 0 and "no --out: nothing will be saved" in stdout


def test_resume_refuses_other_data(capsys, tmp_path, text):
    out = tmp_path / "lm"
    argv = ["--steps", "2", *SMALL, "--seq-len", "16"]
    assert run(capsys, "train", "charlm", "--text", text, *argv, "--out", out)[0] == 0
    other = tmp_path / "other.txt"                          # same characters, other text
    other.write_text(PHRASES[::-1])
    code, _, err = run(capsys, "train", "charlm", "--text", other, "--steps", "4", *SMALL,
                       "--seq-len", "16", "--resume", out)
    assert code == 2 and "a different text" in err
    code, _, err = run(capsys, "train", "charlm", "--text", text, "--steps", "4", "--hidden",
                       "16", "--batch", "4", "--seq-len", "16", "--resume", out)
    assert code == 2 and "--hidden 8" in err


def test_small_text_warns_and_names_units(capsys, tmp_path):
    """A 4 KB text can only be memorised: the run says how much it needs; progress and
    results name their units."""
    small = tmp_path / "small.txt"
    small.write_text(PHRASES[:4000])
    code, stdout, _ = run(capsys, "train", "charlm", "--text", small, "--steps", "4", *SMALL,
                          "--seq-len", "16", "--eval-every", "2")
    assert code == 0
    assert "the text has 4,000 characters; below about 8,000" in stdout
    assert "nats" in stdout and "test bits/char" in stdout


def test_new_flags_reach_the_model_and_optimizer(capsys, tmp_path, text):
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", "adding", "--steps", "4", *SMALL, "--seq-len", "10",
                       "--layers", "2", "--bidirectional", "--dropout", "0.3", "--optim",
                       "adamw", "--weight-decay", "0.05", "--schedule", "cosine", "--out", out)
    assert code == 0, err
    model = rnnlab.load(out)
    assert model.rnn.bidirectional and model.rnn.dropout == 0.3 and model.rnn.num_layers == 2
    state = json.loads((out / "checkpoints" / "ckpt-0000004" / "state.json").read_text())
    assert state["train"]["optim"] == "adamw" and state["schedule"]["last_epoch"] == 4
    code, _, err = run(capsys, "train", "adding", "--steps", "4", *SMALL, "--dropout", "0.3")
    assert code == 2 and "--layers 2" in err


def test_help_lists_commands_and_task_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(c in out for c in ("explain", "verify", "gradcheck", "train", "sample",
                                  "convert", "bench"))
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert "task defaults" in out and "charlm  model gru, hidden 128" in out


def test_optimizer_takes_modules_not_parameters():
    with pytest.raises(TypeError, match="pass the modules, not their parameters"):
        rnnlab.optim.Adam(rnnlab.GRU(2, 3).parameters())


@pytest.mark.parametrize("argv, message", [
    (["train", "charlm"], "needs --text"),
    (["train", "charlm", "--text", "/nonexistent/file.txt"], "cannot read"),
    (["train", "adding", "--resume", "EMPTY"], "no checkpoint"),
    (["train", "copy", "--seq-len", "4"], "at least 11"),
    (["train", "adding", "--text", "x"], "only for charlm"),
    (["sample", "EMPTY"], "no checkpoint"),
])
def test_bad_input_exits_2(capsys, tmp_path, argv, message):
    argv = [str(tmp_path) if a == "EMPTY" else a for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_more_bad_input(capsys, tmp_path, text):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    code, _, err = run(capsys, "train", "charlm", "--text", empty)
    assert code == 2 and "empty" in err
    for argv in (["train", "nope"], ["train", "adding", "--steps", "-3"],
                 ["train", "adding", "--lr", "0"], ["train", "adding", "--dropout", "1.5"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
    out = tmp_path / "run"
    assert run(capsys, "train", "adding", "--steps", "2", *SMALL, "--out", out)[0] == 0
    code, _, err = run(capsys, "train", "copy", "--steps", "4", *SMALL, "--resume", out)
    assert code == 2 and "task 'adding'" in err


@pytest.mark.slow
def test_adding_defaults_solve_it(capsys, tmp_path):
    """The documented command reaches test MSE < 0.01 (baseline 0.161)."""
    code, stdout, _ = run(capsys, "train", "adding", "--seq-len", "50", "--out", tmp_path / "d")
    assert code == 0
    mse = float(stdout.strip().splitlines()[-1].split()[2])
    assert mse < 0.01


@pytest.mark.slow
def test_charlm_learns_the_builtin_text(capsys, tmp_path):
    """On the generated 100 KB text the defaults end clearly below the unigram baseline
    on held-out text, and samples show its phrases."""
    code, stdout, _ = run(capsys, "train", "charlm", "--text", "builtin", "--out",
                          tmp_path / "lm")
    last = stdout.strip().splitlines()[-1].split()
    value, base = float(last[2]), float(last[4].rstrip(")"))
    assert code == 0 and value < 0.6 * base, stdout[-500:]
    code, sample, _ = run(capsys, "sample", tmp_path / "lm", "--prime", "The ", "--length",
                          "200", "--temperature", "0.5")
    # its words are the text's words (the last one may be cut off); a model that learned
    # only letter frequencies writes few of them. (Which words a 200-character sample
    # holds is chance: the text has dozens of nouns and verbs.)
    from rnnlab.train.tasks import builtin_text
    vocab = set(re.findall(r"[A-Za-z]+", builtin_text()))
    words = re.findall(r"[A-Za-z]+", sample)[:-1]
    assert code == 0 and len(words) >= 20
    assert sum(w in vocab for w in words) >= 0.9 * len(words), sample
