"""``rnnlab bench``: rnnlab against torch and onnxruntime on the CPU, measured fairly.

Every (framework, family, size, workload) is timed in its own fresh Python process; the
frameworks alternate round by round (``--rounds``); inside a process the warm-up calls
(WARM_CALLS and WARM_SECONDS at least) are excluded and the median of the timed calls
(``--reps`` at least, and ``--min-seconds`` of them at least) is kept; the table shows the
median over
rounds and its spread (min-max); each round's processes run between readings of the CPUs'
placement and the round runs again when these disagree, and x is each round's ratio, their
median (rounds.py). All frameworks get the same thread count (torch
set_num_threads, onnxruntime intra_op_num_threads, threadpoolctl for NumPy's BLAS and
rnnlab.set_num_threads for rnnlab's own threaded step), and
the BLAS kernel NumPy runs is printed. Workloads: ``train`` (forward + backward with a
random upstream gradient on every output; not for onnxruntime), ``infer`` (forward in
eval / no_grad), and ``step`` (batch-1 step latency, see benchmarks/step_latency.py). The
memory column is the rise of the process's peak RSS over the calls (what a training step
or an inference call needs beyond the model and the data). ``--write FILE`` replaces the table
between the ``<!-- bench -->`` markers in FILE (BENCHMARKS.md) with this run's.

Cost model: per layer and direction a forward step costs 2*N*G*H*(I+H) FLOPs; a
training step 6*N*G*H*(I+H)*T.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from ..cells import FAMILIES as _ALL
from .rounds import legend, probe_or_none, ratio, run_rounds, tag

FAMILIES = tuple(k for k, f in _ALL.items() if f.torch_class and f.listed)   # torch has them
SIZES = [(100, 64, 256, 256), (200, 128, 512, 512), (50, 16, 32, 32),   # the issue's,
         (100, 16, 128, 128),                            # a mid batch (the rows in halves)
         (100, 1, 256, 256), (100, 1, 512, 512)]                         # batch-1 sequences
FRAMEWORKS = ("rnnlab", "torch", "onnxruntime")
MARK_START, MARK_END = "<!-- bench -->", "<!-- /bench -->"
#: Warm-up per process, every framework alike: calls until both are reached (one call
#: was not enough: rnnlab's pair, torch's and onnxruntime's thread pools settle over the
#: first calls; rnnlab GRU (100, 1, 512, 512) read 5.6, 3.8, 3.8, 4.3 ... ms, or 7.6, 5.6,
#: 5.3, 5.2, 3.4, 3.5 ..., LSTM (100, 1, 256, 256) 3.9, 2.6, 1.9, 1.6, 1.5, 1.5 ...).
WARM_CALLS, WARM_SECONDS = 3, 0.3
#: Timed calls per process: ``reps`` at least and until MIN_SECONDS have passed (five calls
#: of a 1 ms batch-1 sequence gave medians 20-50% apart between processes: its calls run
#: 0.87-1.35 ms within one process, tenth to ninetieth percentile; 2026-12-07).
MIN_SECONDS = 0.2


def blas_info():
    """Which BLAS kernel NumPy runs (threadpoolctl), as a short string."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    rows = [f"{i.get('internal_api')} {i.get('version')} {i.get('architecture', '')}"
            for i in threadpool_info() if i["user_api"] == "blas"]
    return "; ".join(rows) or "no BLAS found"


def flops(kind, T, N, I, H, training):
    from ..cells import by_kind
    return (6 if training else 2) * N * by_kind(kind).num_gates * H * (I + H) * T


def _peak_rss():
    """This process's peak RSS in bytes: Linux's VmHWM, its own (getrusage's ru_maxrss
    keeps the parent's peak across fork and exec: the bench's own ~190 MB hid every
    worker's rise below it); ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(fw, kind, T, N, I, H, what, reps, threads, onnx_path, min_seconds=MIN_SECONDS):
    """Runs in a fresh process: returns {"median": s, "calls": timed calls, "rss": bytes}."""
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    dy = rng.standard_normal((T, N, H)).astype(np.float32)
    if fw == "rnnlab":
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
        from ..nn import make_layer
        from ..sequence import kernels
        kernels.set_num_threads(threads)
        m = make_layer(kind, I, H, seed=0).train(what == "train")
        kernels.warm(m.family)         # numba's import, like torch's, before the baseline

        def call():
            if what == "train":
                m(x)
                m.backward(dy)
            else:
                m(x)
    elif fw == "torch":
        import torch
        from ..cells import by_kind
        torch.set_num_threads(threads)
        tm = getattr(torch.nn, by_kind(kind).torch_class)(I, H)
        tx, tdy = torch.from_numpy(x).requires_grad_(what == "train"), torch.from_numpy(dy)

        def call():
            if what == "train":
                tm(tx)[0].backward(tdy)
            else:
                with torch.no_grad():
                    tm(tx)
    else:
        s = _ort_session(onnx_path, threads)
        feeds = {"input": x, "h0": np.zeros((1, N, H), np.float32)}
        if _ALL[kind].has_cell_state:
            feeds["c0"] = np.zeros((1, N, H), np.float32)

        def call():
            s.run(None, feeds)
    base = _peak_rss()                                 # model and data in memory
    warm_up(call)                                      # excluded from the times
    times = timed(call, reps, min_seconds)
    return {"median": statistics.median(times), "calls": len(times),
            "rss": _peak_rss() - base}


def timed(call, reps, min_seconds):
    """The seconds of each call(): ``reps`` calls at least, and until ``min_seconds`` have
    passed since the first."""
    times, end = [], time.perf_counter() + min_seconds
    while len(times) < reps or time.perf_counter() < end:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def warm_up(call):
    """call() until it has run WARM_CALLS times and WARM_SECONDS have passed; how many."""
    end, calls = time.perf_counter() + WARM_SECONDS, 0
    while calls < WARM_CALLS or time.perf_counter() < end:
        call()
        calls += 1
    return calls


def _ort_session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    if threads:                                # 0: onnxruntime's default settings
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def step_worker(fw, kind, H, L, steps, threads, onnx_path):
    """Runs in a fresh process: the median time of one batch-1 step (after 200 warm-up
    steps) through an L-layer layer of width H, input size H. threads 0: each framework's
    default settings (no thread setting at all)."""
    import numpy as np
    x = np.random.default_rng(0).standard_normal((steps + 200, 1, H)).astype(np.float32)
    times = []
    if fw in ("rnnlab", "frozen"):             # layer.step / layer.freeze().step
        from ..nn import make_layer
        from ..sequence import kernels
        if threads:
            from threadpoolctl import threadpool_limits
            threadpool_limits(threads)
            kernels.set_num_threads(threads)   # as torch.set_num_threads below
        m, state = make_layer(kind, H, H, num_layers=L, seed=0).eval(), None
        stepper = m.freeze() if fw == "frozen" else m
        for t in range(steps + 200):
            t0 = time.perf_counter()
            y, state = stepper.step(x[t], state)
            times.append(time.perf_counter() - t0)
    elif fw == "torch":
        import torch
        from ..cells import by_kind
        if threads:
            torch.set_num_threads(threads)
        m, state = getattr(torch.nn, by_kind(kind).torch_class)(H, H, num_layers=L).eval(), None
        xt = torch.from_numpy(x)
        with torch.no_grad():
            for t in range(steps + 200):
                t0 = time.perf_counter()
                y, state = m(xt[t:t + 1], state)
                times.append(time.perf_counter() - t0)
    else:
        s = _ort_session(onnx_path, threads)
        h, c = np.zeros((L, 1, H), np.float32), np.zeros((L, 1, H), np.float32)
        has_c = any(i.name == "c0" for i in s.get_inputs())
        for t in range(steps + 200):
            feeds = {"input": x[t:t + 1], "h0": h, **({"c0": c} if has_c else {})}
            t0 = time.perf_counter()
            outs = s.run(None, feeds)
            times.append(time.perf_counter() - t0)
            h, c = outs[1], (outs[2] if has_c else c)
    return {"median": statistics.median(times[200:]), "rss": 0}


def run_steps(kinds, hidden=(64, 128, 256), layers=(1, 2), rounds=3, steps=None,
              threads=None, frameworks=FRAMEWORKS, print_fn=print):
    """Batch-1 step latency rows (same method as run)."""
    steps = steps or STEPS
    threads = threads or os.cpu_count()
    avail = [fw for fw in frameworks if fw == "rnnlab" or _importable(fw)]
    if "rnnlab" in avail:
        avail.insert(avail.index("rnnlab") + 1, "frozen")
    print_fn(STEP_LEGEND.format(steps=steps))
    rows, tmp, probe = [], tempfile.mkdtemp(), probe_or_none()
    for kind in kinds:
        for L in layers:
            for H in hidden:
                onnx_path = os.path.join(tmp, f"step_{kind}_{L}_{H}.onnx")
                if "onnxruntime" in avail:
                    from ..io import export_onnx
                    from ..nn import make_layer
                    export_onnx(make_layer(kind, H, H, num_layers=L, seed=0), onnx_path,
                                states=True)
                res, where = run_rounds(avail, lambda fw: _spawn_step(
                    fw, kind, H, L, steps, threads, onnx_path), rounds, probe)
                row = dict(kind=kind, L=L, H=H, placement=where)
                for fw, v in res.items():
                    us = [r["median"] * 1e6 for r in v]
                    row[fw] = dict(us=statistics.median(us), lo=min(us), hi=max(us))
                    if fw in ("torch", "onnxruntime"):        # per round, then the median
                        row[fw]["x"] = ratio(res, fw, "rnnlab")
                        row[fw]["xf"] = ratio(res, fw, "frozen") if "frozen" in res else None
                rows.append(row)
                print_fn(format_step_row(row))
    return rows


STEPS = 1500                 # timed batch-1 steps per process
STEP_LEGEND = ("batch-1 step, us: median over rounds (min-max), {steps} steps per process "
               "after 200 warm-up\nstep = layer.step, frozen = layer.freeze().step, after "
               "rnnlab.set_num_threads(T)\nT: everyone's threads; "
               "x: the other's time / step's, / frozen's in a round, the median over rounds\n"
               + "kind  L    H  " + "step (min-max)".ljust(17) + "frozen (min-max)".ljust(16)
               + "".join(f" {fw:>6} {'x':>4} {'x':>4}" for fw in ("torch", "ort")))


def format_step_row(r):
    def cell(v):
        return f"{v['us']:6.1f} ({v['lo']:.0f}-{v['hi']:.0f})".ljust(16) if v else " " * 16
    ours, frozen = r["rnnlab"], r.get("frozen")
    s = f"{r['kind']:4s} {r['L']:2d} {r['H']:4d}  {cell(ours)} {cell(frozen)}"
    for fw in ("torch", "onnxruntime"):
        if fw in r:
            v = r[fw]
            s += f" {v['us']:6.1f} {v['x']:4.2f}" + (f" {v['xf']:4.2f}" if frozen else "     ")
        else:
            s += " " * 17
    return (s + " " + tag(r.get("placement"))).rstrip()


def _spawn_step(fw, kind, H, L, steps, threads, onnx_path):
    code = ("import json, sys; from rnnlab.tools.bench import step_worker; "
            "print(json.dumps(step_worker(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7]), "
            "sys.argv[7])))")
    out = subprocess.run([sys.executable, "-c", code, fw, kind, str(H), str(L), str(steps),
                          str(threads), onnx_path], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bench step worker {fw} {kind} failed: {out.stderr.strip()[-300:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _kernels_info():
    """What rnnlab's GRU/LSTM rows run on: numba's version, or why the NumPy path."""
    if os.environ.get("RNNLAB_KERNELS", "").lower() == "numpy":
        return "off (RNNLAB_KERNELS=numpy)"
    try:
        import importlib.metadata as md
        return f"numba {md.version('numba')}"
    except Exception:
        return "off (numba not installed)"


def run(kinds=FAMILIES, sizes=SIZES, rounds=3, reps=5, threads=None,
        frameworks=FRAMEWORKS, print_fn=print, min_seconds=MIN_SECONDS):
    """The whole table; returns (rows, header lines)."""
    import numpy as np
    threads = threads or os.cpu_count()
    avail = [fw for fw in frameworks if fw == "rnnlab" or _importable(fw)]
    probe = probe_or_none()
    head = [f"threads={threads}; numpy BLAS: {blas_info()}"[:100],
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')} "
            f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', 'unset')}",
            f"frameworks: {', '.join(avail)}; {rounds} rounds, fresh processes",
            f"warm-up: {WARM_CALLS} calls and {WARM_SECONDS} s at least per process, excluded",
            f"timed: {reps} calls and {min_seconds:g} s of calls at least per process, their "
            "median",
            f"rnnlab's compiled kernels: {_kernels_info()}",
            "ms: median over rounds (min-max); MB: peak RSS rise",
            "x: torch's or onnxruntime's time / rnnlab's in the same round, the median over "
            "rounds", *legend(probe, rounds), ROW_LEGEND]
    for line in head:
        print_fn(line)
    rows = []
    tmp = tempfile.mkdtemp()
    for kind in kinds:
        for T, N, I, H in sizes:
            onnx_path = os.path.join(tmp, f"{kind}_{T}_{N}_{I}_{H}.onnx")
            if "onnxruntime" in avail:
                from ..io import export_onnx
                from ..nn import make_layer
                export_onnx(make_layer(kind, I, H, seed=0), onnx_path, states=True)
            for what in ("train", "infer"):
                fws = [fw for fw in avail if not (fw == "onnxruntime" and what == "train")]
                res, where = run_rounds(                 # frameworks alternate
                    fws, lambda fw: _spawn(fw, kind, T, N, I, H, what, reps, threads,
                                           onnx_path, min_seconds), rounds, probe)
                row = dict(kind=kind, T=T, N=N, I=I, H=H, what=what, threads=threads,
                           placement=where)
                for fw, vals in res.items():
                    ms = [v["median"] * 1e3 for v in vals]
                    row[fw] = dict(ms=statistics.median(ms), lo=min(ms), hi=max(ms),
                                   mb=float(np.median([v["rss"] for v in vals])) / 1e6)
                    if fw != "rnnlab":                        # per round, then the median
                        row[fw]["x"] = ratio(res, fw, "rnnlab")
                row["gflops"] = flops(kind, T, N, I, H, what == "train") / (
                    row["rnnlab"]["ms"] / 1e3) / 1e9
                rows.append(row)
                print_fn(format_row(row))
    return rows, head


def _importable(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None


def _spawn(fw, kind, T, N, I, H, what, reps, threads, onnx_path, min_seconds=MIN_SECONDS):
    code = ("import json, sys; from rnnlab.tools.bench import worker; "
            "print(json.dumps(worker(*sys.argv[1:3], *map(int, sys.argv[3:7]), sys.argv[7], "
            "int(sys.argv[8]), int(sys.argv[9]), sys.argv[10], float(sys.argv[11]))))")
    out = subprocess.run([sys.executable, "-c", code, fw, kind, str(T), str(N), str(I), str(H),
                          what, str(reps), str(threads), onnx_path, repr(float(min_seconds))],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bench worker {fw} {kind} failed: {out.stderr.strip()[-300:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


#: The sequence rows' column names (a row fits 100 columns with its placement tag)
ROW_LEGEND = (f"{'kind':4s} {'what':5s} {'T,N,I,H':15s} {'rnnlab':>7s} {'(min-max)':11s} "
              f"{'MB':>6s} {'torch':>7s} {'x':>4s} {'ort':>7s} {'x':>4s} placement")


def _spread(v):
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def format_row(r):
    """One sequence row: rnnlab's ms (min-max), its memory, torch's and onnxruntime's ms
    and x (per round, their median), the placement tag."""
    size = f"{r['T']},{r['N']},{r['I']},{r['H']}"
    ours = r["rnnlab"]
    spread = f"({_spread(ours['lo'])}-{_spread(ours['hi'])})"
    s = (f"{r['kind']:4s} {r['what']:5s} {size:15s} {ours['ms']:7.2f} {spread:11s} "
         f"{ours['mb']:4.0f}MB")
    for fw in ("torch", "onnxruntime"):
        if fw in r:
            s += f" {r[fw]['ms']:7.2f} {r[fw]['x']:4.2f}"
        else:
            s += " " * 13
    return (s + " " + tag(r.get("placement"))).rstrip()


def write_table(path, head, rows, command, step_rows=()):
    """Replace the table between the bench markers in ``path``."""
    with open(path) as f:
        text = f.read()
    if MARK_START not in text or MARK_END not in text:
        raise ValueError(f"{path} has no {MARK_START} ... {MARK_END} markers")
    body = "\n".join([f"`{command}` ({time.strftime('%Y-%m-%d')})", "", "```"] + head
                     + [format_row(r) for r in rows]
                     + ([STEP_LEGEND.format(steps=STEPS)] if step_rows else [])
                     + [format_step_row(r) for r in step_rows]
                     + ["```"])
    a, b = text.index(MARK_START) + len(MARK_START), text.index(MARK_END)
    from ..io.atomic import write_text
    write_text(path, text[:a] + "\n" + body + "\n" + text[b:])
