"""The variant families: RNN, GRU and LSTM with the options of ONNX's operators that
torch lacks — ``activations`` (with ``activation_alpha`` / ``activation_beta``),
``cell_clip``, and for LSTM ``peepholes`` and ``input_forget``; GRU's ``reset_after``
combines with all of them.

``family_for(kind, **options)`` gives the family a layer of torch's class ``kind`` ("rnn",
"gru", "lstm") computes with those options: the registered family itself when the options
say what a registered family computes (then the compiled paths run), else a variant
family built here (cached per options). Variant families run the NumPy paths through
``Family.with_weights`` (the steps are in variant_steps.py); their ``options`` are the
constructor keywords that made them, which is how save/load, converters and refusals name
them. torch computes none of them.
"""
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace

import numpy as np

from . import onnx_activations as oa
from . import variant_steps as vs
from .family import Family

# per torch class: ONNX's op, its activations' defaults, and the registered family kinds
_BASE = {
    "rnn": dict(op="RNN", defaults=("Tanh",), store=("a",), steps=vs.rnn_steps),
    "gru": dict(op="GRU", defaults=("Sigmoid", "Tanh"), store=("a_r", "a_z", "a_n"),
                steps=vs.gru_steps),
    "lstm": dict(op="LSTM", defaults=("Sigmoid", "Tanh", "Tanh"),
                 store=("a_i", "a_f", "a_g", "a_o", "c"), steps=vs.lstm_steps),
}
_CACHE = {}
#: the constructor keywords of the variant options (torch's classes take none of them)
ACTIVATION_KEYS = ("activations", "activation_alpha", "activation_beta")
LSTM_ONLY = ("peepholes", "input_forget")
OPTION_KEYS = ACTIVATION_KEYS + ("cell_clip",) + LSTM_ONLY


@dataclass(frozen=True)
class Options:
    """A variant's options, checked: ``activations`` one or two (per direction) tuples of
    (name, alpha, beta)."""
    kind: str
    activations: tuple
    cell_clip: object = None
    peepholes: bool = False
    input_forget: bool = False
    reset_after: bool = True


def check_options(kind, activations=None, activation_alpha=None, activation_beta=None,
                  cell_clip=None, peepholes=False, input_forget=False, reset_after=True,
                  nonlinearity="tanh"):
    """Options from a layer's keywords, or ValueError/TypeError naming the bad one."""
    base = _BASE[kind]
    n = len(base["defaults"])
    if activations is None:
        if activation_alpha or activation_beta:
            raise ValueError("activation_alpha / activation_beta need activations=")
        names = ("Relu",) if kind == "rnn" and nonlinearity == "relu" else base["defaults"]
        sets = (oa.resolve(list(names)),)
    else:
        if kind == "rnn" and nonlinearity != "tanh":
            raise ValueError("give nonlinearity or activations, not both")
        flat = oa.resolve(list(activations) if isinstance(activations, (list, tuple))
                          else activations, activation_alpha, activation_beta)
        if len(flat) not in (n, 2 * n):
            raise ValueError(f"activations: {kind.upper()} uses {n} activation(s) per "
                             f"direction ({', '.join(base['defaults'])} by default); give "
                             f"{n}, or {2 * n} for a bidirectional layer, got {len(flat)}")
        sets = tuple(flat[k:k + n] for k in range(0, len(flat), n))
        if len(sets) == 2 and sets[0] == sets[1]:
            sets = sets[:1]
    if cell_clip is not None:
        if isinstance(cell_clip, bool) or not isinstance(cell_clip, (int, float)):
            raise TypeError(f"cell_clip must be a positive number or None, got "
                            f"{type(cell_clip).__name__}")
        if not cell_clip > 0 or cell_clip == float("inf"):
            raise ValueError(f"cell_clip must be a positive finite number, got {cell_clip}")
        cell_clip = float(cell_clip)
    for name, v in (("peepholes", peepholes), ("input_forget", input_forget),
                    ("reset_after", reset_after)):
        if not isinstance(v, bool):
            raise TypeError(f"{name} must be a bool, got {type(v).__name__}")
    if kind != "lstm" and (peepholes or input_forget):
        raise ValueError(f"{'peepholes' if peepholes else 'input_forget'} is only for LSTM, "
                         f"not {kind.upper()}")
    if kind != "gru" and not reset_after:
        raise ValueError(f"reset_after is only for GRU, not {kind.upper()}")
    return Options(kind, sets, cell_clip, peepholes, input_forget, reset_after)


def keywords(opts):
    """The constructor keywords that say ``opts`` (what differs from torch's defaults)."""
    out = {}
    base = _BASE[opts.kind]
    flat = [spec for s in opts.activations for spec in s]
    if len(opts.activations) > 1 or tuple(s[0] for s in flat) != base["defaults"]:
        names, alphas, betas = oa.flatten(flat)
        out["activations"] = names
        if alphas:
            out["activation_alpha"] = alphas
        if betas:
            out["activation_beta"] = betas
    for key, default in (("cell_clip", None), ("peepholes", False), ("input_forget", False),
                         ("reset_after", True)):
        if getattr(opts, key) != default:
            out[key] = getattr(opts, key)
    return out


def family_for(kind, **kw):
    """The family a ``kind`` layer with these keywords computes (see the module text)."""
    from . import variant as registered
    opts = check_options(kind, **kw)
    key = keywords(opts)
    if not key or set(key) == {"reset_after"}:          # torch's, or the registered GRU
        return registered(kind, **key)
    if kind == "rnn" and set(key) == {"activations"} and key["activations"] == ["Relu"]:
        return registered("rnn", nonlinearity="relu")
    cache_key = (kind, repr(sorted(key.items())))
    fam = _CACHE.get(cache_key)
    if fam is None:
        fam = _CACHE[cache_key] = _build(opts, key)
    return fam


def from_onnx(op, a, peepholes, D, number=float):
    """The family an ONNX RNN / GRU / LSTM node with attributes ``a`` computes (peepholes:
    it has the input P; D its directions), or ValueError naming what none computes.
    number: how a float attribute is read."""
    kind = next((k for k, b in _BASE.items() if b["op"] == op), None)
    if kind is None:
        raise ValueError("no rnnlab family computes this op")
    options = {}
    if "activations" in a:
        options["activations"] = list(a["activations"])
        n = len(_BASE[kind]["defaults"])
        if len(options["activations"]) != n * D:
            raise ValueError(f"{len(options['activations'])} activations; {op} with {D} "
                             f"direction(s) takes {n * D}")
        for key in ("activation_alpha", "activation_beta"):
            if key in a:
                options[key] = [number(v) for v in a[key]]
    elif "activation_alpha" in a or "activation_beta" in a:
        raise ValueError("activation_alpha / activation_beta without activations")
    if "clip" in a:
        options["cell_clip"] = number(a["clip"])
    if kind == "lstm":
        options["input_forget"] = bool(a.get("input_forget", 0))
        options["peepholes"] = bool(peepholes)
    elif a.get("input_forget", 0):
        raise ValueError("input_forget is an LSTM attribute")
    if kind == "gru":
        options["reset_after"] = bool(a.get("linear_before_reset", 0))
    return family_for(kind, **options)


# Keras 3's activation names and what each computes, in ONNX's terms (keras.activations:
# hard_sigmoid is relu6(x + 3) / 6, leaky_relu's negative_slope 0.2, elu's alpha 1)
KERAS_ACTIVATIONS = {
    "tanh": ("Tanh", 0.0, 0.0), "sigmoid": ("Sigmoid", 0.0, 0.0), "relu": ("Relu", 0.0, 0.0),
    "linear": ("Affine", 1.0, 0.0), "softsign": ("Softsign", 0.0, 0.0),
    "softplus": ("Softplus", 0.0, 0.0), "elu": ("Elu", 1.0, 0.0),
    "hard_sigmoid": ("HardSigmoid", 1 / 6, 0.5), "leaky_relu": ("LeakyRelu", 0.2, 0.0)}
_KERAS_CLASS = {"rnn": "SimpleRNN", "gru": "GRU", "lstm": "LSTM"}


def _keras_name(spec):
    """Keras's name of one (name, alpha, beta), or None (float32-close values match)."""
    for kname, (n, a, b) in KERAS_ACTIVATIONS.items():
        if n == spec[0] and abs(a - spec[1]) <= 1e-6 * max(1.0, abs(a)) and \
                abs(b - spec[2]) <= 1e-6 * max(1.0, abs(b)):
            return kname
    return None


def _keras_record(opts):
    """The Keras record of a variant (None: Keras has no layer computing it)."""
    if opts.cell_clip is not None or opts.peepholes or opts.input_forget or \
            len(opts.activations) > 1:
        return None
    names = [_keras_name(spec) for spec in opts.activations[0]]
    if None in names or (opts.kind == "lstm" and names[1] != names[2]):
        return None                          # Keras's LSTM uses one activation for g and h
    options = ({"activation": names[0]} if opts.kind == "rnn" else
               {"activation": names[1], "recurrent_activation": names[0]})
    if opts.kind == "gru":
        options["reset_after"] = opts.reset_after
    return {"class": _KERAS_CLASS[opts.kind], "options": options,
            "bias": "pair" if opts.kind == "gru" and opts.reset_after else "sum"}


def from_keras_config(cls, cfg):
    """The family a Keras SimpleRNN / GRU / LSTM config computes (its activation,
    recurrent_activation and reset_after), or ValueError naming what none computes."""
    kind = next((k for k, c in _KERAS_CLASS.items() if c == cls), None)
    if kind is None:
        raise ValueError(f"no rnnlab family computes a {cls}")
    keys = ["activation"] if kind == "rnn" else ["recurrent_activation", "activation"]
    specs = []
    for key in keys:
        name = cfg.get(key, "sigmoid" if key == "recurrent_activation" else "tanh")
        if not isinstance(name, str) or name not in KERAS_ACTIVATIONS:
            raise ValueError(f"{key} {name!r} has no ONNX counterpart rnnlab computes "
                             f"(Keras names it takes: {sorted(KERAS_ACTIVATIONS)})")
        specs.append(KERAS_ACTIVATIONS[name])
    if kind == "lstm":
        specs.append(specs[1])               # h(c') uses Keras's activation too
    names, alphas, betas = oa.flatten(specs)
    kw = {"activations": names}
    if alphas:
        kw["activation_alpha"] = alphas
    if betas:
        kw["activation_beta"] = betas
    if kind == "gru":
        kw["reset_after"] = bool(cfg.get("reset_after", True))
    return family_for(kind, **kw)


def _build(opts, key):
    from . import by_kind
    torch_fam = by_kind(opts.kind)
    base = _BASE[opts.kind]
    first = opts.activations[0]
    names = [oa.text(*spec) for spec in first]
    every, alphas, betas = oa.flatten([spec for s in opts.activations for spec in s])
    attributes = {"activations": every}                # one list per set given
    if alphas:
        attributes["activation_alpha"] = alphas
    if betas:
        attributes["activation_beta"] = betas
    if opts.cell_clip is not None:
        attributes["clip"] = opts.cell_clip
    if opts.input_forget:
        attributes["input_forget"] = 1
    if opts.kind == "gru":
        attributes["linear_before_reset"] = int(opts.reset_after)
    pick = {"rnn": (0,), "gru": (0, 0, 1), "lstm": (0, 0, 1, 0)}[opts.kind]
    gate_acts = tuple(first[j] for j in pick)
    return Family(
        torch_fam.kind, torch_fam.mode + "_VARIANT", num_gates=torch_fam.num_gates,
        gate_names=torch_fam.gate_names, fold=torch_fam.fold, store_names=_store(opts),
        step=_needs_weights, back=_needs_weights,
        with_weights=partial(base["steps"], opts), equations=equations(opts, names),
        has_cell_state=torch_fam.has_cell_state, layer_class=torch_fam.torch_class,
        options=key, supports_projection=torch_fam.supports_projection,
        gate_order=torch_fam.gate_order, listed=False,
        gate_activations=tuple(s[0].lower() for s in gate_acts),
        activation=names[0] if opts.kind == "rnn" else "tanh",
        onnx={"op": base["op"], "attributes": attributes, "defaults": {},
              "per_direction": len(opts.activations) > 1, "peepholes": opts.peepholes},
        keras=_keras_record(opts), variant=opts,
        **_plain_forms(opts, torch_fam))


def _plain_forms(opts, torch_fam):
    """plain_step / plain_back (cells/family.py) for one sequence: the variant's own steps
    (variant_steps.py) on one row, with p's weights (p["w_p"]: peepholes; p["reverse"]: the
    direction, which picks its activations)."""
    steps = _BASE[opts.kind]["steps"]
    G, S, fold = torch_fam.num_gates, len(_store(opts)), torch_fam.fold

    def bound(p):
        w = SimpleNamespace(w_ih=p["w_ih"], w_hh=p["w_hh"], b_ih=p["b_ih"], b_hh=p["b_hh"],
                            w_p=p.get("w_p"))
        return steps(opts, w, p.get("reverse", False))

    def plain_step(x, h, c, p):
        GH = p["w_hh"].shape[0]
        H = GH // G
        F = fold * H
        gx = (p["w_ih"] @ x + p["b_ih"])[None]
        gx[0, :F] += p["b_hh"][:F]
        gh = (p["w_hh"] @ h)[None]
        gh[0, F:] += p["b_hh"][F:]
        store = np.zeros((1, S * H))
        h_new = np.zeros((1, h.shape[0]))
        c_new, cache = bound(p)[0](gx, gh, h[None], None if c is None else c[None], h_new,
                                   store)
        gates = {g: cache[0][0, k * H:(k + 1) * H]
                 for k, g in enumerate(torch_fam.gate_names)}
        return h_new[0], (None if c_new is None else c_new[0].copy()), dict(gates,
                                                                              cache=cache)

    def plain_back(dh_new, dc_new, x, h, c, h_new, gates, p):
        GH = p["w_hh"].shape[0]
        F = fold * (GH // G)
        _, back, extra = bound(p)
        dgx = np.zeros((1, GH))
        dgr = np.zeros((1, GH - F)) if F < GH else None
        direct, dc_prev = back(dh_new[None], None if dc_new is None else dc_new[None],
                               gates["cache"], dgx, dgr)
        dgh = dgx[0] if dgr is None else np.concatenate([dgx[0, :F], dgr[0]])
        dh = p["w_hh"].T @ dgh + (0.0 if direct is None else direct[0])
        dp = {"w_ih": np.outer(dgx[0], x), "w_hh": np.outer(dgh, h), "b_ih": dgx[0],
              "b_hh": dgh.copy()}
        more = extra()
        if "w_hh" in more:
            dp["w_hh"][F:] += more["w_hh"]
            dp["b_hh"][F:] += more["b_hh"]
        if "w_p" in more:
            dp["w_p"] = more["w_p"]
        return (p["w_ih"].T @ dgx[0], dh, None if dc_prev is None else dc_prev[0], dp)

    return {"plain_step": plain_step, "plain_back": plain_back}


def _store(opts):
    """A variant's store blocks: every pre-activation, and what its back needs besides."""
    base = _BASE[opts.kind]["store"]
    return base + (() if opts.kind != "gru" else ("hn",) if opts.reset_after else ("rh",))


def _needs_weights(*args):
    raise NotImplementedError("a variant family's steps need the weights: "
                              "with_weights(w, reverse)")


def equations(opts, names):
    """The variant's equations, in explain's letters."""
    clip = (lambda s: f"clip({s})") if opts.cell_clip is not None else (lambda s: s)
    if opts.kind == "rnn":
        lines = [f"h' = {names[0]}({clip('x W_ih^T + b_ih + h W_hh^T + b_hh')})"]
    elif opts.kind == "gru":
        f, g = names
        inner = ("r * (h W_hn^T + b_hn)" if opts.reset_after else "(r * h) W_hn^T + b_hn")
        lines = [f"r = {f}({clip('x W_ir^T + b_ir + h W_hr^T + b_hr')})",
                 f"z = {f}({clip('x W_iz^T + b_iz + h W_hz^T + b_hz')})",
                 f"n = {g}({clip('x W_in^T + b_in + ' + inner)})",
                 "h' = (1 - z) * n + z * h"]
    else:
        f, g, h = names
        peep = ((lambda s: f" + p_{s} * c" + ("'" if s == "o" else "")) if opts.peepholes
                else (lambda s: ""))
        lines = [f"i = {f}({clip('x W_ii^T + b_ii + h W_hi^T + b_hi' + peep('i'))})"]
        lines.append("f = 1 - i                                    input_forget: coupled"
                     if opts.input_forget else
                     f"f = {f}({clip('x W_if^T + b_if + h W_hf^T + b_hf' + peep('f'))})")
        lines += [f"g = {g}({clip('x W_ig^T + b_ig + h W_hg^T + b_hg')})",
                  "c' = f * c + i * g",
                  f"o = {f}({clip('x W_io^T + b_io + h W_ho^T + b_ho' + peep('o'))})",
                  f"h' = o * {h}(c')"]
    if opts.cell_clip is not None:
        lines.append(f"clip(a) = min(max(a, -{opts.cell_clip:g}), {opts.cell_clip:g})")
    if len(opts.activations) > 1:
        lines.append("reverse direction: " + ", ".join(oa.text(*s)
                                                       for s in opts.activations[1]))
    return tuple(lines)
