"""What goes around a recurrent layer in a model: Linear and Embedding, with torch's
names, shapes, initialisation and a hand-written backward beside each forward.

Like the layers, a call is recorded when grad mode is on (training mode, or
rnnlab.enable_grad()); ``backward`` uses this thread's most recent recorded call (the
input and weights it saw) and adds the parameter gradients into ``grads``.
"""
import numpy as np

from ..checks import check_bool, check_int, float_array, gradient_array, to_numpy
from ..errors import ShapeError
from .grad_mode import is_recording, why_not_recorded
from .module import Module
from .records import last_recorded


class _Head(Module):
    """Shared recording for Linear and Embedding."""

    def _record(self, saved):
        rec = self._records
        rec.freed = False
        if is_recording(self):
            rec.last_call, rec.unrecorded_reason = saved, None
        else:
            rec.last_call, rec.unrecorded_reason = None, why_not_recorded(self)

    def _last(self):
        return last_recorded(self)

    def _done(self, retain_graph):
        """After a backward: forget the call's saved values unless retain_graph (torch)."""
        if not retain_graph:
            self._records.last_call, self._records.freed = None, True

    last_call = property(lambda self: self._records.last_call)

    def __call__(self, input):
        return self.forward(input)


class Linear(_Head):
    """y = x W^T + b. Linear(in_features, out_features, bias=True, device=None, *,
    dtype=np.float32, seed=None); x (..., in_features) -> y (..., out_features).
    weight (out_features, in_features) and bias (out_features,) start from
    U(-1/sqrt(in_features), 1/sqrt(in_features)), as torch's defaults."""

    _FIXED = ("in_features", "out_features")

    def __init__(self, in_features, out_features, bias=True, device=None, *,
                 dtype=np.float32, seed=None):
        super().__init__(dtype, seed, device)
        self.in_features = check_int("in_features", in_features)
        self.out_features = check_int("out_features", out_features)
        shapes = {"weight": (self.out_features, self.in_features)}
        if check_bool("bias", bias):
            shapes["bias"] = (self.out_features,)
        else:
            object.__setattr__(self, "bias", None)
        self._init_parameters(shapes, self.in_features)

    def config(self):
        return dict(in_features=self.in_features, out_features=self.out_features,
                    bias="bias" in self._parameters, dtype=self.dtype.name)

    def __repr__(self):
        return (f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={'bias' in self._parameters})")

    def forward(self, input):
        x = float_array(input, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ShapeError(f"Linear: input must be (..., {self.in_features}), got shape "
                             f"{x.shape}")
        w = self._parameters["weight"]
        with np.errstate(over="ignore", invalid="ignore"):   # inf / NaN as torch, quietly
            y = x @ w.T                                      # (..., out)
            b = self._parameters.get("bias")
            if b is not None:
                y += b
        self._record((x.copy(), w.copy()))
        return y

    def backward(self, d_output, *, retain_graph=False):
        """dx for the most recent recorded call; adds dW = dy^T x and db = sum dy. The
        call's saved values are freed afterwards unless retain_graph=True, as in torch."""
        x, w = self._last()
        dy = gradient_array(d_output, x.shape[:-1] + (self.out_features,), self.dtype,
                            "d_output")
        dy2 = dy.reshape(-1, self.out_features)
        with np.errstate(over="ignore", invalid="ignore"):
            grads = [("weight", dy2.T @ x.reshape(-1, self.in_features))]
            if "bias" in self._parameters:
                grads.append(("bias", dy2.sum(axis=0)))
            self._add_grads(grads)
            self._done(retain_graph)
            return dy @ w                                    # (..., in)


class Embedding(_Head):
    """e = weight[idx]. Embedding(num_embeddings, embedding_dim, padding_idx=None, *,
    dtype=np.float32, seed=None); idx: integers of any shape -> (*idx.shape, dim).
    weight starts from N(0, 1) (row padding_idx zero, and it gets no gradient), as torch."""

    _FIXED = ("num_embeddings", "embedding_dim", "padding_idx")

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, device=None, *,
                 dtype=np.float32, seed=None):
        super().__init__(dtype, seed, device)
        self.num_embeddings = check_int("num_embeddings", num_embeddings)
        self.embedding_dim = check_int("embedding_dim", embedding_dim)
        if padding_idx is not None:
            padding_idx = check_int("padding_idx", padding_idx, minimum=-self.num_embeddings)
            if padding_idx >= self.num_embeddings:
                raise ValueError(f"padding_idx must be within num_embeddings "
                                 f"({self.num_embeddings}), got {padding_idx}")
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        self._init_parameters({"weight": (self.num_embeddings, self.embedding_dim)}, 1,
                              normal=True)
        if padding_idx is not None and self.weight.flags.writeable:
            self.weight[padding_idx] = 0

    def config(self):
        return dict(num_embeddings=self.num_embeddings, embedding_dim=self.embedding_dim,
                    padding_idx=self.padding_idx, dtype=self.dtype.name)

    def __repr__(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}{pad})"

    def forward(self, input):
        idx = to_numpy(input, "input")
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding: input must hold integer indices, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            bad = idx[(idx < 0) | (idx >= self.num_embeddings)].ravel()[:5].tolist()
            raise ValueError(f"Embedding: indices must be in 0..{self.num_embeddings - 1}, "
                             f"got {bad}")
        idx = idx.astype(np.intp)
        self._record(idx.copy())
        return self._parameters["weight"][idx]

    def backward(self, d_output, *, retain_graph=False):
        """Adds d_output's rows into the gradient of the rows they came from; returns
        None (indices have no gradient). The call's saved indices are freed afterwards
        unless retain_graph=True, as in torch."""
        idx = self._last()
        de = gradient_array(d_output, idx.shape + (self.embedding_dim,), self.dtype,
                            "d_output")
        g = np.zeros((self.num_embeddings, self.embedding_dim), dtype=self.dtype)
        with np.errstate(over="ignore", invalid="ignore"):   # sums past the range: inf
            np.add.at(g, idx.ravel(), de.reshape(-1, self.embedding_dim))
        if self.padding_idx is not None:
            g[self.padding_idx] = 0
        self._add_grads([("weight", g)])
        self._done(retain_graph)
        return None
