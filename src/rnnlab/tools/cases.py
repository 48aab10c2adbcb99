"""One test-case specification and one tolerance table, shared by conformance (verify),
gradcheck, explain, bench and the test suite."""
from dataclasses import asdict, dataclass, field

import numpy as np

from ..nn import make_layer

#: max error allowed when comparing with torch / the reference loop: float64 max abs
#: error; float32 max abs error divided by max(1, largest magnitude of the reference)
#: (relative for large values, absolute below 1, where float32 rounding of sums on both
#: sides dominates). GRADCHECK: |analytic - numeric| / max(1, |a|, |n|), float64.
TOL = {"float64": 1e-10, "float32": 1e-5}
GRADCHECK_TOL = 1e-6


def error(ours, theirs, dtype):
    """The error measure of TOL between two arrays (or torch tensors); shape mismatch is
    an AssertionError."""
    theirs = theirs.detach().cpu().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    if ours is None or np.shape(ours) != theirs.shape:
        raise AssertionError(f"shape: ours {None if ours is None else np.shape(ours)} vs "
                             f"reference {theirs.shape}")
    if theirs.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        diff = np.abs(np.asarray(ours, dtype=np.float64) - theirs.astype(np.float64))
    same = np.asarray(ours, dtype=np.float64) == theirs.astype(np.float64)   # inf == inf
    both_nan = np.isnan(np.asarray(ours, dtype=np.float64)) & np.isnan(theirs.astype(np.float64))
    diff = np.where(same | both_nan, 0.0, diff)
    err = float(np.max(diff)) if not np.isnan(diff).any() else float("nan")
    if str(dtype) == "float32":
        finite = np.abs(theirs[np.isfinite(theirs)])
        err /= max(float(finite.max()) if finite.size else 1.0, 1.0)
    return err


def within(errs, dtype):
    """True when every error is within TOL[dtype] (NaN fails)."""
    return all(e <= TOL[str(dtype)] for e in errs.values())


@dataclass
class Case:
    """One layer configuration and example. kind: a registered family ("rnn",
    "rnn_relu", "gru", "lstm", ...)."""
    kind: str = "gru"
    input_size: int = 3
    hidden_size: int = 4
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True
    proj_size: int = 0
    dropout: float = 0.0
    unbatched: bool = False
    with_state: bool = True
    dtype: str = "float64"
    seq_len: int = 5
    batch: int = 2
    lengths: list = field(default=None)
    seed: int = 0
    options: dict = field(default=None)     # variant keywords (cells/variants.py)

    def layer_kwargs(self, input_layout=True, num_layers=None):
        """Constructor keywords of this configuration (rnnlab's and torch's alike, less
        the family's own options)."""
        kw = dict(num_layers=self.num_layers if num_layers is None else num_layers,
                  bias=self.bias, bidirectional=self.bidirectional)
        if input_layout:
            kw["batch_first"] = self.batch_first
        if self.dropout:
            kw["dropout"] = self.dropout
        if self.proj_size:
            kw["proj_size"] = self.proj_size
        return kw

    def make_layer(self, **overrides):
        kw = dict(self.layer_kwargs(), dtype=self.dtype, seed=self.seed, **(self.options or {}))
        kw.update(overrides)
        return make_layer(self.kind, self.input_size, self.hidden_size, **kw)

    @property
    def H_out(self):
        return self.proj_size or self.hidden_size

    def label(self):
        parts = [self.kind, f"I{self.input_size}", f"H{self.hidden_size}", f"L{self.num_layers}"]
        parts += [f"T{self.seq_len}", f"N{'-' if self.unbatched else self.batch}"]
        for flag, text in [(self.bidirectional, "bi"), (self.batch_first, "bf"),
                           (not self.bias, "nobias"), (self.proj_size, f"P{self.proj_size}"),
                           (self.dropout, f"dropout{self.dropout}"),
                           (not self.with_state, "h0=None"), (self.lengths, "len")]:
            if flag:
                parts.append(text)
        parts.append(self.dtype.replace("float", "f"))
        for key, value in (self.options or {}).items():     # variant options, short
            short = {"activations": "acts", "activation_alpha": "alpha",
                     "activation_beta": "beta", "cell_clip": "clip",
                     "input_forget": "coupled", "reset_after": "reset_after"}.get(key, key)
            text = ",".join(map(str, value)) if isinstance(value, list) else value
            parts.append(short if value is True else f"{short}={text}")
        return " ".join(parts)

    def as_dict(self):
        return asdict(self)
