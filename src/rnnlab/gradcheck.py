"""Central-difference gradient check of the hand-written backward, float64, no torch.

For a configuration we draw x, initial states, parameters and random upstream gradients
(dy, dh_n, dc_n), take the scalar loss = sum(y * dy) + sum(h_n * dh_n) + sum(c_n * dc_n),
and compare backward's gradient with (loss(w + eps) - loss(w - eps)) / (2 eps) on a random
sample of entries of every input, state and parameter. Dropout masks are held fixed by
reseeding the generator for every evaluation.
"""
from dataclasses import dataclass, field

import numpy as np

from . import functional as F
from .kinds import KINDS

TOL = 1e-6


@dataclass
class GradCase:
    kind: str = "gru"
    num_layers: int = 1
    bidirectional: bool = False
    bias: bool = True
    proj_size: int = 0
    dropout: float = 0.0
    lengths: list = field(default=None)
    input_size: int = 3
    hidden_size: int = 4
    seq_len: int = 4
    batch: int = 3
    seed: int = 0

    def label(self):
        s = f"{self.kind} L{self.num_layers}"
        for flag, text in [(self.bidirectional, "bi"), (not self.bias, "nobias"),
                           (self.proj_size, f"proj{self.proj_size}"),
                           (self.dropout, f"dropout{self.dropout}"), (self.lengths, "lengths")]:
            if flag:
                s += " " + text
        return s


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
    """Returns {array name: relative error} for one GradCase."""
    cls, _, extra = KINDS[case.kind]
    kw = dict(num_layers=case.num_layers, bias=case.bias, bidirectional=case.bidirectional,
              dropout=case.dropout, **extra)
    if case.proj_size:
        kw["proj_size"] = case.proj_size
    layer = cls(case.input_size, case.hidden_size, **kw, dtype=np.float64, seed=case.seed)
    mode = layer.mode
    rng = np.random.default_rng(case.seed)
    D = 2 if case.bidirectional else 1
    LD, T, N = case.num_layers * D, case.seq_len, case.batch
    H_out = case.proj_size or case.hidden_size
    x = rng.standard_normal((T, N, case.input_size))
    h0 = rng.standard_normal((LD, N, H_out))
    c0 = rng.standard_normal((LD, N, case.hidden_size)) if mode == "LSTM" else None
    weights = layer._weights()
    lengths = None if case.lengths is None else np.asarray(case.lengths)

    def run():
        return F.forward(mode, x, weights, h0, c0, dropout=case.dropout,
                         training=case.dropout > 0, rng=np.random.default_rng(case.seed + 1),
                         lengths=lengths)

    (y, h_n, c_n), cache = run()
    dy, dh = rng.standard_normal(y.shape), rng.standard_normal(h_n.shape)
    dc = None if c_n is None else rng.standard_normal(c_n.shape)

    def loss():
        (y, h_n, c_n), _ = run()
        total = np.sum(y * dy) + np.sum(h_n * dh)
        return total if c_n is None else total + np.sum(c_n * dc)

    g = F.backward(cache, dy, dh, dc)
    arrays, analytic = {"x": x, "h0": h0}, {"x": g["dx"], "h0": g["dh0"]}
    if c0 is not None:
        arrays["c0"], analytic["c0"] = c0, g["dc0"]
    for names, ws, dws in zip(layer._names(), weights, g["dweights"]):
        for n3, w3, dw3 in zip(names, ws, dws):
            for name, w, dw in zip(n3, w3, dw3):
                if name is not None:
                    arrays[name], analytic[name] = w, dw
    return compare(loss, analytic, arrays, rng, samples)


def default_cases(seed=0):
    """Every cell family x layer option: layers, directions, bias, projection, dropout,
    variable lengths."""
    cases = []
    for kind in KINDS:
        cases += [GradCase(kind, seed=seed),
                  GradCase(kind, num_layers=2, bidirectional=True, seed=seed),
                  GradCase(kind, bias=False, seed=seed),
                  GradCase(kind, num_layers=3, dropout=0.3, seed=seed),
                  GradCase(kind, num_layers=2, bidirectional=True, lengths=[4, 1, 3], seed=seed)]
        if kind == "lstm":
            cases += [GradCase(kind, proj_size=2, seed=seed),
                      GradCase(kind, num_layers=2, bidirectional=True, proj_size=3,
                               lengths=[2, 4, 1], seed=seed)]
    return cases
