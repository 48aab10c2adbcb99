"""rnnlab train / rnnlab sample: every task runs, checkpoints resume exactly (also after
Ctrl-C), torch loads the weights, bad input exits 2 with one line."""
import json
import os

import numpy as np
import pytest

from rnnlab.tools import cli

PHRASES = "".join(f"{s} {v} {o}.\n" for s in ("the cat", "a dog", "my friend")
                  for v in ("sees", "likes") for o in ("the ball", "a river", "green apples")) * 12


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def text(tmp_path):
    p = tmp_path / "phrases.txt"
    p.write_text(PHRASES)
    return p


@pytest.mark.parametrize("task", ["adding", "copy", "charlm", "digits"])
def test_every_task_runs_and_writes(capsys, tmp_path, text, task):
    if task == "digits":
        pytest.importorskip("sklearn")
    out = tmp_path / "run"
    extra = ["--text", text, "--seq-len", "16"] if task == "charlm" else []
    code, stdout, err = run(capsys, "train", task, "--steps", "6", "--batch", "4", "--hidden",
                            "8", "--out", out, *extra)
    assert code == 0, err
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("test ") and "(baseline " in last
    names = sorted(os.listdir(out))
    assert {"model.safetensors", "optimizer.npz", "history.json"} <= set(names)
    with np.load(out / "optimizer.npz", allow_pickle=False) as z:
        assert any(f.startswith("state/") for f in z.files)
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 6 and all(n >= c for n, c in zip(history["norm"],
                                                                       history["clipped"]))


def test_resume_equals_uninterrupted(capsys, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--hidden", "8", "--batch", "4", "--seq-len", "10"]
    assert run(capsys, "train", "adding", "--steps", "12", "--out", a, *common)[0] == 0
    assert run(capsys, "train", "adding", "--steps", "5", "--out", b, *common)[0] == 0
    assert run(capsys, "train", "adding", "--steps", "12", "--resume", b, *common)[0] == 0
    from rnnlab.io import load_safetensors
    ta, _ = load_safetensors(a / "model.safetensors")
    tb, meta = load_safetensors(b / "model.safetensors")
    assert meta["step"] == "12"
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)


def test_ctrl_c_saves_a_resumable_checkpoint(capsys, tmp_path, monkeypatch):
    from rnnlab.train import loop
    real = loop.clip_grad_norm_
    calls = {"n": 0}

    def interrupt(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(loop, "clip_grad_norm_", interrupt)
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "train", "adding", "--steps", "10", "--hidden", "8",
                          "--batch", "4", "--out", out)
    assert code == 130 and "--resume" in stdout
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 3
    monkeypatch.setattr(loop, "clip_grad_norm_", real)
    code, stdout, _ = run(capsys, "train", "adding", "--steps", "10", "--hidden", "8",
                          "--batch", "4", "--resume", out)
    assert code == 0 and "steps 3..10" in stdout


def test_torch_loads_the_checkpoint(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    out = tmp_path / "run"
    assert run(capsys, "train", "adding", "--steps", "3", "--hidden", "8", "--batch", "4",
               "--model", "lstm", "--layers", "2", "--out", out)[0] == 0
    tensors = st.load_file(str(out / "model.safetensors"))
    rnn, head = torch.nn.LSTM(2, 8, num_layers=2), torch.nn.Linear(8, 1)
    rnn.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("rnn.")})
    head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
    from rnnlab.train.loop import load_run
    from rnnlab.train.model import SeqModel
    t, meta = load_run(str(out))
    cfg = meta["model"]
    model = SeqModel(cfg["kind"], cfg["input_size"], cfg["hidden_size"], cfg["num_layers"],
                     cfg["out_features"], cfg["read"])
    model.load_tensors(t)
    x = np.random.default_rng(0).random((5, 3, 2)).astype(np.float32)
    ours, _ = model.eval()(x)
    with torch.no_grad():
        theirs = head(rnn(torch.from_numpy(x))[0][-1]).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_sample(capsys, tmp_path, text):
    out = tmp_path / "lm"
    assert run(capsys, "train", "charlm", "--text", text, "--steps", "3", "--hidden", "8",
               "--seq-len", "16", "--out", out)[0] == 0
    code, stdout, _ = run(capsys, "sample", out, "--prime", "the ", "--length", "30",
                          "--seed", "1")
    assert code == 0 and stdout.startswith("the ") and len(stdout.rstrip("\n")) >= 34
    assert run(capsys, "sample", out, "--prime", "€")[0] == 2


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
                 ["train", "adding", "--lr", "0"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
    out = tmp_path / "run"
    assert run(capsys, "train", "adding", "--steps", "2", "--hidden", "8", "--out", out)[0] == 0
    code, _, err = run(capsys, "train", "adding", "--steps", "4", "--hidden", "16",
                       "--resume", out)
    assert code == 2 and "--hidden 8" in err
    code, _, err = run(capsys, "train", "copy", "--steps", "4", "--hidden", "8",
                       "--resume", out)
    assert code == 2 and "task 'adding'" in err


@pytest.mark.slow
def test_adding_defaults_solve_it(capsys, tmp_path):
    """The documented command reaches test MSE < 0.01 (baseline ~0.167)."""
    code, stdout, _ = run(capsys, "train", "adding", "--seq-len", "50", "--out", tmp_path / "d")
    assert code == 0
    mse = float(stdout.strip().splitlines()[-1].split()[2])
    assert mse < 0.01


@pytest.mark.slow
def test_charlm_learns_phrases(capsys, tmp_path):
    import random
    random.seed(0)
    subj, verb = ["the cat", "a small dog", "my old friend"], ["likes", "sees", "draws"]
    obj = ["the red ball", "a long river", "green apples"]
    p = tmp_path / "t.txt"
    p.write_text("\n".join(f"{random.choice(subj)} {random.choice(verb)} {random.choice(obj)}."
                           for _ in range(2000)))
    assert run(capsys, "train", "charlm", "--text", p, "--steps", "800", "--out",
               tmp_path / "lm")[0] == 0
    code, sample, _ = run(capsys, "sample", tmp_path / "lm", "--prime", "the cat ",
                          "--length", "150", "--temperature", "0.5")
    phrases = [o for o in obj if o in sample] + [v for v in verb if v in sample]
    assert code == 0 and len(phrases) >= 3, sample
