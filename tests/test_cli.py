"""Every subcommand and every failure exit of the rnnlab command."""
import subprocess
import sys

import pytest

from rnnlab.tools import cli


def run(capsys, *argv):
    """Run the command; every line it prints fits 100 columns (checked on every run; lines
    naming a file the test passed may be longer)."""
    code = cli.main(list(argv))
    out = capsys.readouterr()
    paths = [a for a in argv if "/" in a]
    long = [line for line in (out.out + out.err).splitlines()
            if len(line) > 100 and not any(p in line for p in paths)]
    assert not long, long[:3]
    return code, out.out, out.err


def test_explain_default_and_width(capsys):
    code, out, _ = run(capsys, "explain", "gru")
    assert code == 0
    assert "n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))" in out
    assert "weight_ih_l0           (6, 3)" in out
    assert "0 unexpected" in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_explain_all_options(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "states.png"
    code, out, _ = run(capsys, "explain", "lstm", "--input-size", "4", "--hidden-size", "3",
                       "--layers", "2", "--bidirectional", "--batch-first", "--proj-size", "2",
                       "--seq-len", "4", "--seed", "3", "--dtype", "float32",
                       "--lengths", "3,1,4", "--torch", "--png", str(png))
    assert code == 0, out
    assert png.stat().st_size > 1000
    assert "torch side by side" in out and "own last step" in out.lower()
    assert "c0      (4, 3, 3)" in out


@pytest.mark.parametrize("argv", [["explain", "gru", "--lengths", "3,x"],
                                  ["explain", "gru", "--layers", "0"],
                                  ["explain", "cnn"], ["verify", "--quick", "--full"],
                                  ["bench", "--sizes", "1,2,3"],
                                  ["bench", "--min-seconds", "-1"],
                                  ["bench", "--min-seconds", "inf"]])
def test_bad_arguments_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_explain_proj_errors(capsys):
    assert run(capsys, "explain", "gru", "--proj-size", "1")[0] == 2
    code, _, err = run(capsys, "explain", "lstm", "--hidden-size", "2", "--proj-size", "2")
    assert code == 2 and "below --hidden-size" in err


def test_verify_quick_passes(capsys):
    pytest.importorskip("torch")
    code, out, _ = run(capsys, "verify", "--quick", "--seed", "1", "--verbose")
    assert code == 0
    assert " 0 failed" in out and "lstm cell loop" in out
    assert "dweight_hh_l1_reverse" in out and "dbias_ih_l0" in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_verify_reports_failure(capsys, monkeypatch):
    pytest.importorskip("torch")
    import rnnlab.tools.conformance as conf
    real = conf.run_layer_case

    def off(case):
        errs = real(case)
        errs["dweight_hh_l0"] = 1.0
        return errs
    monkeypatch.setattr(conf, "run_layer_case", off)
    code, out, _ = run(capsys, "verify")
    assert code == 1 and "FAIL" in out


def test_verify_without_torch(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)           # import torch -> ImportError
    code, _, err = run(capsys, "verify", "--quick")
    assert code == 2 and "needs torch" in err


def test_gradcheck(capsys, monkeypatch):
    code, out, _ = run(capsys, "gradcheck", "--samples", "3")
    assert code == 0 and "lstm I3 H4 L2 T4 N3 bi P3 len f64" in out
    import rnnlab.tools.gradcheck as gc
    monkeypatch.setattr(gc, "check_layer", lambda case, samples: {"x": 1.0, "h0": 0.0, "w": 0.0})
    code, out, _ = run(capsys, "gradcheck")
    assert code == 1 and "FAIL" in out


def test_bench_needs_threadpoolctl(capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "threadpoolctl" else real(name, *a))
    code, _, err = run(capsys, "bench", "--kinds", "gru")
    assert code == 2 and "pip install threadpoolctl" in err


from rnnlab.tools.rounds import probe_or_none  # noqa: E402


def _untagged(tokens):
    """A bench row's fields before its placement tag (``rt 71 +1!``)."""
    return tokens[:tokens.index("rt")] if "rt" in tokens else tokens


def _tag_ns(tokens):
    """The first reading of a row's placement tag: ``rt 71``, ``rt 70-340 +1!`` -> 71, 70."""
    return float(tokens[tokens.index("rt") + 1].split("-")[0].rstrip("!"))


def test_bench_small(capsys, tmp_path):
    pytest.importorskip("threadpoolctl")
    doc = tmp_path / "B.md"
    doc.write_text("before\n<!-- bench -->\nold\n<!-- /bench -->\nafter\n")
    code, out, _ = run(capsys, "bench", "--kinds", "gru", "--sizes", "3,2,4,5", "--reps", "1",
                       "--rounds", "1", "--no-torch", "--no-onnxruntime", "--step-hidden", "8",
                       "--step-layers", "2", "--write", str(doc), "--min-seconds", "0.05")
    assert code == 0 and "gru  train 3,2,4,5" in out and "MB" in out and "fresh processes" in out
    assert "timed: 1 calls and 0.05 s of calls at least" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("gru   ")]
    assert [r[:3] for r in rows] == [["gru", "2", "8"]]
    assert all(len(_untagged(r)) == 7 for r in rows)   # step and frozen, each with (min-max)
    assert "placement: " in out                       # how the rounds were compared
    if probe_or_none() is not None:                   # numba: every row says where it ran
        tagged = [line.split() for line in out.splitlines() if line.startswith("gru  ")]
        assert len(tagged) == 3 and all(_tag_ns(r) > 0 for r in tagged)
    text = doc.read_text()
    assert "old" not in text and "gru  train 3,2,4,5" in text
    assert "--reps 1 --min-seconds 0.05 --write" in text       # the command, to run again
    assert text.startswith("before") and text.endswith("after\n")
    assert run(capsys, "bench", "--kinds", "tcn")[0] == 2
    assert run(capsys, "bench", "--kinds", "lstm", "--sizes", "3,2,4,5", "--reps", "1",
               "--rounds", "1", "--no-torch", "--no-onnxruntime", "--write",
               str(tmp_path / "none.md"), "--step-hidden", "none")[0] == 2
    assert run(capsys, "bench", "--no-sequences", "--step-hidden", "x")[0] == 2


def test_bench_warms_up_every_framework_alike(monkeypatch):
    """Warm-up: WARM_CALLS calls at least, and at least WARM_SECONDS of them."""
    import time
    from rnnlab.tools import bench
    assert bench.WARM_CALLS >= 3 and bench.WARM_SECONDS >= 0.3
    monkeypatch.setattr(bench, "WARM_SECONDS", 0.05)
    t0 = time.perf_counter()
    assert bench.warm_up(lambda: None) > bench.WARM_CALLS
    assert time.perf_counter() - t0 >= 0.05
    assert bench.warm_up(lambda: time.sleep(0.05)) == bench.WARM_CALLS


def test_bench_times_reps_and_min_seconds():
    """Timed calls per process: reps at least, and min_seconds of them at least."""
    import time
    from rnnlab.tools import bench
    assert bench.MIN_SECONDS > 0
    parser = cli.build_parser()
    assert parser.parse_args(["bench"]).min_seconds == bench.MIN_SECONDS    # one default
    t0 = time.perf_counter()
    assert len(bench.timed(lambda: None, 3, 0.05)) > 3
    assert time.perf_counter() - t0 >= 0.05
    assert len(bench.timed(lambda: time.sleep(0.02), 3, 0)) == 3
    assert 4 <= len(bench.timed(lambda: time.sleep(0.02), 2, 0.08)) <= 6
    res = bench.worker("rnnlab", "gru", 3, 2, 4, 5, "infer", 2, 1, "", 0.05)
    assert res["calls"] > 2 and res["median"] > 0


@pytest.mark.slow
def test_bench_against_torch_and_onnxruntime(capsys, tmp_path):
    """The columns of the other frameworks (10 s of fresh processes importing them)."""
    pytest.importorskip("threadpoolctl")
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    doc = tmp_path / "B.md"
    doc.write_text("before\n<!-- bench -->\nold\n<!-- /bench -->\nafter\n")
    code, out, _ = run(capsys, "bench", "--kinds", "lstm", "--sizes", "3,2,4,5", "--reps", "1",
                       "--rounds", "1", "--write", str(doc), "--step-hidden", "8",
                       "--step-layers", "1")
    text = doc.read_text()
    assert code == 0 and "old" not in text and "ort" in text and " torch " in text
    row = next(line.split() for line in text.splitlines() if line.startswith("lstm  1    8"))
    assert len(_untagged(row)) == 13 and "frozen (min-max)" in text   # step, frozen, torch, ort
    assert text.startswith("before") and text.endswith("after\n")


def test_python_dash_m():
    res = subprocess.run([sys.executable, "-m", "rnnlab", "explain", "rnn", "--seq-len", "2"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)" in res.stdout


def test_explain_works_without_torch(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    code, out, _ = run(capsys, "explain", "lstm", "--layers", "2", "--lengths", "2,3")
    assert code == 0 and "0 unexpected" in out
    code, out, _ = run(capsys, "explain", "gru", "--torch")
    assert code == 0 and "torch is not installed" in out


def test_version_and_defaults_in_help(capsys):
    import rnnlab
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"rnnlab {rnnlab.__version__}"
    with pytest.raises(SystemExit):
        cli.main(["explain", "--help"])
    out = capsys.readouterr().out
    assert "(default: 3)" in out and "(default: float64)" in out


def test_explain_defaults_work_together(capsys):
    code, out, _ = run(capsys, "explain", "lstm", "--proj-size", "2")
    assert code == 0 and "LSTM(3, 3, proj_size=2)" in out
    code, _, err = run(capsys, "explain", "lstm", "--proj-size", "3", "--hidden-size", "3")
    assert code == 2 and "--proj-size must be 0 or below" in err
    code, _, err = run(capsys, "explain", "gru", "--lengths", "3,1", "--batch", "3")
    assert code == 2 and "disagrees" in err
    code, _, err = run(capsys, "explain", "gru", "--lengths", "4,1", "--seq-len", "2")
    assert code == 2 and "shorter" in err
    code, out, _ = run(capsys, "explain", "gru", "--lengths", "4,1", "--seq-len", "6")
    assert code == 0 and "(6, 2, 3)" in out


def test_explain_gradients(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "g.png"
    code, out, _ = run(capsys, "explain", "gradients", "--png", str(png))
    assert code == 0 and "8 checks on the numbers, 0 unexpected" in out
    assert "it blows up to inf/NaN [holds]" in out and png.stat().st_size > 10000
    assert max(len(line) for line in out.splitlines() if str(png) not in line) <= 100
    code, out, _ = run(capsys, "explain", "gradients", "--radii", "0.3,0.9", "--seq-len", "40",
                       "--steps", "800")
    assert code == 0 and "rho=0.3" in out
    with pytest.raises(SystemExit):
        cli.main(["explain", "gradients", "--radii", "x"])
