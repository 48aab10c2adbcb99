"""The bench's rounds compared in one placement of the CPUs (tools/rounds.py) and the
reading they rest on (sequence/placement.py)."""
import itertools
import os

import pytest
from hypothesis import given, settings, strategies as st

from rnnlab.tools import rounds as R


def _fake(readings):
    """A probe that returns the given readings in turn, and a spawn that numbers its
    calls: (probe, spawn, calls)."""
    it = iter(readings)
    calls = []

    def spawn(name):
        calls.append(name)
        return (name, len(calls))
    return (lambda: next(it)), spawn, calls


def test_even_readings():
    assert R.even([70, 75, 139.9]) and R.even([None, 70, None]) and R.even([]) and R.even([5])
    assert not R.even([70, 141]) and not R.even([340, None, 70])


def test_a_round_whose_readings_disagree_runs_again():
    # round 1: 70 | a 70 | b 340 -> again; round 2 and 3 agree
    probe, spawn, calls = _fake([70, 70, 340, 72, 71, 73, 330, 340, 335])
    kept, where = R.run_rounds(["a", "b"], spawn, 2, probe)
    assert calls == ["a", "b"] * 3
    assert kept == {"a": [("a", 3), ("a", 5)], "b": [("b", 4), ("b", 6)]}
    assert where == {"ns": [72, 335], "again": 1, "uneven": 0}
    assert R.tag(where) == "rt 72-335 +1"


def test_after_again_tries_a_round_counts_as_it_came():
    probe, spawn, calls = _fake([70, 340] * 10)
    kept, where = R.run_rounds(["a"], spawn, 2, probe, again=1)
    assert len(calls) == 3 and kept["a"] == [("a", 2), ("a", 3)]
    assert where["again"] == 1 and where["uneven"] == 2
    assert R.tag(where).endswith("+1!")


def test_no_probe_every_round_counts():
    _, spawn, calls = _fake([])
    kept, where = R.run_rounds(["a", "b", "c"], spawn, 3, None)
    assert len(calls) == 9 and [len(v) for v in kept.values()] == [3, 3, 3]
    assert where == {"ns": [None] * 3, "again": 0, "uneven": 0} and R.tag(where) == ""
    assert "not read" in R.legend(None, 3)[0]
    assert all(len(line) <= 100 for line in R.legend(lambda: 1.0, 3))


@settings(max_examples=200, deadline=None)
@given(names=st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True),
       rounds=st.integers(1, 4), again=st.integers(0, 4),
       readings=st.lists(st.one_of(st.none(), st.floats(50, 500)), min_size=40, max_size=40))
def test_rounds_any_readings(names, rounds, again, readings):
    """Whatever the readings: exactly ``rounds`` rounds kept for every name, in the order
    they ran, at most ``again`` run again, and a round kept although its readings disagreed
    only once the tries were spent."""
    probe, spawn, calls = _fake(itertools.cycle(readings))
    kept, where = R.run_rounds(names, spawn, rounds, probe, again=again)
    assert all(len(v) == rounds for v in kept.values())
    assert where["again"] <= again and len(calls) == len(names) * (rounds + where["again"])
    assert len(where["ns"]) == rounds and where["uneven"] <= rounds
    if where["uneven"]:
        assert where["again"] == again
    for n in names:
        assert [c for c in kept[n]] == sorted(kept[n], key=lambda c: c[1])
    assert isinstance(R.tag(where), str) and "\n" not in R.tag(where)


# -- the reading itself (numba) ----------------------------------------------------------
placement = pytest.importorskip("rnnlab.sequence.placement")
TWO = len(os.sched_getaffinity(0)) >= 2


@pytest.mark.skipif(not TWO, reason="needs two CPUs")
def test_round_trip_between_two_cpus():
    mine = os.sched_getaffinity(0)
    ns = placement.round_trip_ns(trips=200, tries=2)
    assert ns is not None and 1 < ns < 1e6
    assert os.sched_getaffinity(0) == mine                  # the caller's affinity back
    here = min(mine)
    assert placement.round_trip_ns(cpus=(here, here)) is None


def test_round_trip_needs_two_cpus(monkeypatch):
    monkeypatch.setattr(placement.os, "sched_getaffinity", lambda pid: {0})
    assert placement.round_trip_ns() is None


@pytest.mark.skipif(not TWO, reason="needs two CPUs")
def test_round_trip_gives_up_rather_than_waits(monkeypatch):
    """A side that waits past PATIENCE polls stops both (the other CPU busy elsewhere):
    no reading, no hang; a CPU the thread may not run on: no reading either."""
    mine = os.sched_getaffinity(0)
    monkeypatch.setattr(placement, "PATIENCE", 0)
    assert placement.round_trip_ns(trips=50, tries=1) is None
    monkeypatch.undo()
    cpu = min(os.sched_getaffinity(0))
    assert placement.round_trip_ns(cpus=(cpu, 10 ** 6)) is None
    assert placement.round_trip_ns(cpus=(10 ** 6, cpu)) is None
    assert os.sched_getaffinity(0) == mine


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux's VmHWM")
def test_bench_peak_rss_is_the_process_own():
    """A worker's peak RSS is its own, not its parent's (ru_maxrss is kept across fork
    and exec: a 300 MB parent made every child read 300 MB)."""
    import subprocess
    import sys
    big = bytearray(200 * 2 ** 20)
    big[::4096] = b"\1" * len(big[::4096])                  # touched: resident
    code = "from rnnlab.tools.bench import _peak_rss; print(_peak_rss())"
    child = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True).stdout)
    assert child < 150 * 2 ** 20 and len(big)


def test_bench_ratio_is_per_round(monkeypatch):
    """x is the median over rounds of each round's ratio (the rounds' processes ran in
    one placement), not the ratio of the two medians: rnnlab 1, 2, 10 ms against torch 3,
    2, 4 reads 1.00x (per round 3, 1, 0.4), not 1.50x."""
    from rnnlab.tools import bench
    times = {"rnnlab": itertools.cycle([1e-3, 2e-3, 10e-3]),
             "torch": itertools.cycle([3e-3, 2e-3, 4e-3])}            # train, then infer
    monkeypatch.setattr(bench, "probe_or_none", lambda: None)
    monkeypatch.setattr(bench, "_spawn", lambda fw, *a: {"median": next(times[fw]), "rss": 0})
    lines = []
    rows, head = bench.run(kinds=["gru"], sizes=[(3, 2, 4, 5)], rounds=3,
                           frameworks=("rnnlab", "torch"), print_fn=lines.append)
    assert [r["what"] for r in rows] == ["train", "infer"]
    for row in rows:
        assert row["torch"]["x"] == 1.0 and row["rnnlab"]["ms"] == 2.0
        assert row["torch"]["ms"] == 3.0 and "2.00 (1.0-10.0)" in bench.format_row(row)
        assert bench.format_row(row).split()[6:8] == ["3.00", "1.00"]     # torch: ms, x
    assert lines[-2:] == [bench.format_row(r) for r in rows]
    assert any("the same round" in line for line in head)
    assert R.ratio({"a": [{"median": 4}], "b": [{"median": 2}]}, "a", "b") == 2


def test_bench_step_ratio_is_per_round(monkeypatch):
    from rnnlab.tools import bench
    times = {"rnnlab": itertools.cycle([1e-6, 2e-6, 10e-6]),
             "frozen": itertools.cycle([1e-6, 1e-6, 1e-6]),
             "torch": itertools.cycle([3e-6, 2e-6, 4e-6])}
    monkeypatch.setattr(bench, "probe_or_none", lambda: None)
    monkeypatch.setattr(bench, "_spawn_step", lambda fw, *a: {"median": next(times[fw])})
    rows = bench.run_steps(["gru"], hidden=(8,), layers=(1,), rounds=3,
                           frameworks=("rnnlab", "torch"), print_fn=lambda line: None)
    torch = rows[0]["torch"]
    assert torch["x"] == 1.0 and torch["xf"] == 3.0 and torch["us"] == 3.0
    assert " 3.0 1.00 3.00" in bench.format_step_row(rows[0])
