"""A sequence model for the training tasks: optional Embedding -> recurrent layer ->
Linear head, reading the top layer's output at the last step or at every step.

Its tensors are named so torch can load them: ``rnn.<torch name>``, ``head.weight``,
``head.bias``, ``embedding.weight``; ``config()`` rebuilds it.
"""
import numpy as np

from ..nn import Embedding, Linear, make_layer


class SeqModel:
    def __init__(self, kind, input_size, hidden_size, num_layers, out_features, read="last",
                 vocab=None, embedding_dim=None, dtype="float32", seed=None):
        rng = np.random.default_rng(seed)
        self.kind, self.read, self.vocab = kind, read, vocab
        self.embedding = None
        if vocab is not None:
            self.embedding = Embedding(vocab, embedding_dim, dtype=dtype, seed=rng)
            input_size = embedding_dim
        self.rnn = make_layer(kind, input_size, hidden_size, num_layers=num_layers,
                              dtype=dtype, seed=rng)
        self.head = Linear(hidden_size, out_features, dtype=dtype, seed=rng)
        self._config = dict(kind=kind, input_size=input_size, hidden_size=hidden_size,
                            num_layers=num_layers, out_features=out_features, read=read,
                            vocab=vocab, embedding_dim=embedding_dim, dtype=dtype)

    def config(self):
        return dict(self._config)

    @property
    def modules(self):
        return [m for m in (self.embedding, self.rnn, self.head) if m is not None]

    def train(self, mode=True):
        for m in self.modules:
            m.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def forward(self, x, state=None):
        """x (T, N, I) floats, or (T, N) indices with an embedding. Returns predictions
        (N, out) reading the last step, or (T * N, out) reading every step; and the
        final state."""
        e = self.embedding(x) if self.embedding is not None else x
        out, state = self.rnn(e, state)
        self._T = out.shape[0]
        y = self.head(out[-1] if self.read == "last" else out)
        return (y if self.read == "last" else y.reshape(-1, y.shape[-1])), state

    __call__ = forward

    def backward(self, d_pred):
        """Backpropagate the gradient of the predictions through head, layer, embedding."""
        if self.read == "last":
            d_last = self.head.backward(d_pred)
            d_out = np.zeros((self._T,) + d_last.shape, dtype=d_last.dtype)
            d_out[-1] = d_last
        else:
            d_out = self.head.backward(d_pred.reshape(self._T, -1, d_pred.shape[-1]))
        dx = self.rnn.backward(d_out)[0]
        if self.embedding is not None:
            self.embedding.backward(dx)

    def tensors(self):
        """{name: array} with torch-loadable names."""
        out = {f"rnn.{n}": p for n, p in self.rnn.named_parameters()}
        out.update({f"head.{n}": p for n, p in self.head.named_parameters()})
        if self.embedding is not None:
            out["embedding.weight"] = self.embedding.weight
        return out

    def load_tensors(self, tensors):
        """The inverse of tensors(); every problem listed, nothing changed on error."""
        parts = {"rnn.": self.rnn, "head.": self.head}
        if self.embedding is not None:
            parts["embedding."] = self.embedding
        extra = [k for k in tensors if not any(k.startswith(p) for p in parts)]
        if extra:
            raise ValueError(f"unexpected tensors {extra}")
        backups = [(m, m.state_dict()) for m in parts.values()]
        try:
            for prefix, m in parts.items():
                m.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                   if k.startswith(prefix)})
        except ValueError:
            for m, sd in backups:
                m.load_state_dict(sd)
            raise
