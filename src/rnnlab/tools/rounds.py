"""The bench's rounds, each compared in one placement of the CPUs.

A round runs every framework's process once, one after the other. Where the host moves a
virtual machine's CPUs between cores that share a cache and cores that do not, a round
can time one framework in a fast phase and the next in a slow one (sequence/placement.py:
every framework's two-thread work slows down 1.4-1.8x in the slow phases on the VM of
BENCHMARKS.md, so a ratio from such a round measures the machine, not the frameworks).
So the bench reads how far apart the first two CPUs are (a cache line's round trip,
``placement.round_trip_ns``) before, between and after the processes of a round; a round
counts when its readings agree (within SAME of each other); one that does not is run
again, at most ``again`` more times per row, after which a round counts as it came (and
the row says so). Where nothing can be read (no numba, one CPU) every round counts.
"""
import statistics

#: Readings within this factor of each other are taken as one placement (the VM of
#: BENCHMARKS.md: 65-105 ns near, 320-450 ns far)
SAME = 2.0


def probe_or_none():
    """``rnnlab.sequence.placement.round_trip_ns``, or None where it cannot run (numba,
    the ``fast`` extra, is not installed)."""
    try:
        from ..sequence.placement import round_trip_ns
    except ImportError:
        return None
    return round_trip_ns


def even(readings):
    """Whether these readings (ns; None: none) agree: all within SAME of each other
    (fewer than two readings always do)."""
    got = [r for r in readings if r is not None]
    return len(got) < 2 or max(got) <= SAME * min(got)


def run_rounds(names, spawn, rounds, probe, again=None):
    """``rounds`` kept rounds of spawn(name) for each name in turn, read with ``probe``
    (None: not read) before the first process, between processes and after the last.
    A round whose readings disagree is run again while at most ``again`` (default:
    ``rounds``) tries beyond ``rounds`` have been used; then kept as it is.

    Returns ({name: [spawn's result per kept round]}, where): where = {"ns": each kept
    round's median reading (None: not read), "again": rounds run again, "uneven": kept
    rounds whose readings disagreed}."""
    spare = rounds if again is None else again
    read = probe or (lambda: None)
    kept = {n: [] for n in names}
    where = {"ns": [], "again": 0, "uneven": 0}
    while len(where["ns"]) < rounds:
        readings, got = [read()], {}
        for n in names:
            got[n] = spawn(n)
            readings.append(read())
        agree = even(readings)
        if not agree and where["again"] < spare:
            where["again"] += 1
            continue
        for n in names:
            kept[n].append(got[n])
        ns = [r for r in readings if r is not None]
        where["ns"].append(statistics.median(ns) if ns else None)
        where["uneven"] += not agree
    return kept, where


def ratio(res, name, base):
    """The median over kept rounds of name's time / base's time in the same round (each
    round ran in one placement; the ratio of the two medians could pair one framework's
    fast rounds with the other's slow ones)."""
    return statistics.median(a["median"] / b["median"] for a, b in zip(res[name], res[base]))


def tag(where):
    """A row's placement in a few characters: ``rt 71`` (the kept rounds' readings, ns;
    ``rt 70-340`` where they differ between rounds), ``+2`` rounds run again, ``!`` a round
    kept with readings that disagreed; "" where nothing was read."""
    ns = [v for v in (where or {}).get("ns", []) if v is not None]
    if not ns:
        return ""
    lo, hi = min(ns), max(ns)
    s = f"rt {lo:.0f}" + (f"-{hi:.0f}" if not even([lo, hi]) else "")
    return s + (f" +{where['again']}" if where["again"] else "") + ("!" if where["uneven"]
                                                                      else "")


def legend(probe, rounds):
    """The header lines that say how the placement was read."""
    if probe is None:
        return ["placement: not read (needs numba, the fast extra); every round counts"]
    return ["placement: a cache line's round trip between CPUs (ns), read before, between "
            "and after",
            f"a round's processes; a round counts when they agree within {SAME:g}x, else "
            f"it runs again (<= {rounds} more)",
            "rt: the kept rounds' readings; +k: rounds run again; !: kept although they "
            "disagreed"]
