"""Shared by the tests of the threaded and compiled step paths (test_pair,
test_directions, test_rows_split, test_row_step, test_pair_step, test_kernels): a torch
layer and an rnnlab float32 layer with the same parameters, the three calls (zero state,
a given state, unbatched) compared between them, the same in-place edit of both, work on
several threads at once, a script in a fresh interpreter, and the one-thread call that
every threaded path must equal to the bit."""
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import rnnlab
from rnnlab import GRU, LSTM, RNN


#: The layer kinds and options the rows-in-halves tests run (inference and training).
SPLIT_CASES = [(LSTM, {}), (GRU, {}), (RNN, {"nonlinearity": "relu"}),
               (LSTM, {"bias": False, "batch_first": True}), (GRU, {"bidirectional": True})]


def batch_inputs(cls, kw, rng, N, T, I, H):
    """(x, h0, state) for a float32 layer of these options (2 layers; state: (h0, c0) for
    an LSTM, c0 h0 reversed), x drawn first, then h0."""
    D = 2 if kw.get("bidirectional") else 1
    x = rng.standard_normal((N, T, I) if kw.get("batch_first") else (T, N, I))
    x = x.astype(np.float32)
    h0 = rng.standard_normal((2 * D, N, H)).astype(np.float32)
    return x, h0, ((h0, h0[::-1].copy()) if cls is LSTM else h0)


def torch_pair(cls, kw, I, H, L, seed=0, **more):
    """(torch, torch's layer, rnnlab's float32 layer with its parameters), both in eval
    mode."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    tm = getattr(torch.nn, cls.__name__)(I, H, num_layers=L, **kw, **more).eval()
    om = cls(I, H, num_layers=L, dtype=np.float32, **kw, **more).eval()
    om.load_state_dict({k: v.detach().numpy().copy() for k, v in tm.state_dict().items()})
    return torch, tm, om


def three_calls_equal_torch(cls, kw, T, N, seed=0):
    """A 2-layer bidirectional (5 -> 6) layer called with a zero state, a given state and
    an unbatched input, against torch's (float32 tolerance). Returns (om, the three
    argument tuples, the three results)."""
    torch, tm, om = torch_pair(cls, kw, 5, 6, 2, seed, bidirectional=True)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, T, 5) if kw.get("batch_first") else (T, N, 5))
    x = x.astype(np.float32)
    h0 = rng.standard_normal((4, N, 6)).astype(np.float32)
    state = (h0, h0[::-1].copy()) if cls is LSTM else h0
    tstate = tuple(map(torch.from_numpy, state)) if cls is LSTM else torch.from_numpy(h0)
    one = x[0] if kw.get("batch_first") else x[:, 0]
    calls = [(x,), (x, state), (one,)]                       # zeros, given, unbatched
    with rnnlab.no_grad():
        got = [om(*args) for args in calls]
    with torch.no_grad():
        want = [tm(torch.from_numpy(x)), tm(torch.from_numpy(x), tstate),
                tm(torch.from_numpy(one))]
    for (y, s), (ty, ts) in zip(got, want):
        np.testing.assert_allclose(y, ty.numpy(), rtol=1e-5, atol=1e-6)
        for a, b in zip(s if cls is LSTM else [s], ts if cls is LSTM else [ts]):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-6)
    return om, calls, got


def edit_both(torch, tm, om, edit, at):
    """The same in-place edit of torch's layer and rnnlab's (nothing tells rnnlab):
    "scale" halves weight_hh_l1, "nan" puts NaN into weight_ih_l0[at]; None: nothing."""
    if edit == "scale":
        with torch.no_grad():
            tm.weight_hh_l1.mul_(0.5)
        om.weight_hh_l1[...] *= 0.5
    elif edit == "nan":
        with torch.no_grad():
            tm.weight_ih_l0[at] = float("nan")
        om.weight_ih_l0[at] = np.nan


def in_threads(work, n):
    """work(i) for i < n, each on a thread of its own, all at once; returns what they
    raised."""
    errors = []

    def run(i):
        try:
            work(i)
        except Exception as exc:                     # pragma: no cover - returned
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


#: For scripts run by script_prints_ok: run_child(child) runs child(queue) in a forked
#: process and returns what it put on the queue (the script imports multiprocessing).
FORK_CHILD = """
def run_child(child):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    p = ctx.Process(target=child, args=(queue,))
    p.start()
    got = queue.get(timeout=60)
    p.join(timeout=60)
    assert p.exitcode == 0, p.exitcode
    return got
"""


def who_ran_second(monkeypatch, delay):
    """driver's and halves' run_both counted, each call's first part started ``delay`` s late (the
    worker has long taken the second by then), set_num_threads unset and the pair not
    cooling down; returns the list of who ran each call's second part (True: the worker,
    False: the caller after it, None: the caller alone)."""
    from rnnlab.sequence import driver, halves, kernels, pair
    monkeypatch.setitem(kernels._state, "threads", None)
    pair._state.update(cool=0.0, low=0)
    ran, real = [], pair.run_both

    def counted(first, second, spin=False):
        def late():
            time.sleep(delay)
            return first()
        pair._state["both"] = None
        result = real(late, second, spin)
        ran.append(pair._state["both"])
        return result
    monkeypatch.setattr(driver, "run_both", counted)
    monkeypatch.setattr(halves, "run_both", counted)
    return ran


def script_prints_ok(tmp_path, name, text):
    """Runs ``text`` as a script in a fresh interpreter; asserts it printed ok."""
    script = tmp_path / name
    script.write_text(text)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def one_thread(m, *args):
    """m(*args) unrecorded with rnnlab.set_num_threads(1)'s setting: no pair, no halves,
    no directions at once (the one-thread path every threaded one must equal)."""
    from rnnlab.sequence import kernels
    kernels._state["threads"] = 1
    try:
        with rnnlab.no_grad():
            return m(*args)
    finally:
        kernels._state["threads"] = None


def equal_bits(a, b):
    """Two layer results (output, state or (h, c)) equal to the bit."""
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        if isinstance(x, tuple):
            equal_bits(x, y)
        else:
            np.testing.assert_array_equal(x, y)


def failing_on_the_worker(kernel_for):
    """kernel_for whose kernels raise MemoryError when the pair's worker calls them."""
    def wrapped(*args, **kw):
        k = kernel_for(*args, **kw)

        def kernel(*a):
            if threading.current_thread().name == "rnnlab-pair":
                raise MemoryError("the worker's allocation")
            return k(*a)
        return kernel
    return wrapped


def worker_spinning(key, timeout=5.0):
    """Whether the pair's worker spins for step-box requests of ``key`` (0: it does not
    spin) within ``timeout`` seconds."""
    from rnnlab.sequence import pair_step
    t0 = time.monotonic()
    while pair_step.BOX[pair_step.B_STATE] != key:
        if time.monotonic() - t0 > timeout:
            return False
        time.sleep(0.001)
    return True


def until_the_worker_serves(call, check):
    """call() (a kernel in role 1: its first item the ticks waited + 1, 0 when the caller
    ran alone), check(result) on every try, until the spinning worker served one (another
    thread on the worker's CPU, torch's OpenMP threads after a call, may keep it from its
    claim: up to 100 tries). Returns (the last result, served() before it)."""
    from rnnlab.sequence import pair_step
    for _ in range(100):
        served = pair_step.served()
        pair_step._keep_off()
        result = call()
        check(result)
        if result[0]:
            break
        time.sleep(0.02)
    return result, served


def count_planned_calls(monkeypatch, calls):
    """Append True to ``calls`` for each call the shorter path (nn/quick.py) ran on the
    pair (pair_call.PairCall.run; one it could not run goes on to the general path, whose
    driver.pair_in a test counts)."""
    from rnnlab.sequence import pair_call
    real = pair_call.PairCall.run

    def run(self, *a):
        done = real(self, *a)
        if done is not None:
            calls.append(True)
        return done
    monkeypatch.setattr(pair_call.PairCall, "run", run)
