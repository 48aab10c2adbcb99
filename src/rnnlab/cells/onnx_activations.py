"""ONNX's recurrent activations, each forward beside its derivative, and the rule that
gives each its alpha and beta.

The RNN, GRU and LSTM operators of ONNX name their activations (``activations``, f / g /
h) and take their parameters from two flat lists, ``activation_alpha`` and
``activation_beta``. Each value is consumed, in order, by the next activation that uses
one (Affine, ScaledTanh and HardSigmoid take an alpha and a beta; LeakyRelu,
ThresholdedRelu and Elu an alpha; the rest none), as onnxruntime reads them. An
activation that finds its list used up takes onnxruntime's default: LeakyRelu 0.01,
HardSigmoid 0.2 and 0.5, Elu 1.0 — and 0 for Affine, ThresholdedRelu and ScaledTanh,
where the ONNX text says "the same as the ONNX operator" (1.0). rnnlab refuses those
three without their values rather than pick one of the two readings.

Each derivative is written through the pre-activation x (and the output y where it is
cheaper); the variant families keep x for their backward.
"""
import numpy as np

from .activations import sigmoid

# name -> (number of alphas, number of betas, onnxruntime's defaults or None: no default)
USES = {"Relu": (0, 0, ()), "Tanh": (0, 0, ()), "Sigmoid": (0, 0, ()),
        "Affine": (1, 1, None), "LeakyRelu": (1, 0, (0.01,)),
        "ThresholdedRelu": (1, 0, None), "ScaledTanh": (1, 1, None),
        "HardSigmoid": (1, 1, (0.2, 0.5)), "Elu": (1, 0, (1.0,)),
        "Softsign": (0, 0, ()), "Softplus": (0, 0, ())}
_CANON = {k.lower(): k for k in USES}


def _hard_sigmoid_grad(x, y, a, b):
    z = a * x + b
    return np.where((z > 0) & (z < 1), a, 0.0)


def _scaled_tanh_grad(x, y, a, b):
    t = np.tanh(b * x)
    return a * b * (1.0 - t * t)


# name -> (forward(x, alpha, beta), derivative(x, y, alpha, beta) = d y / d x), side by
# side; at a kink the derivative is the one-sided value of the forward's own branch
PAIRS = {
    "Sigmoid": (lambda x, a, b: sigmoid(x),
                lambda x, y, a, b: y * (1.0 - y)),
    "Tanh": (lambda x, a, b: np.tanh(x),
             lambda x, y, a, b: 1.0 - y * y),
    "Relu": (lambda x, a, b: np.maximum(x, 0.0),
             lambda x, y, a, b: np.where(x > 0, 1.0, 0.0)),
    "Affine": (lambda x, a, b: a * x + b,
               lambda x, y, a, b: np.full_like(x, a)),
    "LeakyRelu": (lambda x, a, b: np.where(x >= 0, x, a * x),
                  lambda x, y, a, b: np.where(x >= 0, 1.0, a)),
    "ThresholdedRelu": (lambda x, a, b: np.where(x > a, x, 0.0),
                        lambda x, y, a, b: np.where(x > a, 1.0, 0.0)),
    "ScaledTanh": (lambda x, a, b: a * np.tanh(b * x), _scaled_tanh_grad),
    "HardSigmoid": (lambda x, a, b: np.clip(a * x + b, 0.0, 1.0), _hard_sigmoid_grad),
    "Elu": (lambda x, a, b: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0.0))),
            lambda x, y, a, b: np.where(x >= 0, 1.0, y + a)),
    "Softsign": (lambda x, a, b: x / (1.0 + np.abs(x)),
                 lambda x, y, a, b: 1.0 / ((1.0 + np.abs(x)) * (1.0 + np.abs(x)))),
    "Softplus": (lambda x, a, b: np.logaddexp(0.0, x),        # log(1 + e^x), no overflow
                 lambda x, y, a, b: sigmoid(x)),
}


def forward(name, x, a, b):
    """The activation ``name`` with alpha a and beta b applied to x (a new array)."""
    return PAIRS[name][0](x, a, b)


def derivative(name, x, y, a, b):
    """d y / d x at x (y = forward(name, x, a, b))."""
    return PAIRS[name][1](x, y, a, b)


def resolve(names, alphas=None, betas=None, where="activations"):
    """ONNX's three attributes -> a tuple of (name, alpha, beta), one per activation,
    names in ONNX's spelling (any case accepted). ValueError naming what is wrong: an
    unknown name, a value left over, or an activation without a default left without
    its value."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise TypeError(f"{where} must be a list of ONNX activation names, got "
                        f"{type(names).__name__}")
    alphas = [float(v) for v in (alphas or ())]
    betas = [float(v) for v in (betas or ())]
    out = []
    for n in names:
        canon = _CANON.get(str(n).lower()) if isinstance(n, str) else None
        if canon is None:
            raise ValueError(f"{where}: unknown activation {n!r}; ONNX's are {sorted(USES)}")
        na, nb, default = USES[canon]
        vals = []
        for k, (count, pool) in enumerate(((na, alphas), (nb, betas))):
            if not count:
                vals.append(0.0)
            elif pool:
                vals.append(pool.pop(0))
            elif default is None:
                raise ValueError(f"{where}: {canon} needs activation_"
                                 f"{'alpha' if k == 0 else 'beta'} (the ONNX text and "
                                 "onnxruntime read a missing one differently: 1.0 and 0)")
            else:
                vals.append(default[k])
        out.append((canon, vals[0], vals[1]))
    if alphas or betas:
        raise ValueError(f"{where}: {len(alphas)} activation_alpha and {len(betas)} "
                         "activation_beta values are left over (each is used by the next "
                         "activation that takes one)")
    return tuple(out)


def flatten(acts):
    """The inverse of resolve: (names, alphas, betas) as ONNX writes them."""
    names, alphas, betas = [], [], []
    for name, a, b in acts:
        na, nb, _ = USES[name]
        names.append(name)
        alphas += [a] * na
        betas += [b] * nb
    return names, alphas, betas


def text(name, a, b):
    """How explain prints one activation: 'tanh', 'HardSigmoid(0.2, 0.5)'."""
    na, nb, _ = USES[name]
    if name in ("Sigmoid", "Tanh", "Relu"):
        return {"Sigmoid": "s", "Tanh": "tanh", "Relu": "relu"}[name]
    args = ([f"{a:g}"] if na else []) + ([f"{b:g}"] if nb else [])
    return f"{name}({', '.join(args)})" if args else name
