"""A whole sequence model: an optional Embedding (integer tokens in) or input Linear, one
recurrent layer of any family, a Linear head reading the top layer at every step or at
each sequence's own last step. What ``rnnlab train`` builds, what a run directory holds,
and what the converters move whole (ONNX, Keras, torch).

    model = rnnlab.SequenceModel("gru", 32, 128, 60, vocab=60, readout="every",
                                 objective="classification")
    logits, state = model(tokens)            # tokens (T, N) ints -> (T, N, 60)
    model.backward(d_logits)                 # head, layer and embedding: grads by name
    opt = rnnlab.optim.Adam(model)           # optimizers and clipping take the model

Parameter names are torch's, prefixed by the part: ``embedding.weight`` (or
``input.weight``, ``input.bias``), ``rnn.<torch name>``, ``head.weight``, ``head.bias`` —
the names of ``torch_source()``'s module, so ``torch.load`` plus that class gives the same
outputs.
"""
import numpy as np

from ..checks import check_bool, check_int, float_array, to_numpy
from ..errors import BackwardError, ShapeError, StateDictError
from .grad_mode import no_grad
from .heads import Embedding, Linear
from .kinds import make_layer

READOUTS = ("last", "every")
OBJECTIVES = ("regression", "classification")


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


class SequenceModel:
    """SequenceModel(kind, input_size, hidden_size, out_features, *, num_layers=1,
    bidirectional=False, dropout=0.0, proj_size=0, vocab=None, input_proj=None,
    readout="last", objective="regression", tokens=None, dtype=np.float32, seed=None,
    cell_options=None)

    kind: a cell family ("rnn", "rnn_relu", "gru", "lstm", ...). vocab: the input is
    integer tokens (T, N) read through Embedding(vocab, input_size); else floats
    (T, N, input_size), through Linear(input_size, input_proj) first when input_proj is
    given. readout "every": y (T, N, out_features) from the top layer's output at every
    step; "last": y (N, out_features) from each sequence's own last step (with lengths;
    a bidirectional layer's backward half is its state at step 0, i.e. the top layer's
    h_n). objective: what ``predict`` returns — "regression" the outputs,
    "classification" the index of the largest. tokens: the strings of a token vocabulary
    (a character table), kept with the model for ``encode`` / ``generate``.
    cell_options: the layer's variant keywords torch lacks (``peepholes``,
    ``cell_clip``, ``activations``, ... as for LSTM / GRU / RNN). Time-major throughout
    (T first)."""

    def __init__(self, kind, input_size, hidden_size, out_features, *, num_layers=1,
                 bidirectional=False, dropout=0.0, proj_size=0, vocab=None, input_proj=None,
                 readout="last", objective="regression", tokens=None, dtype=np.float32,
                 seed=None, cell_options=None):
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.readout = _choice("readout", readout, READOUTS)
        self.objective = _choice("objective", objective, OBJECTIVES)
        self.kind = kind
        input_size = check_int("input_size", input_size)
        out_features = check_int("out_features", out_features)
        self.embedding = self.input = None
        rnn_in = input_size
        if vocab is not None:
            if input_proj is not None:
                raise ValueError("give vocab (integer tokens) or input_proj (floats), not both")
            self.embedding = Embedding(check_int("vocab", vocab), input_size, dtype=dtype,
                                       seed=rng)
        elif input_proj is not None:
            self.input = Linear(input_size, check_int("input_proj", input_proj), dtype=dtype,
                                seed=rng)
            rnn_in = input_proj
        extra = {"proj_size": proj_size} if proj_size else {}
        if cell_options is not None and not isinstance(cell_options, dict):
            raise TypeError(f"cell_options must be a dict of layer keywords, got "
                            f"{type(cell_options).__name__}")
        self.rnn = make_layer(kind, rnn_in, hidden_size, num_layers=num_layers,
                              bidirectional=check_bool("bidirectional", bidirectional),
                              dropout=dropout, dtype=dtype, seed=rng, **extra,
                              **(cell_options or {}))
        width = self.rnn.num_directions * (self.rnn.proj_size or self.rnn.hidden_size)
        self.head = Linear(width, out_features, dtype=dtype, seed=rng)
        if tokens is not None:
            tokens = [str(t) for t in tokens]
            if vocab is None or len(tokens) != vocab:
                raise ValueError(f"tokens must name each of the vocab's {vocab} entries, got "
                                 f"{len(tokens)}")
        self.tokens = tokens
        self._config = dict(kind=kind, input_size=input_size, hidden_size=hidden_size,
                            out_features=out_features, num_layers=num_layers,
                            bidirectional=bool(bidirectional), dropout=float(dropout),
                            proj_size=int(proj_size), vocab=vocab, input_proj=input_proj,
                            readout=readout, objective=objective, tokens=tokens,
                            dtype=np.dtype(dtype).name)
        if cell_options:
            self._config["cell_options"] = dict(cell_options)
        self._saved = None

    # -- the module protocol (optimizers, clipping, state_dict) ---------------------------
    @property
    def modules(self):
        """The parts in order: [embedding or input Linear,] recurrent layer, head."""
        return [m for m in (self.embedding, self.input, self.rnn, self.head) if m is not None]

    def _parts(self):
        names = {id(self.embedding): "embedding", id(self.input): "input",
                 id(self.rnn): "rnn", id(self.head): "head"}
        return [(names[id(m)], m) for m in self.modules]

    def named_parameters(self):
        return iter([(f"{p}.{n}", a) for p, m in self._parts() for n, a in m.named_parameters()])

    def parameters(self):
        return [a for _, a in self.named_parameters()]

    @property
    def grads(self):
        """The parts' gradients by prefixed name (a fresh dict; the arrays are live)."""
        return {f"{p}.{n}": g for p, m in self._parts() for n, g in m.grads.items()}

    def zero_grad(self, set_to_none=True):
        for m in self.modules:
            m.zero_grad(set_to_none)

    def _changed(self):
        """Parameters were written (an optimizer step): the parts' snapshots refresh."""
        for m in self.modules:
            m._changed()

    def state_dict(self):
        return {f"{p}.{n}": a for p, m in self._parts() for n, a in m.state_dict().items()}

    def load_state_dict(self, state_dict, strict=True):
        """Load every part, all or nothing: every problem of every part in one error."""
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"load_state_dict expects a mapping of names to arrays, got "
                            f"{type(state_dict).__name__}")
        parts = dict(self._parts())
        split = {p: {} for p in parts}
        unexpected = []
        for key in state_dict.keys():
            p, _, rest = str(key).partition(".")
            if p in split and rest:
                split[p][rest] = state_dict[key]
            else:
                unexpected.append(key)
        from .state_dict import check_tensors
        problems = [f"unexpected key(s): {unexpected}"] if unexpected and strict else []
        for p, m in parts.items():
            shapes = {n: a.shape for n, a in m.named_parameters()}
            problems += [f"{p}: {q}" for q in check_tensors(shapes, split[p], strict)[2]]
        if problems:
            raise StateDictError("Error(s) in loading state_dict for SequenceModel (nothing "
                                 "was changed):\n\t" + "\n\t".join(problems))
        for p, m in parts.items():
            m.load_state_dict(split[p], strict)

    def config(self):
        """The constructor arguments, JSON-serialisable: SequenceModel(**config())."""
        return dict(self._config)

    @property
    def dtype(self):
        return self.rnn.dtype

    @property
    def training(self):
        return self.rnn.training

    def train(self, mode=True):
        for m in self.modules:
            m.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, *args, **kwargs):
        for m in self.modules:
            m.to(*args, **kwargs)
        self._config["dtype"] = self.rnn.dtype.name
        return self

    def __repr__(self):
        inp = (f"Embedding({self.embedding.num_embeddings}, {self.embedding.embedding_dim}) -> "
               if self.embedding is not None else
               f"{self.input!r} -> " if self.input is not None else "")
        return (f"SequenceModel({inp}{self.rnn!r} -> {self.head!r}, readout={self.readout!r}, "
                f"objective={self.objective!r})")

    # -- forward / backward ---------------------------------------------------------------
    def __call__(self, x, lengths=None, state=None):
        return self.forward(x, lengths, state)

    def forward(self, x, lengths=None, state=None):
        """y, state = model(x, lengths=None, state=None): y (N, out) for readout "last",
        (T, N, out) for "every"; state as the recurrent layer returns it (h_n, or LSTM's
        (h_n, c_n))."""
        if self.embedding is not None:
            idx = to_numpy(x, "x")
            if idx.ndim != 2:
                raise ShapeError(f"x must be (T, N) token indices, got shape {idx.shape}")
            e = self.embedding(idx)
        else:
            e = float_array(x, self.dtype, "x")
            if e.ndim != 3:
                raise ShapeError(f"x must be (T, N, {self._config['input_size']}), got shape "
                                 f"{e.shape}")
            if self.input is not None:
                e = self.input(e)
        out, state = self.rnn(e, state, lengths=lengths)
        if self.readout == "every":
            y = self.head(out)
        else:
            h = state[0] if isinstance(state, tuple) else state
            D = self.rnn.num_directions
            y = self.head(np.concatenate(list(h[-D:]), axis=1))   # (N, D * H_out)
        self._saved = out.shape[0]
        return y, state

    def backward(self, d_y, *, retain_graph=False):
        """Backpropagate d_y (shaped like y) through the head, the layer and the input
        part; the gradients add up in each part's ``grads`` (``model.grads`` lists them by
        prefixed name). Returns the gradient of float input x, or None for tokens."""
        if self._saved is None:
            raise BackwardError("SequenceModel.backward: called before forward")
        d = self.head.backward(d_y, retain_graph=retain_graph)
        if self.readout == "every":
            dx = self.rnn.backward(d, retain_graph=retain_graph)[0]
        else:
            D = self.rnn.num_directions
            H_out = self.rnn.proj_size or self.rnn.hidden_size
            N = d.shape[0]
            d_h_n = np.zeros((self.rnn.num_layers * D, N, H_out), self.dtype)
            for k in range(D):
                d_h_n[-D + k] = d[:, k * H_out:(k + 1) * H_out]
            dx = self.rnn.backward(None, d_h_n, retain_graph=retain_graph)[0]
        if self.embedding is not None:
            self.embedding.backward(dx, retain_graph=retain_graph)
            return None
        if self.input is not None:
            dx = self.input.backward(dx, retain_graph=retain_graph)
        return dx

    # -- using it -------------------------------------------------------------------------
    def predict(self, x, lengths=None):
        """Inference (no record, no dropout): the outputs for "regression", the index of
        the largest output for "classification" (at each step, or per sequence)."""
        was = self.training
        self.eval()
        try:
            with no_grad():
                y, _ = self(x, lengths)
        finally:
            self.train(was)
        return y if self.objective == "regression" else y.argmax(axis=-1)

    def probabilities(self, x, lengths=None):
        """softmax of the outputs (classification), in float64."""
        with no_grad():
            was = self.training
            self.eval()
            try:
                y, _ = self(x, lengths)
            finally:
                self.train(was)
        z = y.astype(np.float64)
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)

    def encode(self, text):
        """Token indices of ``text`` (a model with ``tokens``), or a ValueError naming
        the unknown ones."""
        if self.tokens is None:
            raise ValueError("this model has no token table (tokens=None)")
        lookup = {t: i for i, t in enumerate(self.tokens)}
        unknown = sorted({c for c in text if c not in lookup})
        if unknown:
            raise ValueError(f"characters the model never saw: {unknown[:10]}")
        return np.array([lookup[c] for c in text], dtype=np.int64)

    def generate(self, prime="", length=200, temperature=1.0, seed=0):
        """Sample ``length`` tokens after ``prime`` from a next-token model (vocab,
        readout "every", classification), one step at a time with the layer's state:
        returns text when the model has ``tokens``, else the indices."""
        if self.embedding is None or self.readout != "every":
            raise ValueError("generate needs a next-token model: vocab, readout='every'")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        rng = np.random.default_rng(seed)
        if isinstance(prime, str):
            idx = list(self.encode(prime)) if prime else []
        else:
            idx = [int(i) for i in prime]
        idx = idx or [int(rng.integers(self.embedding.num_embeddings))]
        out = list(idx)
        was = self.training
        self.eval()
        try:
            with no_grad():
                logits, state = self(np.array(idx)[:, None])
                for _ in range(check_int("length", length, minimum=0)):
                    z = logits[-1, 0].astype(np.float64) / temperature
                    p = np.exp(z - z.max())
                    nxt = int(rng.choice(len(p), p=p / p.sum()))
                    out.append(nxt)
                    logits, state = self(np.array([[nxt]]), state=state)
        finally:
            self.train(was)
        if self.tokens is not None:
            return "".join(self.tokens[i] for i in out)
        return np.array(out)

    def torch_source(self):
        """The source of a small torch module whose state_dict has this model's names:
        ``torch.load`` of the converted weights into it gives the same outputs."""
        r = self.rnn
        cls = r.family.torch_class
        if cls is None:
            raise ValueError(f"torch has no {self.kind} layer" + (
                f" with {r.family.options_text()}" if r.family.options else ""))
        opts = [f"num_layers={r.num_layers}"] + (["bidirectional=True"] if r.bidirectional
                                                  else [])
        opts += [f"{k}={v!r}" for k, v in r.family.options.items()]
        opts += [f"proj_size={r.proj_size}"] if r.proj_size else []
        rnn_in = (self.embedding.embedding_dim if self.embedding is not None else
                  self.input.out_features if self.input is not None else r.input_size)
        lines = ["import torch", "", "", "class SequenceModel(torch.nn.Module):",
                 f'    """{self!r}, as rnnlab converted it."""', "",
                 "    def __init__(self):", "        super().__init__()"]
        if self.embedding is not None:
            lines.append(f"        self.embedding = torch.nn.Embedding("
                         f"{self.embedding.num_embeddings}, {self.embedding.embedding_dim})")
        if self.input is not None:
            lines.append(f"        self.input = torch.nn.Linear({self.input.in_features}, "
                         f"{self.input.out_features})")
        lines += [f"        self.rnn = torch.nn.{cls}({rnn_in}, {r.hidden_size}, "
                  f"{', '.join(opts)})",
                  f"        self.head = torch.nn.Linear({self.head.in_features}, "
                  f"{self.head.out_features})", "",
                  "    def forward(self, x, state=None):",
                  '        """x: (T, N) token indices or (T, N, features); time-major."""']
        if self.embedding is not None:
            lines.append("        x = self.embedding(x)")
        if self.input is not None:
            lines.append("        x = self.input(x)")
        lines.append("        out, state = self.rnn(x, state)")
        if self.readout == "every":
            lines.append("        return self.head(out), state")
        else:
            D = r.num_directions
            h = "state[0]" if r.family.has_cell_state else "state"
            lines.append(f"        h = torch.cat(list({h}[-{D}:]), dim=1)  # top layer, own "
                         "last step")
            lines.append("        return self.head(h), state")
        return "\n".join(lines) + "\n"
