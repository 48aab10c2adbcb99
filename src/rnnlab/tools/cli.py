"""The rnnlab command: its parser and the one place that turns failures into an exit status
(commands.py does the work, cli_args.py holds the argument types).

    rnnlab explain gru --layers 2 --bidirectional --lengths 3,1,2
    rnnlab verify --quick
    rnnlab gradcheck
    rnnlab bench --sizes 100,64,256,256
    rnnlab warmup
"""
import argparse
import os
import sys

from . import commands as C
from .cli_args import (Help, add_variant_args, clip, lengths, non_negative_float, positive,
                       positive_float, radii, sizes, unit_interval)


def build_parser():
    from .. import __version__
    from ..cells import FAMILIES
    p = argparse.ArgumentParser(prog="rnnlab", description="PyTorch's RNN, GRU and LSTM in "
                                "NumPy: explain what they compute, verify against torch, check "
                                "gradients, benchmark.", formatter_class=Help)
    p.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, title="commands",
                           metavar="{explain,verify,gradcheck,train,sample,convert,bench,warmup}")

    e = sub.add_parser("explain", help="equations, shapes, step-by-step numbers and the "
                       "output <-> h_n map for one configuration, checked on the numbers",
                       formatter_class=Help)
    e.add_argument("kind", choices=[k for k, f in FAMILIES.items() if f.listed] + ["gradients"],
                   help="cell family, or gradients: vanishing / exploding gradients and "
                   "clipping")
    e.add_argument("--input-size", type=positive, default=3, help="features per step (H_in)")
    e.add_argument("--hidden-size", type=positive, default=None,
                   help="hidden units (H); default 2, or proj-size + 1 with --proj-size")
    e.add_argument("--layers", type=positive, default=1, help="num_layers")
    e.add_argument("--bidirectional", action="store_true", help="two directions")
    e.add_argument("--batch-first", action="store_true", help="input as (N, L, H_in)")
    e.add_argument("--proj-size", type=int, default=0, help="LSTM projection size (0 = none)")
    e.add_argument("--seq-len", type=positive, default=None,
                   help="steps in the example (L); default 3, or max(--lengths)")
    e.add_argument("--batch", type=positive, default=None,
                   help="sequences in the example (N); default 1, or the number of --lengths")
    e.add_argument("--seed", type=int, default=0, help="seed for weights and example data")
    e.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="precision")
    e.add_argument("--nonlinearity", choices=["tanh", "relu"], default="tanh", help="RNN only")
    add_variant_args(e)
    e.add_argument("--lengths", type=lengths, default=None,
                   help="per-sequence lengths, comma-separated (e.g. 3,1,2); sets the batch "
                   "to their number and the padded length to at least their maximum")
    e.add_argument("--torch", action="store_true", help="also run torch with the same weights "
                   "and show the max difference")
    e.add_argument("--png", metavar="FILE", help="write a figure of hidden states and gates "
                   "over time (needs matplotlib)")
    e.add_argument("--radii", type=radii, default=(0.5, 1.0, 1.5),
                   help="gradients: spectral radii of W_hh, comma-separated")
    e.add_argument("--steps", type=positive, default=1000,
                   help="gradients: training steps of the clipping demonstration")
    e.add_argument("--clip", type=positive_float, default=1.0,
                   help="gradients: max_norm of the clipped run")

    v = sub.add_parser("verify", help="conformance run against the installed torch "
                       "(exit 1 on any failure, 2 without torch)", formatter_class=Help)
    g = v.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="a rotating subset (default)")
    g.add_argument("--full", action="store_true", help="the whole configuration matrix")
    v.add_argument("--seed", type=int, default=0, help="seed of the configuration matrix")
    v.add_argument("--verbose", action="store_true", help="also list the error of every "
                   "output, state and gradient (each parameter by name) under each row")

    gc = sub.add_parser("gradcheck", help="central finite differences vs the hand-written "
                        "backward, float64, no torch (exit 1 on failure)", formatter_class=Help)
    gc.add_argument("--seed", type=int, default=0, help="seed for data and weights")
    gc.add_argument("--samples", type=positive, default=12, help="entries checked per array")

    from ..train.tasks import DEFAULTS
    table = "\n".join(f"  {task:7s} " + ", ".join(f"{k} {v}" for k, v in list(d.items())[:5])
                      + "\n          " + ", ".join(f"{k} {v}" for k, v in list(d.items())[5:])
                      for task, d in DEFAULTS.items())
    t = sub.add_parser("train", help="train a model on a task with rnnlab alone (defaults "
                       "solve it); prints test <metric> <value> (baseline <value>)",
                       formatter_class=Help, epilog="task defaults (each option left out "
                       f"takes its task's):\n{table}")
    t.add_argument("task", choices=sorted(DEFAULTS),
                   help="adding / copy problems, character LM on --text, sklearn digits")
    t.add_argument("--model", choices=[k for k, f in FAMILIES.items() if f.listed],
                   help="cell family (task default: gru)")
    t.add_argument("--hidden", type=positive, help="hidden size (task default)")
    add_variant_args(t)
    t.add_argument("--layers", type=positive, help="num_layers (task default: 1)")
    t.add_argument("--bidirectional", action="store_true", help="two directions per layer")
    t.add_argument("--dropout", type=unit_interval, default=0.0,
                   help="dropout between layers (with --layers 2 or more)")
    t.add_argument("--seq-len", type=positive, help="sequence length (task default)")
    t.add_argument("--batch", type=positive, help="sequences per step (task default)")
    t.add_argument("--steps", type=positive, help="training steps in total (task default)")
    t.add_argument("--lr", type=positive_float, help="learning rate (task default)")
    t.add_argument("--optim", choices=["adam", "adamw", "sgd"],
                   help="optimizer (task default: adam)")
    t.add_argument("--weight-decay", type=non_negative_float, default=0.0,
                   help="weight decay (adamw: decoupled, its default 0.01 when left at 0)")
    t.add_argument("--schedule", choices=["none", "step", "cosine"], default="none",
                   help="learning-rate schedule over --steps")
    t.add_argument("--clip", type=clip, help="clip the global gradient norm to this; 0 or "
                   "none: no clipping (task default: 1.0)")
    t.add_argument("--eval-every", type=positive, help="held-out evaluation (and a "
                   "checkpoint) every this many steps (default: steps / 10, at most 100)")
    t.add_argument("--seed", type=int, default=0, help="seed for weights and batches")
    t.add_argument("--text", metavar="FILE", help="the text for charlm (builtin: a "
                   "generated 100 KB text)")
    t.add_argument("--out", metavar="DIR", help="write the run here: checkpoints, "
                   "model.safetensors, best.safetensors, history.json, curves.png")
    t.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR (to "
                   "--steps in total)")
    t.add_argument("--force", action="store_true", help="replace the run --out holds")

    sm = sub.add_parser("sample", help="text from a charlm checkpoint", formatter_class=Help)
    sm.add_argument("dir", help="a directory written by rnnlab train charlm --out")
    sm.add_argument("--prime", default="", help="text to start from")
    sm.add_argument("--length", type=positive, default=200, help="characters to draw")
    sm.add_argument("--temperature", type=positive_float, default=1.0,
                    help="below 1: more likely characters; above 1: more random")
    sm.add_argument("--seed", type=int, default=0, help="seed for the draws")

    cv = sub.add_parser("convert", help="move a recurrent layer between .pt/.pth, "
                        ".safetensors, .npz, .onnx and .keras, then run the result and print "
                        "the max difference", formatter_class=Help)
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
                       "float32, each in its own process", formatter_class=Help)
    b.add_argument("--kinds", default="rnn,gru,lstm", help="comma-separated families")
    b.add_argument("--sizes", type=sizes, default=None,
                   help="T,N,I,H[;T,N,I,H...] (default: 100,64,256,256;200,128,512,512;"
                   "50,16,32,32;100,16,128,128;100,1,256,256;100,1,512,512)")
    b.add_argument("--rounds", type=positive, default=3, help="fresh-process rounds per "
                   "framework, alternated (median and spread over them)")
    b.add_argument("--reps", type=positive, default=5, help="timed calls per process "
                   "at least (their median), after the warm-up (3 calls and 0.3 s at least)")
    b.add_argument("--min-seconds", type=non_negative_float, default=0.2, help="time calls "
                   "in each process until this many seconds have passed, too")
    b.add_argument("--threads", type=positive, default=None, help="threads for every "
                   "framework (default: all cores)")
    b.add_argument("--no-torch", action="store_true", help="leave torch out")
    b.add_argument("--no-onnxruntime", action="store_true", help="leave onnxruntime out")
    b.add_argument("--step-hidden", default="64,128,256", help="batch-1 step latency: hidden "
                   "sizes (comma-separated; 'none' skips the step table)")
    b.add_argument("--step-layers", default="1,2", help="batch-1 step latency: num_layers")
    b.add_argument("--no-sequences", action="store_true", help="only the step table")
    b.add_argument("--write", metavar="FILE", help="replace the table between the bench "
                   "markers in FILE (BENCHMARKS.md) with this run's")
    b.add_argument("--cold-start", action="store_true", help="also time the first calls "
                   "of a fresh process with an empty numba cache (the first use after "
                   "install) and with it filled")
    w = sub.add_parser("warmup", help="compile the float32 kernels now (or load them from "
                       "numba's cache), so a fresh install's first call does not wait",
                       formatter_class=Help)
    w.add_argument("--jobs", type=positive, default=None,
                   help="processes compiling at once (default: one per core, at most one "
                        "per family; 1: all in this process)")
    return p


COMMANDS = {"explain": C.cmd_explain, "train": C.cmd_train, "sample": C.cmd_sample,
            "convert": C.cmd_convert, "verify": C.cmd_verify, "gradcheck": C.cmd_gradcheck,
            "bench": C.cmd_bench, "warmup": C.cmd_warmup}


def main(argv=None):
    """Parse, run the command, and turn anything it raises into one line and an exit
    status (2: the input was refused; 1: an internal error, with the traceback only when
    RNNLAB_TRACEBACK=1): the command never ends in a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:                       # e.g. `rnnlab verify | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"rnnlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError, MemoryError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return C.fail(args.command, text)
    except Exception as exc:                      # a bug: say so in one line
        if os.environ.get("RNNLAB_TRACEBACK") == "1":
            raise
        print(f"rnnlab {args.command}: internal error ({type(exc).__name__}: {exc}); this is "
              "a bug in rnnlab, please report it (RNNLAB_TRACEBACK=1 shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
