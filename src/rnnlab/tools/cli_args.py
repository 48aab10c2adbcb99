"""The argument types and help format of the rnnlab command: each turns text into a value
or an argparse error that says what was expected and what came."""
import argparse


def lengths(text):
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 3,1,2, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"lengths must be positive integers, got {text!r}")
    return vals


def _number(convert, what, zero=False):
    """An argparse type: text -> a positive (``zero``: or 0) finite number, or a clear
    usage error naming ``what`` was expected."""
    def parse(text):
        try:
            v = convert(text)
        except ValueError:
            v = None
        if v is None or not (0 <= v if zero else 0 < v) or not v < float("inf"):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v + 0                                # -0.0 -> 0.0
    return parse


positive = _number(int, "a positive integer")

#: A finite real number >= 0 (a weight decay, seconds)
non_negative_float = _number(float, "a number >= 0", zero=True)


def unit_interval(text):
    """A probability in [0, 1) (dropout)."""
    try:
        v = float(text)
    except ValueError:
        v = None
    if v is None or not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return v
positive_float = _number(float, "a positive number")


def clip(text):
    if text.lower() in ("none", "0", "off"):
        return 0.0
    return positive_float(text)


def radii(text):
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or not all(0 < v < 100 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive numbers like 0.5,1,1.5, got "
                                         f"{text!r}")
    return vals


def sizes(text):
    out = []
    for part in text.split(";"):
        vals = part.split(",")
        if len(vals) != 4:
            raise argparse.ArgumentTypeError(f"a size is T,N,I,H (four integers), got {part!r}")
        out.append(tuple(positive(v) for v in vals))
    return out


class Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default in --help (not for flags, nor where the help text
    already says how the default is chosen)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def _names(text):
    return [v.strip() for v in text.split(",") if v.strip()]


def _floats(text):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0.2,0.5, got {text!r}") from None


def add_variant_args(p):
    """The variant options torch lacks (cells/variants.py), for explain and train."""
    g = p.add_argument_group("variants torch has no class for (ONNX's operator options)")
    g.add_argument("--activations", type=_names, default=None,
                   help="ONNX activation names, comma-separated, one per activation the "
                   "family uses (RNN 1, GRU 2, LSTM 3), e.g. HardSigmoid,Tanh,Tanh")
    g.add_argument("--activation-alpha", type=_floats, default=None,
                   help="their alpha values, in order (ONNX's activation_alpha)")
    g.add_argument("--activation-beta", type=_floats, default=None,
                   help="their beta values, in order (ONNX's activation_beta)")
    g.add_argument("--cell-clip", type=_number(float, "number"), default=None,
                   help="clip every gate's pre-activation to [-c, c] (ONNX's clip)")
    g.add_argument("--peepholes", action="store_true", help="LSTM: peephole weights")
    g.add_argument("--input-forget", action="store_true", help="LSTM: f = 1 - i")
    g.add_argument("--no-reset-after", dest="reset_after", action="store_false",
                   help="GRU only: the original GRU, the reset gate before W_hn "
                   "(GRU(reset_after=False); torch has none)")


def variant_kwargs(args):
    """The layer keywords the variant flags of ``args`` say (only those given)."""
    from ..cells.variants import OPTION_KEYS      # flags: the keywords' own names
    return {k: getattr(args, k) for k in OPTION_KEYS
            if getattr(args, k, None) not in (None, False)}
