import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("KERAS_BACKEND", "jax")       # Keras tests run on the JAX backend

# Property-based tests: the default ("ci") profile draws the same examples on every run, so
# that CI on a clean clone tests what was tested here; HYPOTHESIS_PROFILE=fuzz draws new,
# random examples, 2000 per test (run it before a change lands: pytest -m "" with it set).
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def small(monkeypatch):
    """The pair (sequence/pair.py) for any size and from two steps (its thresholds are for
    speed only), off cooling; yields the list of its calls' results (True: it ran)."""
    from rnnlab.sequence import kernels, pair, pair_step
    monkeypatch.setattr(pair, "PAIR_MIN", 0)
    monkeypatch.setattr(pair, "PAIR_STEPS", 2)
    monkeypatch.setattr(pair, "PAIR_COOL", 0.0)      # tiny calls: the worker comes late
    monkeypatch.setattr(pair_step, "PAIR_STEP_COOL", 0.0)     # (the step box's rule too)
    monkeypatch.setitem(kernels._state, "threads", None)     # not set (other tests set it)
    pair._state.update(cool=0.0, low=0)
    calls = []

    def counting(real):
        def counted(*a):
            calls.append(real(*a))
            return calls[-1]
        return counted
    from rnnlab.sequence import driver                # the queue's path and the step box's
    monkeypatch.setattr(driver, "run_pair", counting(driver.run_pair))
    monkeypatch.setattr(driver, "pair_in", counting(driver.pair_in))
    from torch_pairs import count_planned_calls
    count_planned_calls(monkeypatch, calls)
    yield calls
    pair._state.update(cool=0.0, low=0)


def pytest_sessionstart(session):
    """Compile (or load from numba's cache) every family's kernels once, before the first
    test, so that no test pays numba's first compile (the first run after installing:
    41-70 s in two processes on 2 cores, docs/cli.md) and a shape-only test is not the one
    that takes 30 s."""
    import time
    import warnings

    from rnnlab.cells import FAMILIES
    from rnnlab.sequence import kernels
    from rnnlab.tools.warmup import build_in_parallel, default_jobs
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kernels.KernelCompileWarning)
        if kernels.available():              # a clean clone: the families compile in
            build_in_parallel(default_jobs())  # one process per core (rnnlab warmup's)
        built = [kind for kind, fam in FAMILIES.items() if kernels.warm(fam)]
    session.config._rnnlab_warmup = (built, time.perf_counter() - t0)


def pytest_terminal_summary(terminalreporter, config):
    built, seconds = getattr(config, "_rnnlab_warmup", ([], 0.0))
    terminalreporter.write_line(f"rnnlab kernels warmed up before the tests: "
                                f"{', '.join(built) or 'none (no numba)'} in {seconds:.1f} s")
