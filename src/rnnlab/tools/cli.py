"""The rnnlab command: explain, verify, gradcheck, bench.

    rnnlab explain gru --layers 2 --bidirectional --lengths 3,1,2
    rnnlab verify --quick
    rnnlab gradcheck
    rnnlab bench --sizes 100,64,256,256
"""
import argparse
import os
import sys
import time


def _lengths(text):
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 3,1,2, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"lengths must be positive integers, got {text!r}")
    return vals


def _number(convert, what):
    """An argparse type: text -> a positive (finite) number, or a clear usage error."""
    def parse(text):
        try:
            v = convert(text)
        except ValueError:
            v = None
        if v is None or not 0 < v < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive {what}, got {text!r}")
        return v
    return parse


_positive = _number(int, "integer")
_positive_float = _number(float, "number")


def _clip(text):
    if text.lower() in ("none", "0", "off"):
        return 0.0
    return _positive_float(text)


def _radii(text):
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or not all(0 < v < 100 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive numbers like 0.5,1,1.5, got "
                                         f"{text!r}")
    return vals


def _sizes(text):
    out = []
    for part in text.split(";"):
        vals = part.split(",")
        if len(vals) != 4:
            raise argparse.ArgumentTypeError(f"a size is T,N,I,H (four integers), got {part!r}")
        out.append(tuple(_positive(v) for v in vals))
    return out


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default in --help (not for flags, nor where the help text
    already says how the default is chosen)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def build_parser():
    from .. import __version__
    from ..cells import FAMILIES
    p = argparse.ArgumentParser(prog="rnnlab", description="PyTorch's RNN, GRU and LSTM in "
                                "NumPy: explain what they compute, verify against torch, check "
                                "gradients, benchmark.", formatter_class=_Help)
    p.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser("explain", help="equations, shapes, step-by-step numbers and the "
                       "output <-> h_n map for one configuration, checked on the numbers",
                       formatter_class=_Help)
    e.add_argument("kind", choices=[k for k, f in FAMILIES.items() if f.listed] + ["gradients"],
                   help="cell family, or gradients: vanishing / exploding gradients and "
                   "clipping")
    e.add_argument("--input-size", type=_positive, default=3, help="features per step (H_in)")
    e.add_argument("--hidden-size", type=_positive, default=None,
                   help="hidden units (H); default 2, or proj-size + 1 with --proj-size")
    e.add_argument("--layers", type=_positive, default=1, help="num_layers")
    e.add_argument("--bidirectional", action="store_true", help="two directions")
    e.add_argument("--batch-first", action="store_true", help="input as (N, L, H_in)")
    e.add_argument("--proj-size", type=int, default=0, help="LSTM projection size (0 = none)")
    e.add_argument("--seq-len", type=_positive, default=None,
                   help="steps in the example (L); default 3, or max(--lengths)")
    e.add_argument("--batch", type=_positive, default=None,
                   help="sequences in the example (N); default 1, or the number of --lengths")
    e.add_argument("--seed", type=int, default=0, help="seed for weights and example data")
    e.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="precision")
    e.add_argument("--nonlinearity", choices=["tanh", "relu"], default="tanh", help="RNN only")
    e.add_argument("--lengths", type=_lengths, default=None,
                   help="per-sequence lengths, comma-separated (e.g. 3,1,2); sets the batch "
                   "to their number and the padded length to at least their maximum")
    e.add_argument("--torch", action="store_true", help="also run torch with the same weights "
                   "and show the max difference")
    e.add_argument("--png", metavar="FILE", help="write a figure of hidden states and gates "
                   "over time (needs matplotlib)")
    e.add_argument("--radii", type=_radii, default=(0.5, 1.0, 1.5),
                   help="gradients: spectral radii of W_hh, comma-separated")
    e.add_argument("--steps", type=_positive, default=1000,
                   help="gradients: training steps of the clipping demonstration")
    e.add_argument("--clip", type=_positive_float, default=1.0,
                   help="gradients: max_norm of the clipped run")

    v = sub.add_parser("verify", help="conformance run against the installed torch "
                       "(exit 1 on any failure, 2 without torch)", formatter_class=_Help)
    g = v.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="a rotating subset (default)")
    g.add_argument("--full", action="store_true", help="the whole configuration matrix")
    v.add_argument("--seed", type=int, default=0, help="seed of the configuration matrix")
    v.add_argument("--verbose", action="store_true", help="also list the error of every "
                   "output, state and gradient (each parameter by name) under each row")

    gc = sub.add_parser("gradcheck", help="central finite differences vs the hand-written "
                        "backward, float64, no torch (exit 1 on failure)", formatter_class=_Help)
    gc.add_argument("--seed", type=int, default=0, help="seed for data and weights")
    gc.add_argument("--samples", type=_positive, default=12, help="entries checked per array")

    t = sub.add_parser("train", help="train a model on a task with rnnlab alone (defaults "
                       "solve it); prints test <metric> <value> (baseline <value>)",
                       formatter_class=_Help)
    t.add_argument("task", choices=["adding", "copy", "charlm", "digits"],
                   help="adding / copy problems, character LM on --text, sklearn digits")
    t.add_argument("--model", choices=[k for k, f in FAMILIES.items() if f.listed],
                   help="cell family (task default: gru)")
    t.add_argument("--hidden", type=_positive, help="hidden size (task default)")
    t.add_argument("--layers", type=_positive, help="num_layers (task default: 1)")
    t.add_argument("--seq-len", type=_positive, help="sequence length (task default)")
    t.add_argument("--batch", type=_positive, help="sequences per step (task default)")
    t.add_argument("--steps", type=_positive, help="training steps in total (task default)")
    t.add_argument("--lr", type=_positive_float, help="learning rate (task default)")
    t.add_argument("--optim", choices=["adam", "sgd"], help="optimizer (default: adam)")
    t.add_argument("--clip", type=_clip, help="clip the global gradient norm to this; 0 or "
                   "none: no clipping (task default: 1.0)")
    t.add_argument("--seed", type=int, default=0, help="seed for weights and batches")
    t.add_argument("--text", metavar="FILE", help="the text for charlm")
    t.add_argument("--out", metavar="DIR", help="write model.safetensors, optimizer.npz, "
                   "history.json and curves.png here")
    t.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR (to "
                   "--steps in total)")

    sm = sub.add_parser("sample", help="text from a charlm checkpoint", formatter_class=_Help)
    sm.add_argument("dir", help="a directory written by rnnlab train charlm --out")
    sm.add_argument("--prime", default="", help="text to start from")
    sm.add_argument("--length", type=_positive, default=200, help="characters to draw")
    sm.add_argument("--temperature", type=_positive_float, default=1.0,
                    help="below 1: more likely characters; above 1: more random")
    sm.add_argument("--seed", type=int, default=0, help="seed for the draws")

    cv = sub.add_parser("convert", help="move a recurrent layer between .pt/.pth, "
                        ".safetensors, .npz, .onnx and .keras, then run the result and print "
                        "the max difference", formatter_class=_Help)
    cv.add_argument("input", help="the file to read (.pt .pth .safetensors .npz .onnx .keras)")
    cv.add_argument("output", help="the file to write (.pt .pth .safetensors .npz .onnx "
                    ".keras)")
    cv.add_argument("--prefix", default="", help="the layer's key prefix in a state_dict, "
                    "e.g. encoder.")
    cv.add_argument("--nonlinearity", choices=["tanh", "relu"],
                    help="for an RNN's state_dict (its weights cannot tell)")
    cv.add_argument("--lengths", action="store_true", help=".onnx: add a lengths input "
                    "(packed semantics)")
    cv.add_argument("--allow-unused", action="store_true", help="convert even when the input "
                    "holds weights the layer does not use (they are listed)")

    b = sub.add_parser("bench", help="training step and inference vs torch and onnxruntime, "
                       "float32, each in its own process", formatter_class=_Help)
    b.add_argument("--kinds", default="rnn,gru,lstm", help="comma-separated families")
    b.add_argument("--sizes", type=_sizes, default=None,
                   help="T,N,I,H[;T,N,I,H...] (default: 100,64,256,256;200,128,512,512;"
                   "50,16,32,32;100,1,256,256;100,1,512,512)")
    b.add_argument("--rounds", type=_positive, default=3, help="fresh-process rounds per "
                   "framework, alternated (median and spread over them)")
    b.add_argument("--reps", type=_positive, default=5, help="timed calls per process "
                   "(median), after one untimed warm-up call")
    b.add_argument("--threads", type=_positive, default=None, help="threads for every "
                   "framework (default: all cores)")
    b.add_argument("--no-torch", action="store_true", help="leave torch out")
    b.add_argument("--no-onnxruntime", action="store_true", help="leave onnxruntime out")
    b.add_argument("--step-hidden", default="64,128,256", help="batch-1 step latency: hidden "
                   "sizes (comma-separated; 'none' skips the step table)")
    b.add_argument("--step-layers", default="1,2", help="batch-1 step latency: num_layers")
    b.add_argument("--no-sequences", action="store_true", help="only the step table")
    b.add_argument("--write", metavar="FILE", help="replace the table between the bench "
                   "markers in FILE (BENCHMARKS.md) with this run's")
    return p


def _fail(command, message):
    print(f"rnnlab {command}: {message}", file=sys.stderr)
    return 2


def cmd_explain(args):
    from ..cells import by_kind, variant
    from .explain import Config, explain
    if args.kind == "gradients":
        from .explain_gradients import explain_gradients
        rep = explain_gradients(seq_len=args.seq_len or 100, hidden=args.hidden_size or 32,
                                radii=args.radii, seed=args.seed, steps=args.steps,
                                clip=args.clip, png=args.png)
        print(rep.text())
        return 0 if rep.ok else 1
    if args.proj_size and not by_kind(args.kind).supports_projection:
        return _fail("explain", f"--proj-size is only supported for lstm, not {args.kind}")
    if args.nonlinearity != "tanh":
        try:
            variant(args.kind, nonlinearity=args.nonlinearity)
        except ValueError as exc:
            return _fail("explain", f"--{exc}")
    hidden = args.hidden_size or (args.proj_size + 1 if args.proj_size else 2)
    if args.proj_size < 0 or (args.proj_size and args.proj_size >= hidden):
        return _fail("explain", f"--proj-size must be 0 or below --hidden-size (got "
                     f"{args.proj_size} and {hidden})")
    batch, seq_len = args.batch or 1, args.seq_len or 3
    if args.lengths is not None:
        if args.batch is not None and args.batch != len(args.lengths):
            return _fail("explain", f"--batch {args.batch} disagrees with the "
                         f"{len(args.lengths)} --lengths given; leave --batch out")
        if args.seq_len is not None and args.seq_len < max(args.lengths):
            return _fail("explain", f"--seq-len {args.seq_len} is shorter than the longest "
                         f"of --lengths ({max(args.lengths)})")
        batch, seq_len = len(args.lengths), args.seq_len or max(args.lengths)
    cfg = Config(kind=args.kind, input_size=args.input_size, hidden_size=hidden,
                 layers=args.layers, bidirectional=args.bidirectional,
                 batch_first=args.batch_first, proj_size=args.proj_size, seq_len=seq_len,
                 batch=batch, seed=args.seed, dtype=args.dtype, lengths=args.lengths,
                 nonlinearity=args.nonlinearity)
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
        print(f"{case.label():34s} {_fmt_err(errs['x'])} {_fmt_err(states)} {_fmt_err(params)}  "
              f"{'ok' if ok else 'FAIL'}")
    print(f"{len(cases) - failures} passed, {failures} failed (tolerance {TOL:g})")
    return 1 if failures else 0


def cmd_bench(args):
    from . import bench
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in bench.FAMILIES]
    if bad:
        return _fail("bench", f"unknown kind(s) {bad}; choose from rnn, gru, lstm")
    fws = [fw for fw, off in (("rnnlab", False), ("torch", args.no_torch),
                              ("onnxruntime", args.no_onnxruntime)) if not off]
    rows, head = [], []
    if not args.no_sequences:
        rows, head = bench.run(kinds=kinds, sizes=args.sizes or bench.SIZES,
                               rounds=args.rounds, reps=args.reps, threads=args.threads,
                               frameworks=fws)
    step_rows = []
    if args.step_hidden.lower() != "none":
        try:
            hidden = [_positive(v) for v in args.step_hidden.split(",")]
            layers = [_positive(v) for v in args.step_layers.split(",")]
        except argparse.ArgumentTypeError as exc:
            return _fail("bench", str(exc))
        step_rows = bench.run_steps(kinds, hidden, layers, rounds=args.rounds,
                                    threads=args.threads, frameworks=fws)
    if args.write:
        try:
            sizes = ";".join(",".join(map(str, s)) for s in (args.sizes or bench.SIZES))
            bench.write_table(args.write, head, rows,
                              f"rnnlab bench --kinds {args.kinds} --sizes '{sizes}' --rounds "
                              f"{args.rounds} --reps {args.reps} --write {args.write}",
                              step_rows)
        except (OSError, ValueError) as exc:
            return _fail("bench", str(exc))
    return 0


def cmd_train(args):
    from ..train.loop import CheckpointError, run
    from ..train.tasks import DEFAULTS, TaskError
    hp = dict(DEFAULTS[args.task])
    for key in ("model", "hidden", "layers", "seq_len", "batch", "steps", "lr", "optim",
                "clip"):
        if getattr(args, key) is not None:
            hp[key] = getattr(args, key)
    hp["clip"] = hp["clip"] or None
    text = None
    if args.task == "charlm":
        if not args.text:
            return _fail("train", "charlm needs --text FILE (the text to learn)")
        try:
            with open(args.text, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            return _fail("train", f"cannot read --text {args.text}: {exc}")
        if not text.strip():
            return _fail("train", f"--text {args.text} is empty")
    elif args.text:
        return _fail("train", f"--text is only for charlm, not {args.task}")
    try:
        run(args.task, hp, seed=args.seed, out=args.out, resume_dir=args.resume, text=text)
    except (TaskError, CheckpointError) as exc:
        return _fail("train", str(exc))
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_sample(args):
    from ..train.loop import CheckpointError, sample
    from ..train.tasks import TaskError
    try:
        print(sample(args.dir, args.prime, args.length, args.temperature, args.seed))
    except (TaskError, CheckpointError) as exc:
        return _fail("sample", str(exc))
    return 0


def cmd_convert(args):
    from .convert import ConvertError, convert
    try:
        err = convert(args.input, args.output, prefix=args.prefix,
                      allow_unused=args.allow_unused, nonlinearity=args.nonlinearity,
                      lengths=args.lengths)
    except (ConvertError, ValueError, TypeError, ImportError, OSError) as exc:
        return _fail("convert", str(exc).splitlines()[0])
    from .cases import TOL
    return 1 if err is not None and not err <= TOL["float32"] else 0


COMMANDS = {"explain": cmd_explain, "train": cmd_train, "sample": cmd_sample,
            "convert": cmd_convert, "verify": cmd_verify, "gradcheck": cmd_gradcheck,
            "bench": cmd_bench}


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:                       # e.g. `rnnlab verify | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
