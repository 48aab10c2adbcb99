"""What each ``rnnlab`` subcommand does, given its parsed arguments (cli.py parses them
and catches what they raise). Each returns the exit status: 0 done, 1 a check failed,
2 the input was refused."""
import argparse
import sys
import time

from .cli_args import positive


def fail(command, message):
    print(f"rnnlab {command}: {message}", file=sys.stderr)
    return 2


def cmd_explain(args):
    from ..cells import by_kind, variant
    from ..nn import make_layer
    from .cli_args import variant_kwargs
    from .explain import Config, explain
    if args.kind == "gradients":
        from .explain_gradients import explain_gradients
        rep = explain_gradients(seq_len=args.seq_len or 100, hidden=args.hidden_size or 32,
                                radii=args.radii, seed=args.seed, steps=args.steps,
                                clip=args.clip, png=args.png)
        print(rep.text())
        return 0 if rep.ok else 1
    if args.proj_size and not by_kind(args.kind).supports_projection:
        return fail("explain", f"--proj-size is only supported for lstm, not {args.kind}")
    if args.nonlinearity != "tanh":
        try:
            variant(args.kind, nonlinearity=args.nonlinearity)
        except ValueError as exc:
            return fail("explain", f"--{exc}")
    if not args.reset_after:
        try:
            variant(args.kind, reset_after=False)
        except ValueError:
            return fail("explain", f"--no-reset-after is only for gru, not {args.kind}")
    options = variant_kwargs(args)
    if options:
        try:
            make_layer(variant(args.kind, reset_after=False).kind if not args.reset_after
                       else args.kind, 2, 2, **options)
        except (ValueError, TypeError) as exc:
            return fail("explain", str(exc))
    hidden = args.hidden_size or (args.proj_size + 1 if args.proj_size else 2)
    if args.proj_size < 0 or (args.proj_size and args.proj_size >= hidden):
        return fail("explain", f"--proj-size must be 0 or below --hidden-size (got "
                     f"{args.proj_size} and {hidden})")
    batch, seq_len = args.batch or 1, args.seq_len or 3
    if args.lengths is not None:
        if args.batch is not None and args.batch != len(args.lengths):
            return fail("explain", f"--batch {args.batch} disagrees with the "
                         f"{len(args.lengths)} --lengths given; leave --batch out")
        if args.seq_len is not None and args.seq_len < max(args.lengths):
            return fail("explain", f"--seq-len {args.seq_len} is shorter than the longest "
                         f"of --lengths ({max(args.lengths)})")
        batch, seq_len = len(args.lengths), args.seq_len or max(args.lengths)
    cfg = Config(kind=args.kind, input_size=args.input_size, hidden_size=hidden,
                 layers=args.layers, bidirectional=args.bidirectional,
                 batch_first=args.batch_first, proj_size=args.proj_size, seq_len=seq_len,
                 batch=batch, seed=args.seed, dtype=args.dtype, lengths=args.lengths,
                 nonlinearity=args.nonlinearity, reset_after=args.reset_after,
                 options=options)
    rep = explain(cfg, with_torch=args.torch, png=args.png)
    print(rep.text())
    return 0 if rep.ok else 1


def _fmt_err(e):
    return f"{e:9.1e}" if e == e else "      nan"


def cmd_verify(args):
    try:
        import torch  # noqa: F401
    except ImportError:
        print("rnnlab verify needs torch to compare against: pip install 'torch==2.13.0'",
              file=sys.stderr)
        return 2
    from ..cells import FAMILIES
    from .conformance import layer_matrix, passed, run_cell_case, run_layer_case
    import warnings
    warnings.filterwarnings("ignore", message=".*oneDNN.*")
    level = "full" if args.full else "quick"
    cases = layer_matrix(level, seed=args.seed)
    t0 = time.perf_counter()
    print(f"rnnlab verify --{level}: {len(cases)} layer configurations + cells, against torch "
          f"{torch.__version__}")
    print("tolerance: float64 max abs error <= 1e-10; float32 max abs error / max(1, |torch|) "
          "<= 1e-5")
    head = f"{'configuration':44s} {'output':>9s} {'states':>9s} {'d input':>9s} {'d params':>9s}"
    print(head + "  result")
    failures = 0

    def show(label, errs, dtype):
        nonlocal failures
        states = max([errs[k] for k in ("h_n", "c_n", "h_T", "c_T") if k in errs], default=0.0)
        out = errs.get("output", errs.get("h_T", 0.0))
        dinp = max(errs[k] for k in ("dx", "dh0", "dc0") if k in errs)
        dpar = max([v for k, v in errs.items() if k.startswith("dweight") or k.startswith("dbias")],
                   default=0.0)
        ok = passed(errs, dtype)
        failures += not ok
        print(f"{label[:44]:44s} {_fmt_err(out)} {_fmt_err(states)} {_fmt_err(dinp)} "
              f"{_fmt_err(dpar)}  {'ok' if ok else 'FAIL'}")
        if args.verbose or not ok:
            items = [f"{k} {v:.1e}" for k, v in errs.items()]
            for i in range(0, len(items), 3):
                print("    " + "   ".join(items[i:i + 3]))

    for case in cases:
        try:
            errs = run_layer_case(case)
        except Exception as exc:                               # a crash is a failure too
            failures += 1
            print(f"{case.label()[:44]:44s} ERROR {type(exc).__name__}: {exc}"[:100])
            continue
        show(case.label(), errs, case.dtype)
    kinds = [k for k, f in FAMILIES.items() if f.torch_class]
    for kind in kinds:
        for dtype in ("float64", "float32"):
            for unbatched in (False, True):
                label = f"{kind} cell loop{' unbatched' if unbatched else ''} {dtype}"
                show(label, run_cell_case(kind, unbatched=unbatched, dtype=dtype,
                                          seed=args.seed), dtype)
    total = len(cases) + 4 * len(kinds)
    print(f"{total - failures} passed, {failures} failed in {time.perf_counter() - t0:.1f} s")
    return 1 if failures else 0


def cmd_gradcheck(args):
    from .gradcheck import TOL, check_layer, default_cases
    print("rnnlab gradcheck: central differences (eps 1e-6) vs backward, float64")
    print("error = |a - n| / max(1, |a|, |n|) over sampled entries (a analytic, n numeric)")
    print(f"{'configuration':34s} {'x':>9s} {'states':>9s} {'params':>9s}  result")
    failures = 0
    cases = default_cases(seed=args.seed)
    for case in cases:
        errs = check_layer(case, samples=args.samples)
        states = max(errs[k] for k in ("h0", "c0") if k in errs)
        params = max(v for k, v in errs.items() if k not in ("x", "h0", "c0"))
        ok = all(v <= TOL for v in errs.values())
        failures += not ok
        label = case.label()
        if len(label) > 34:                       # a variant's options: on a line of its own
            print(label)
            label = ""
        print(f"{label:34s} {_fmt_err(errs['x'])} {_fmt_err(states)} {_fmt_err(params)}  "
              f"{'ok' if ok else 'FAIL'}")
    print(f"{len(cases) - failures} passed, {failures} failed (tolerance {TOL:g})")
    return 1 if failures else 0


def cmd_bench(args):
    import importlib.util
    if importlib.util.find_spec("threadpoolctl") is None:
        return fail("bench", "it needs threadpoolctl (the same BLAS threads for all): "
                    "pip install threadpoolctl")
    from . import bench
    from .rounds import legend, probe_or_none
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in bench.FAMILIES]
    if bad:
        return fail("bench", f"unknown kind(s) {bad}; choose from rnn, gru, lstm")
    fws = [fw for fw, off in (("rnnlab", False), ("torch", args.no_torch),
                              ("onnxruntime", args.no_onnxruntime)) if not off]
    rows, head = [], []
    if args.cold_start:
        from .cold import cold_start, format_cold
        head = format_cold(*cold_start(kinds))
        for line in head:
            print(line)
    if not args.no_sequences:
        rows, table_head = bench.run(kinds=kinds, sizes=args.sizes or bench.SIZES,
                               rounds=args.rounds, reps=args.reps, threads=args.threads,
                               frameworks=fws, min_seconds=args.min_seconds)
        head = table_head + head
    step_rows = []
    if args.step_hidden.lower() != "none":
        try:
            hidden = [positive(v) for v in args.step_hidden.split(",")]
            layers = [positive(v) for v in args.step_layers.split(",")]
        except argparse.ArgumentTypeError as exc:
            return fail("bench", str(exc))
        if args.no_sequences:                  # the table's header says it otherwise
            lines = legend(probe_or_none(), args.rounds)
            head += lines
            print("\n".join(lines))
        step_rows = bench.run_steps(kinds, hidden, layers, rounds=args.rounds,
                                    threads=args.threads, frameworks=fws)
    if args.write:
        try:
            sizes = ";".join(",".join(map(str, s)) for s in (args.sizes or bench.SIZES))
            bench.write_table(args.write, head, rows,
                              f"rnnlab bench --kinds {args.kinds} --sizes '{sizes}' --rounds "
                              f"{args.rounds} --reps {args.reps} --min-seconds "
                              f"{args.min_seconds:g}"
                              + (" --cold-start" if args.cold_start else "")
                              + f" --write {args.write}",
                              step_rows)
        except (OSError, ValueError) as exc:
            return fail("bench", str(exc))
    return 0


def cmd_warmup(args):
    from .warmup import default_jobs, warmup
    return warmup(jobs=default_jobs() if args.jobs is None else args.jobs)


def cmd_train(args):
    from ..train.loop import CheckpointError, NonFiniteLoss, run
    from ..train.tasks import COMMON, DEFAULTS, TaskError, builtin_text
    hp = dict(DEFAULTS[args.task], **COMMON)
    for key in ("model", "hidden", "layers", "seq_len", "batch", "steps", "lr", "optim",
                "clip", "dropout", "bidirectional", "weight_decay", "schedule", "eval_every"):
        if getattr(args, key) is not None:
            hp[key] = getattr(args, key)
    hp["clip"] = hp["clip"] or None
    from .cli_args import variant_kwargs
    options = variant_kwargs(args)
    if not args.reset_after:
        options["reset_after"] = False
    if options:
        hp["cell_options"] = options
        from ..nn import make_layer
        try:                                      # refused here, before any file is touched
            make_layer(hp["model"], 2, 2, **options)
        except (ValueError, TypeError) as exc:
            return fail("train", f"--model {hp['model']}: {exc}")
    if hp["dropout"] and hp["layers"] < 2:
        return fail("train", "--dropout acts between layers: it needs --layers 2 or more")
    text = None
    if args.task == "charlm":
        if not args.text:
            return fail("train", "charlm needs --text FILE (the text to learn), or --text "
                        "builtin")
        if args.text == "builtin":
            text = builtin_text()
        else:
            try:
                with open(args.text, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as exc:
                return fail("train", f"cannot read --text {args.text}: {exc}")
            if not text.strip():
                return fail("train", f"--text {args.text} is empty")
    elif args.text:
        return fail("train", f"--text is only for charlm, not {args.task}")
    try:
        run(args.task, hp, seed=args.seed, out=args.out, resume_dir=args.resume, text=text,
            force=args.force)
    except (TaskError, CheckpointError) as exc:
        return fail("train", str(exc))
    except NonFiniteLoss as exc:
        print(f"rnnlab train: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_sample(args):
    from ..train.loop import CheckpointError, sample
    from ..train.tasks import TaskError
    try:
        print(sample(args.dir, args.prime, args.length, args.temperature, args.seed))
    except (TaskError, CheckpointError) as exc:
        return fail("sample", str(exc))
    return 0


def cmd_convert(args):
    from .convert import ConvertError, convert
    try:
        err = convert(args.input, args.output, prefix=args.prefix,
                      allow_unused=args.allow_unused, nonlinearity=args.nonlinearity,
                      lengths=args.lengths)
    except (ConvertError, ValueError, TypeError, ImportError, OSError) as exc:
        return fail("convert", str(exc).splitlines()[0])
    from .cases import TOL
    return 1 if err is not None and not err <= TOL["float32"] else 0
