"""Cold start: kernels compile on first use, one kernel at a time, announced when numba's
cache has none; `rnnlab warmup` builds them all ahead; the bench can time a cold start."""
import warnings

import pytest

from rnnlab.cells import FAMILIES
from rnnlab.sequence import kernels
from rnnlab.tools import cli

pytest.importorskip("numba")
pytestmark = pytest.mark.skipif(not kernels.available(), reason="compiled kernels are off")


def test_warmup_command(capsys):
    assert cli.main(["warmup"]) == 0
    out = capsys.readouterr().out
    for kind in ("rnn", "gru", "lstm"):
        assert f"{kind}: " in out
    assert "numba's cache: " in out and "NUMBA_CACHE_DIR" in out


def test_kernels_build_one_at_a_time_and_announce_a_cold_cache(monkeypatch):
    from rnnlab.sequence import _compiled
    fam = FAMILIES["gru"]
    built = kernels._Built(fam, _compiled.specialise(fam))
    monkeypatch.setattr(_compiled, "cache_state", lambda fns: (False, "/some/cache"))
    monkeypatch.setitem(kernels._state, "announced", False)
    with pytest.warns(kernels.KernelCompileWarning, match="compiling .* gru .*/some/cache.*"
                      "rnnlab warmup"):
        cell = built.get("cell")
    assert cell is not None and built.done == {"cell"}       # nothing else was built
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # announced once per process
        assert built.get("forward") is not None
    assert built.done == {"cell", "forward"}


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_warm_compiles_every_kernel_a_call_can_take(kind):
    """After warm (``rnnlab warmup``) no call compiles: every kernel but the threaded
    rows step (started on its first use) has its argument types compiled."""
    fam = FAMILIES[kind]
    if fam.units is None:
        pytest.skip("a family without compiled units")
    assert kernels.warm(fam)
    built = kernels.kernels(fam, next(iter(fam.units.shapes)))
    missing = [key for key, fn in dict.items(built) if kernels._warmed(key)
               and not fn.signatures]
    assert missing == []


@pytest.mark.parametrize("where", ["_compiled", "_loops", "_atomics", "tuning", "family"])
def test_an_edit_to_inlined_code_names_new_kernels(monkeypatch, where):
    """numba's cache checks only the cached function's own file: a family's loops are
    filed under a hash of every file inlined into them, so an edit to any is compiled
    again rather than served stale."""
    import importlib
    from rnnlab.sequence import _compiled
    fam = FAMILIES["lstm"]
    module = (importlib.import_module("rnnlab.cells.lstm") if where == "family" else
              importlib.import_module("rnnlab" + (".sequence." if where[0] == "_" else ".")
                                      + where))
    before = _compiled._tag(fam.units)
    real = _compiled._read
    monkeypatch.setattr(_compiled, "_read", lambda path: real(path) + (
        b"# edited" if path == module.__file__ else b""))
    assert _compiled._tag(fam.units) != before


def test_a_kernel_that_fails_to_build_is_the_numpy_path(monkeypatch):
    from rnnlab.sequence import _compiled
    fam = FAMILIES["lstm"]
    built = kernels._Built(fam, _compiled.specialise(fam))

    def broken(fam, k):
        raise RuntimeError("no compiler here")
    monkeypatch.setattr(kernels, "_warm", broken)
    monkeypatch.setitem(kernels.FAILED, "lstm", None)
    assert built.get("step") is None and "no compiler here" in kernels.FAILED["lstm"]


def test_cold_start_lines():
    from rnnlab.tools.cold import format_cold
    lines = format_cold({"import": 0.1, "gru": 3.0, "lstm": 7.0},
                        {"import": 0.1, "gru": 0.3, "lstm": 0.05})
    assert lines[0].endswith("gru 3.00 + lstm 7.00 = 10.1 s") and "empty" in lines[0]
    assert lines[1].endswith("= 0.4 s") and "cache filled" in lines[1]


@pytest.mark.slow
def test_cold_start_is_measured_in_fresh_processes():
    from rnnlab.tools.cold import cold_start
    cold, cached = cold_start(["rnn"])
    assert cold["rnn"] > 5 * cached["rnn"]          # compiled, then loaded from the cache


def test_parallel_warmup_shares_the_families_out_by_compile_time(monkeypatch, capsys):
    """rnnlab warmup --jobs N: the costliest family first, each to the least loaded
    process; with every kernel in the cache no process is started; --jobs is a positive
    integer (a clear CLI error otherwise)."""
    from rnnlab.tools import warmup as W
    assert W._shares(["rnn", "rnn_relu", "gru", "lstm"], 2) == [["lstm", "rnn_relu"],
                                                                ["gru", "rnn"]]
    assert W._shares(["rnn", "gru"], 4) == [["gru"], ["rnn"]]
    assert W._shares(["lstm"], 1) == [["lstm"]]
    started = []
    monkeypatch.setattr(W.subprocess, "Popen", lambda *a, **k: started.append(a))
    assert W.build_in_parallel(4) == [] and started == []      # all cached (the session's)
    assert cli.main(["warmup", "--jobs", "3"]) == 0 and started == []
    assert "processes at once" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["warmup", "--jobs", "0"])
    assert "--jobs" in capsys.readouterr().err
    monkeypatch.setattr(W.kernels, "cache_state", lambda fam: (False, None))   # all to do

    def refused(*a, **k):
        raise OSError("no processes here")
    monkeypatch.setattr(W.subprocess, "Popen", refused)
    assert W.warmup(print, jobs=2) == 0                   # built here instead, no traceback
    out = capsys.readouterr().out
    assert "rnn: " in out and "processes at once" not in out


@pytest.mark.slow
def test_parallel_warmup_from_an_empty_cache(tmp_path):
    """Two processes compile every family into an empty cache; the next process loads
    them all from it."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    run = [sys.executable, "-m", "rnnlab.tools.cli", "warmup", "--jobs", "2"]
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0 and "compiling in 2 processes at once" in first.stdout
    second = subprocess.run(run, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0
    assert second.stdout.count("loaded from the cache") == len(
        [f for f in FAMILIES.values() if f.units is not None]), second.stdout
