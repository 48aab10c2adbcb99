"""Central-difference gradient check of the hand-written backward, float64, no torch.

For a configuration we draw x, initial states, parameters and random upstream gradients
(dy, dh_n, dc_n), take the scalar loss = sum(y * dy) + sum(h_n * dh_n) + sum(c_n * dc_n),
and compare backward's gradient with (loss(w + eps) - loss(w - eps)) / (2 eps) on a random
sample of entries of every input, state and parameter. Dropout masks are held fixed by
reseeding the generator for every evaluation.
"""
import numpy as np

from ..sequence import backward, forward
from .cases import GRADCHECK_TOL as TOL
from .cases import Case

__all__ = ["TOL", "Case", "GradCase", "numeric_grad", "compare", "check_layer", "default_cases"]


def GradCase(kind="gru", num_layers=1, bidirectional=False, bias=True, proj_size=0,
             dropout=0.0, lengths=None, input_size=3, hidden_size=4, seq_len=4, batch=3,
             seed=0):
    """A Case with gradcheck's defaults (float64, 4 steps, 3 sequences)."""
    return Case(kind, input_size, hidden_size, num_layers, bidirectional, bias=bias,
                proj_size=proj_size, dropout=dropout, lengths=lengths, seq_len=seq_len,
                batch=batch, seed=seed)


def numeric_grad(f, arr, idx, eps=1e-6):
    """(f(arr[idx] + eps) - f(arr[idx] - eps)) / (2 eps), restoring arr."""
    old = arr[idx]
    arr[idx] = old + eps
    up = f()
    arr[idx] = old - eps
    down = f()
    arr[idx] = old
    return (up - down) / (2 * eps)


def compare(f, analytic, arrays, rng, samples=12, eps=1e-6):
    """Max over sampled entries of |analytic - numeric| / max(1, |analytic|, |numeric|),
    for each named array. ``analytic`` maps the same names to gradient arrays."""
    errs = {}
    for name, arr in arrays.items():
        if arr.size == 0:
            continue
        flat = rng.choice(arr.size, size=min(samples, arr.size), replace=False)
        worst = 0.0
        for i in flat:
            idx = np.unravel_index(i, arr.shape)
            num = numeric_grad(f, arr, idx, eps)
            ana = analytic[name][idx]
            worst = max(worst, abs(ana - num) / max(1.0, abs(ana), abs(num)))
        errs[name] = worst
    return errs


def check_layer(case, samples=12):
    """Returns {array name: relative error} for one Case (float64)."""
    layer = case.make_layer(dtype="float64")
    fam = layer.family
    rng = np.random.default_rng(case.seed)
    D = 2 if case.bidirectional else 1
    LD, T, N = case.num_layers * D, case.seq_len, case.batch
    x = rng.standard_normal((T, N, case.input_size))
    h0 = rng.standard_normal((LD, N, case.H_out))
    c0 = rng.standard_normal((LD, N, case.hidden_size)) if fam.has_cell_state else None
    weights = layer.weights()
    lengths = None if case.lengths is None else np.asarray(case.lengths)

    def run():
        return forward(fam, x, weights, h0, c0, dropout=case.dropout,
                       training=case.dropout > 0, rng=np.random.default_rng(case.seed + 1),
                       lengths=lengths)

    (y, h_n, c_n), cache = run()
    dy, dh = rng.standard_normal(y.shape), rng.standard_normal(h_n.shape)
    dc = None if c_n is None else rng.standard_normal(c_n.shape)

    def loss():
        (y, h_n, c_n), _ = run()
        total = np.sum(y * dy) + np.sum(h_n * dh)
        return total if c_n is None else total + np.sum(c_n * dc)

    g = backward(cache, dy, dh, dc)
    arrays, analytic = {"x": x, "h0": h0}, {"x": g["dx"], "h0": g["dh0"]}
    if c0 is not None:
        arrays["c0"], analytic["c0"] = c0, g["dc0"]
    for names, ws, dws in zip(layer.names(), weights, g["dweights"]):
        for n3, w3, dw3 in zip(names, ws, dws):
            for name, w, dw in zip(n3, w3, dw3):
                if name is not None:
                    arrays[name], analytic[name] = w, dw
    return compare(loss, analytic, arrays, rng, samples)


#: variant families (cells/variants.py): options torch lacks, one case each
VARIANTS = [("lstm", {"peepholes": True, "cell_clip": 1.5}),
            ("lstm", {"input_forget": True, "activations": ["Softsign", "Elu", "Softplus"]}),
            ("gru", {"reset_after": False, "activations": ["HardSigmoid", "Tanh"]}),
            ("gru", {"cell_clip": 0.8}),
            ("rnn", {"activations": ["LeakyRelu"], "activation_alpha": [0.1]})]


def default_cases(seed=0, kinds=None):
    """Every cell family x layer option: layers, directions, bias, projection, dropout,
    variable lengths; with every family (kinds=None) also the VARIANTS, two layers,
    bidirectional, with lengths."""
    from ..cells import FAMILIES
    cases = []
    for kind in (kinds or FAMILIES):
        fam = FAMILIES[kind]
        cases += [GradCase(kind, seed=seed),
                  GradCase(kind, num_layers=2, bidirectional=True, seed=seed),
                  GradCase(kind, bias=False, seed=seed),
                  GradCase(kind, num_layers=3, dropout=0.3, seed=seed),
                  GradCase(kind, num_layers=2, bidirectional=True, lengths=[4, 1, 3], seed=seed)]
        if fam.supports_projection:
            cases += [GradCase(kind, proj_size=2, seed=seed),
                      GradCase(kind, num_layers=2, bidirectional=True, proj_size=3,
                               lengths=[2, 4, 1], seed=seed)]
    for kind, options in (VARIANTS if kinds is None else ()):
        case = GradCase(kind, num_layers=2, bidirectional=True, lengths=[4, 1, 3], seed=seed)
        case.options = options
        cases.append(case)
    return cases
