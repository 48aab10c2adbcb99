"""The training tasks of ``rnnlab train``: data, the held-out loss and metric, the baseline
a model that learned nothing scores, and a fingerprint of the data (a resumed run must see
the same data).

- adding: two channels, uniform values and two markers (one in each half); predict the sum
  of the two marked values from the last step (Hochreiter & Schmidhuber 1997; Le et al.
  2015). Loss and metric: MSE. Baseline: always predicting 1.0, MSE 1/6 ~ 0.167 in
  expectation; measured on the task's fixed test set of 2000 sequences (length 50): 0.161.
- copy: S symbols, blanks, a delimiter; repeat the symbols in the last S steps (a memory
  task). Metric: accuracy on those S steps; baseline: 1 / number of symbols.
- charlm: next character of the user's text (or ``builtin``, a generated text);
  bits per character on the last 10% of the text, never trained on; baseline: the
  characters' frequencies (a unigram model). Below MIN_TEXT characters a model can only
  memorise the text (measured: docs/training.md), and the run says so.
- digits: scikit-learn's 8x8 digits read row by row (8 steps of 8 pixels), class at the
  last step; accuracy on the last 20%; baseline: the most frequent class.

Batches are drawn from ``np.random.default_rng([seed, step])``, so a resumed run sees the
same batches as an uninterrupted one. Losses are in nats (cross-entropy) or MSE.
"""
import hashlib
import math

import numpy as np

from ..nn import no_grad
from . import losses

MIN_TEXT = 8_000         # characters below which charlm memorises (docs/training.md)


class TaskError(ValueError):
    """A task that cannot be set up as asked (missing text, bad sizes, ...)."""


class Task:
    name = ""
    objective = "classification"     # "classification" (cross-entropy) or "regression" (MSE)
    read = "last"                    # which steps the head reads
    metric = ""                      # the reported quantity, with its unit
    vocab = None                     # input vocabulary (embedding), or None for float input
    tokens = None                    # the vocabulary's strings (charlm)
    input_size = None
    out_features = None
    seq_len = None

    @property
    def loss_unit(self):
        return "MSE" if self.objective == "regression" else "nats"

    def batch(self, rng, N):
        raise NotImplementedError

    def loss_and_grad(self, pred, y):
        if self.objective == "regression":
            return losses.mse(pred, y)
        d = pred.reshape(-1, pred.shape[-1])
        loss, g = losses.cross_entropy(d, y.reshape(-1))
        return loss, g.reshape(pred.shape)

    def held_out(self):
        """The held-out data as (x, y) batches."""
        raise NotImplementedError

    def evaluate(self, model):
        """(held-out loss, held-out metric) of ``model``, run in eval mode without a
        record (the caller puts it back in training mode)."""
        total, count, hits = 0.0, 0, 0.0
        model.eval()
        for x, y in self.held_out():
            with no_grad():
                pred = model(x.astype(model.dtype) if x.dtype.kind == "f" else x)[0]
            if self.objective == "regression":
                loss, _ = losses.mse(pred.astype(np.float64), y.astype(np.float64),
                                     reduction="sum")
                n = y.size
            else:
                logits = pred.reshape(-1, pred.shape[-1]).astype(np.float64)
                loss, _ = losses.cross_entropy(logits, y.reshape(-1), reduction="sum")
                n = y.size
                hits += float(np.sum(logits.argmax(axis=1) == y.reshape(-1)))
            total, count = total + float(loss), count + n
        return total / count, self._metric(total / count, hits / count)

    def _metric(self, loss, accuracy):
        return accuracy

    def baseline(self):
        raise NotImplementedError

    def config(self):
        return {"task": self.name}

    def fingerprint(self):
        """What must match for a resumed run to see the same data."""
        return self.config()


class Adding(Task):
    name, objective, metric, input_size, out_features = "adding", "regression", "mse", 2, 1

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

    def held_out(self):
        return [self.test]

    def _metric(self, loss, accuracy):
        return loss

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
        self.input_size = min(32, self.vocab)
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

    def held_out(self):
        return [self.test]

    def evaluate(self, model):
        loss, _ = Task.evaluate(self, model)
        x, y = self.test
        with no_grad():
            guess = model(x)[0].argmax(axis=2)
        return loss, float(np.mean(guess[-self.length:] == y[-self.length:]))

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
        self.tokens = sorted(set(text))
        self.vocab = self.out_features = len(self.tokens)
        self.input_size = min(32, self.vocab)
        lookup = {c: i for i, c in enumerate(self.tokens)}
        data = np.array([lookup[c] for c in text], dtype=np.int64)
        cut = max(int(len(data) * 0.9), len(data) - max(len(data) // 10, seq_len + 1))
        self.train_data, self.test_data = data[:cut], data[cut:]
        if len(self.train_data) < seq_len + 1 or len(self.test_data) < 2:
            raise TaskError(f"charlm: text too short for --seq-len {seq_len}")
        self.digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        self.chars = len(text)

    def batch(self, rng, N):
        T = self.seq_len
        starts = rng.integers(0, len(self.train_data) - T, N)
        win = np.stack([self.train_data[s:s + T + 1] for s in starts], axis=1)   # (T+1, N)
        return win[:-1], win[1:]

    def held_out(self):
        d, T = self.test_data, self.seq_len
        out = []
        for s in range(0, len(d) - 1, T):
            y = d[s + 1:s + T + 1]
            out.append((d[s:s + len(y)][:, None], y[:, None]))
        return out

    def _metric(self, loss, accuracy):
        return loss / math.log(2)                              # nats -> bits per character

    def baseline(self):
        freq = np.bincount(self.train_data, minlength=self.vocab) + 1.0
        p = freq / freq.sum()
        return float(-np.mean(np.log2(p[self.test_data])))

    def config(self):
        return {"task": self.name, "seq_len": self.seq_len}

    def fingerprint(self):
        return {"task": self.name, "seq_len": self.seq_len, "text_sha256": self.digest,
                "chars": "".join(self.tokens)}


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

    def held_out(self):
        return [(self.test_x, self.test_y)]

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
#: the settings every task shares (none changes what a task is)
COMMON = dict(dropout=0.0, bidirectional=False, weight_decay=0.0, schedule="none",
              eval_every=None)


def make_task(name, seq_len=None, text=None):
    if name == "adding":
        return Adding(seq_len or DEFAULTS["adding"]["seq_len"])
    if name == "copy":
        return Copy(seq_len or DEFAULTS["copy"]["seq_len"])
    if name == "charlm":
        if text is None:
            raise TaskError("charlm needs --text FILE (the text to learn), or --text builtin")
        return CharLM(text, seq_len or DEFAULTS["charlm"]["seq_len"])
    if name == "digits":
        if seq_len not in (None, 8):
            raise TaskError("digits images are 8 rows: --seq-len must be 8 (or left out)")
        return Digits()
    raise TaskError(f"unknown task {name!r}; choose from {sorted(DEFAULTS)}")


def builtin_text(chars=100_000, seed=0):
    """A generated English-like text of about ``chars`` characters (a small grammar with
    varied nouns, verbs and adjectives): enough to learn from without memorising."""
    rng = np.random.default_rng(seed)
    subjects = ["the old man", "a young girl", "my friend", "the teacher", "a small dog",
                "the farmer", "her brother", "the captain", "a tired cat", "the doctor",
                "our neighbour", "the child", "a quiet student", "the baker", "his sister"]
    verbs = ["sees", "likes", "paints", "finds", "carries", "remembers", "watches", "buys",
             "follows", "brings", "draws", "keeps", "reads", "opens", "loves"]
    adjectives = ["red", "green", "old", "new", "small", "large", "bright", "dark", "quiet",
                  "heavy", "soft", "long", "warm", "cold", "strange"]
    objects = ["ball", "river", "house", "book", "apple", "garden", "letter", "window",
               "boat", "mountain", "coat", "lamp", "road", "flower", "table"]
    places = ["in the morning", "near the sea", "after dinner", "at the market",
              "in the garden", "on the hill", "before the rain", "by the road"]
    out, n = [], 0
    while n < chars:
        s = (f"{rng.choice(subjects)} {rng.choice(verbs)} the {rng.choice(adjectives)} "
             f"{rng.choice(objects)}")
        if rng.random() < 0.5:
            s += f" {rng.choice(places)}"
        s += ".\n" if rng.random() < 0.3 else ". "
        out.append(s[0].upper() + s[1:])
        n += len(s)
    return "".join(out)
