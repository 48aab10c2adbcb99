"""The training tasks of ``rnnlab train``: data, the quantity reported on held-out data,
and the baseline a model that learned nothing scores.

- adding: two channels, uniform values and two markers (one in each half); predict the sum
  of the two marked values from the last step (Hochreiter & Schmidhuber 1997; Le et al.
  2015). Baseline: always predicting 1.0, MSE 1/6 ~ 0.167 in expectation; measured on
  the task's fixed test set of 2000 sequences (length 50): 0.161.
- copy: S symbols, blanks, a delimiter; repeat the symbols in the last S steps (a memory
  task). Reported: accuracy on those S steps; baseline: 1 / number of symbols.
- charlm: next character of the user's text; bits per character on the last 10% of the
  text; baseline: the characters' frequencies (a unigram model).
- digits: scikit-learn's 8x8 digits read row by row (8 steps of 8 pixels), class at the
  last step; accuracy on the last 20%; baseline: the most frequent class.

Batches are drawn from ``np.random.default_rng([seed, step])``, so a resumed run sees the
same batches as an uninterrupted one.
"""
import math

import numpy as np

from . import losses


class TaskError(ValueError):
    """A task that cannot be set up as asked (missing text, bad sizes, ...)."""


class Task:
    name = ""
    loss = "ce"          # "ce" or "mse"
    read = "last"        # which steps the head reads
    metric = ""
    vocab = None         # input vocabulary (embedding), or None for float input
    input_size = None
    out_features = None
    seq_len = None       # fixed length, or None: --seq-len

    def batch(self, rng, N):
        raise NotImplementedError

    def loss_and_grad(self, pred, y):
        if self.loss == "mse":
            return losses.mse(pred, y)
        return losses.cross_entropy(pred, y.reshape(-1))

    def evaluate(self, model):
        """The reported quantity on held-out data."""
        raise NotImplementedError

    def baseline(self):
        raise NotImplementedError

    def config(self):
        return {"task": self.name}


class Adding(Task):
    name, loss, metric, input_size, out_features = "adding", "mse", "mse", 2, 1

    def __init__(self, seq_len=50):
        if seq_len < 2:
            raise TaskError(f"adding needs --seq-len of at least 2, got {seq_len}")
        self.seq_len = seq_len
        self.test = self._make(np.random.default_rng(12345), 2000)

    def _make(self, rng, N):
        T = self.seq_len
        x = np.zeros((T, N, 2), dtype=np.float32)
        x[:, :, 0] = rng.random((T, N))
        half = T // 2
        a, b = rng.integers(0, half, N), rng.integers(half, T, N)
        cols = np.arange(N)
        x[a, cols, 1] = 1
        x[b, cols, 1] = 1
        y = (x[a, cols, 0] + x[b, cols, 0])[:, None]
        return x, y.astype(np.float32)

    def batch(self, rng, N):
        return self._make(rng, N)

    def evaluate(self, model):
        x, y = self.test
        pred, _ = model(x.astype(model.rnn.dtype))
        return float(np.mean((pred - y) ** 2))

    def baseline(self):
        return float(np.mean((1.0 - self.test[1]) ** 2))

    def config(self):
        return {"task": self.name, "seq_len": self.seq_len}


class Copy(Task):
    name, read, metric = "copy", "every", "accuracy"

    def __init__(self, seq_len=20, symbols=8, length=5):
        if seq_len < 2 * length + 1:
            raise TaskError(f"copy needs --seq-len of at least {2 * length + 1} "
                            f"({length} symbols, a delimiter, {length} answers), got {seq_len}")
        self.seq_len, self.symbols, self.length = seq_len, symbols, length
        self.vocab = symbols + 2                  # 0 blank, 1..K symbols, K+1 delimiter
        self.out_features = symbols + 1
        self.test = self._make(np.random.default_rng(12345), 1000)

    def _make(self, rng, N):
        T, S = self.seq_len, self.length
        x = np.zeros((T, N), dtype=np.int64)
        y = np.zeros((T, N), dtype=np.int64)
        sym = rng.integers(1, self.symbols + 1, (S, N))
        x[:S] = sym
        x[T - S - 1] = self.symbols + 1
        y[T - S:] = sym
        return x, y

    def batch(self, rng, N):
        return self._make(rng, N)

    def evaluate(self, model):
        x, y = self.test
        pred, _ = model(x)
        guess = pred.reshape(self.seq_len, -1, self.out_features).argmax(axis=2)
        return float(np.mean(guess[-self.length:] == y[-self.length:]))

    def baseline(self):
        return 1.0 / self.symbols

    def config(self):
        return {"task": self.name, "seq_len": self.seq_len}


class CharLM(Task):
    name, read, metric = "charlm", "every", "bits/char"

    def __init__(self, text, seq_len=64):
        if len(text) < 2 * seq_len + 2:
            raise TaskError(f"charlm needs a text of at least {2 * seq_len + 2} characters "
                            f"for --seq-len {seq_len}, got {len(text)}")
        self.seq_len = seq_len
        self.chars = sorted(set(text))
        self.vocab = self.out_features = len(self.chars)
        lookup = {c: i for i, c in enumerate(self.chars)}
        data = np.array([lookup[c] for c in text], dtype=np.int64)
        cut = max(int(len(data) * 0.9), len(data) - max(len(data) // 10, seq_len + 1))
        self.train_data, self.test_data = data[:cut], data[cut:]
        if len(self.train_data) < seq_len + 1 or len(self.test_data) < 2:
            raise TaskError(f"charlm: text too short for --seq-len {seq_len}")

    def encode(self, text):
        lookup = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - set(lookup))
        if unknown:
            raise TaskError(f"characters not in the model's vocabulary: {unknown[:10]}")
        return np.array([lookup[c] for c in text], dtype=np.int64)

    def batch(self, rng, N):
        T = self.seq_len
        starts = rng.integers(0, len(self.train_data) - T, N)
        win = np.stack([self.train_data[s:s + T + 1] for s in starts], axis=1)   # (T+1, N)
        return win[:-1], win[1:]

    def evaluate(self, model):
        """Bits per character over the held-out text, read in windows of seq_len."""
        d, T = self.test_data, self.seq_len
        total, count = 0.0, 0
        for s in range(0, len(d) - 1, T):
            x, y = d[s:s + T][:, None], d[s + 1:s + T + 1][:, None]
            x = x[:len(y)]
            pred, _ = model(x)
            loss, _ = losses.cross_entropy(pred.astype(np.float64), y.reshape(-1),
                                           reduction="sum")
            total, count = total + loss, count + len(y)
        return total / count / math.log(2)

    def baseline(self):
        freq = np.bincount(self.train_data, minlength=self.vocab) + 1.0
        p = freq / freq.sum()
        return float(-np.mean(np.log2(p[self.test_data])))

    def config(self):
        return {"task": self.name, "seq_len": self.seq_len, "chars": "".join(self.chars)}


class Digits(Task):
    name, metric, input_size, out_features, seq_len = "digits", "accuracy", 8, 10, 8

    def __init__(self):
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise TaskError("the digits task needs scikit-learn: pip install scikit-learn") \
                from None
        d = load_digits()
        x = (d.images / 16.0).astype(np.float32).transpose(1, 0, 2)   # (8 rows, N, 8)
        cut = int(x.shape[1] * 0.8)
        self.train_x, self.train_y = x[:, :cut], d.target[:cut]
        self.test_x, self.test_y = x[:, cut:], d.target[cut:]

    def batch(self, rng, N):
        pick = rng.integers(0, self.train_x.shape[1], N)
        return self.train_x[:, pick], self.train_y[pick]

    def evaluate(self, model):
        pred, _ = model(self.test_x.astype(model.rnn.dtype))
        return float(np.mean(pred.argmax(axis=1) == self.test_y))

    def baseline(self):
        return float(np.bincount(self.test_y).max() / len(self.test_y))


#: task -> defaults that solve it on this kind of machine in minutes
DEFAULTS = {
    "adding": dict(model="gru", hidden=64, layers=1, seq_len=50, batch=64, steps=1500,
                   lr=3e-3, optim="adam", clip=1.0),
    "copy": dict(model="gru", hidden=64, layers=1, seq_len=20, batch=64, steps=1500, lr=1e-2,
                 optim="adam", clip=1.0),
    "charlm": dict(model="gru", hidden=128, layers=1, seq_len=64, batch=32, steps=1500,
                   lr=3e-3, optim="adam", clip=1.0),
    "digits": dict(model="gru", hidden=64, layers=1, seq_len=8, batch=64, steps=1500, lr=1e-2,
                   optim="adam", clip=1.0),
}


def make_task(name, seq_len=None, text=None):
    if name == "adding":
        return Adding(seq_len or DEFAULTS["adding"]["seq_len"])
    if name == "copy":
        return Copy(seq_len or DEFAULTS["copy"]["seq_len"])
    if name == "charlm":
        if text is None:
            raise TaskError("charlm needs --text FILE (the text to learn)")
        return CharLM(text, seq_len or DEFAULTS["charlm"]["seq_len"])
    if name == "digits":
        if seq_len not in (None, 8):
            raise TaskError("digits images are 8 rows: --seq-len must be 8 (or left out)")
        return Digits()
    raise TaskError(f"unknown task {name!r}; choose from {sorted(DEFAULTS)}")
