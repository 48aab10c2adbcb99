"""Keras 3 and rnnlab, both ways, exactly or not at all.

to_keras(module) -> a keras.Sequential taking (N, L, H_in) (Keras is batch-first) and
giving the rnnlab layer's output sequence (N, L, D * H_out), zero initial states:
SimpleRNN / GRU(reset_after=True) / LSTM per layer, wrapped in Bidirectional(merge_mode=
"concat") for two directions. Weights: kernel = W_ih^T, recurrent_kernel = W_hh^T, gate
blocks in Keras's order (the families' gate_order["keras"]); one bias b_ih + b_hh
(SimpleRNN, LSTM) or the pair [b_ih; b_hh] (GRU). LSTM proj_size has no Keras equivalent
and is refused.

from_keras(model_or_layer) -> an rnnlab layer (batch_first=True) from a model made of
those layers only (an InputLayer may lead); GRU(reset_after=False) becomes rnnlab's
GRU(reset_after=False); other activations (Keras's names with an ONNX counterpart:
cells/variants.py KERAS_ACTIVATIONS) become the variant layers with ``activations=``, and
to_keras writes such layers back. Other activations, go_backwards, and any other layer
are refused by name. A layer trained with dropout / recurrent_dropout is imported for inference (the
weights are the whole layer there) with a KerasDropoutWarning saying what is not carried.
"""
import os
import sys

import numpy as np

from ..cells import FAMILIES, from_framework, to_framework
from ..cells.variants import from_keras_config
from ..nn import RNNBase, make_layer


class KerasConversionError(ValueError):
    """The model holds something rnnlab cannot reproduce exactly."""


def keras_module():
    if "keras" not in sys.modules and "KERAS_BACKEND" not in os.environ:
        try:
            import tensorflow  # noqa: F401  (Keras's default backend, if installed)
        except ImportError:
            os.environ["KERAS_BACKEND"] = "jax"     # the light backend, if it is there
    try:
        import keras
    except ImportError:
        raise ImportError("this needs Keras 3 and a backend: pip install keras jax") from None
    return keras


def _blocks(w, fam):
    return to_framework(w, fam, "keras")


def _unblocks(w, fam):
    return from_framework(w, fam, "keras")


def _keras_weights(w, fam, bias):
    """rnnlab LayerWeights -> the list a Keras cell's set_weights takes."""
    out = [_blocks(w.w_ih, fam).T, _blocks(w.w_hh, fam).T]
    if bias:
        if fam.keras["bias"] == "pair":
            out.append(np.stack([_blocks(w.b_ih, fam), _blocks(w.b_hh, fam)]))
        else:
            out.append(_blocks(w.b_ih + w.b_hh, fam))
    return out


def _recurrent(keras, module, x, last_sequences=True, return_state=False):
    """Apply ``module``'s layers (Keras SimpleRNN / GRU / LSTM, Bidirectional for two
    directions) to the Keras tensor x (N, L, I); returns (output, states, [(keras layer,
    weights)]) with states the per-layer, per-direction h (and c)."""
    if module.family.keras is None:
        raise KerasConversionError(
            f"Keras has no layer for the {module.family.kind} family" + (
                f" with {module.family.options_text()} (Keras has no clip, peepholes or "
                "input_forget, one activation for LSTM's g and h, and the activations "
                "docs/families.md lists)" if module.family.variant is not None else ""))
    if module.proj_size:
        raise KerasConversionError("LSTM proj_size has no Keras equivalent (Keras's LSTM has "
                                   "no projection)")
    if module.direction == "reverse":
        raise KerasConversionError("direction='reverse' has no Keras equivalent (Keras's "
                                   "go_backwards returns the outputs in reversed time order)")
    fam = module.family
    todo, hs, cs = [], [], []
    for k, ws in enumerate(module.weights()):
        kw = dict(units=module.hidden_size, use_bias=module.bias, return_state=return_state,
                  return_sequences=last_sequences or k < module.num_layers - 1,
                  **fam.keras["options"])
        make = getattr(keras.layers, fam.keras["class"])
        layer = make(**kw) if len(ws) == 1 else keras.layers.Bidirectional(
            make(**kw), merge_mode="concat")
        res = layer(x)
        if return_state:
            x, states = res[0], list(res[1:])
            per = 2 if fam.has_cell_state else 1          # per direction: h (, c)
            for d in range(len(ws)):
                hs.append(states[d * per])
                if fam.has_cell_state:
                    cs.append(states[d * per + 1])
        else:
            x = res
        todo.append((layer, [a for w in ws for a in _keras_weights(w, fam, module.bias)]))
    return x, (hs, cs), todo


def _set(todo):
    for layer, w in todo:
        layer.set_weights([np.asarray(a, dtype=np.float32) for a in w])


def to_keras(module, return_state=False):
    """A Keras model computing ``module``'s output (see the module docstring): a layer
    (N, L, H_in) -> (N, L, D * H_out), with return_state=True also h_n (and LSTM's c_n)
    shaped as rnnlab's, (num_layers * D, N, H); or a whole SequenceModel (tokens (N, T)
    int or features (N, T, I) -> Embedding / Dense -> the layers -> Dense), batch-first as
    Keras is. States start at zero."""
    keras = keras_module()
    from ..nn import SequenceModel
    if isinstance(module, SequenceModel):
        return _model_to_keras(keras, module)
    if not isinstance(module, RNNBase):
        raise TypeError(f"to_keras takes an rnnlab RNN, GRU or LSTM layer or a "
                        f"SequenceModel, got {type(module).__name__}")
    inp = keras.Input((None, module.input_size), dtype="float32")
    out, (hs, cs), todo = _recurrent(keras, module, inp, return_state=return_state)
    outputs = [out]
    if return_state:
        outputs.append(keras.ops.stack(hs, axis=0))
        if cs:
            outputs.append(keras.ops.stack(cs, axis=0))
    model = keras.Model(inp, outputs if return_state else out,
                        name=f"rnnlab_{type(module).__name__}")
    _set(todo)
    return model


def _model_to_keras(keras, model):
    """A SequenceModel as a Keras functional model (batch-first)."""
    cfg = model.config()
    if model.embedding is not None:
        inp = keras.Input((None,), dtype="int32")
        emb = keras.layers.Embedding(model.embedding.num_embeddings,
                                     model.embedding.embedding_dim)
        x = emb(inp)
        todo = [(emb, [model.embedding.weight])]
    else:
        inp = keras.Input((None, cfg["input_size"]), dtype="float32")
        x, todo = inp, []
        if model.input is not None:
            dense = keras.layers.Dense(model.input.out_features)
            x = dense(x)
            todo.append((dense, [model.input.weight.T, model.input.bias]))
    x, _, rec = _recurrent(keras, model.rnn, x, last_sequences=model.readout == "every")
    head = keras.layers.Dense(model.head.out_features)
    out = head(x)
    km = keras.Model(inp, out, name="rnnlab_SequenceModel")
    _set(todo + rec + [(head, [model.head.weight.T, model.head.bias])])
    return km


class KerasDropoutWarning(UserWarning):
    """A Keras layer's dropout settings are not carried by the import (its weights are)."""


def _config_check(cfg, where, backward=False):
    """The family whose Keras record says what this layer config computes, or a
    KerasConversionError naming the setting no family has."""
    if cfg.get("go_backwards") and not backward:
        raise KerasConversionError(f"{where}: go_backwards=True (use Bidirectional)")
    dropped = {key: cfg[key] for key in ("dropout", "recurrent_dropout") if cfg.get(key, 0)}
    if dropped:
        import warnings
        warnings.warn(f"{where}: {', '.join(f'{k}={v}' for k, v in dropped.items())} act only "
                      "while Keras trains; the weights are the whole layer at inference and "
                      "are imported, the dropout is not (training the imported layer in "
                      "rnnlab applies no dropout of Keras's kind: recurrent_dropout has no "
                      "torch equivalent)", KerasDropoutWarning, stacklevel=4)
    try:                                  # a registered family, or the variant it says
        return from_keras_config(cfg["class"], cfg)
    except ValueError as exc:
        raise KerasConversionError(f"{where}: {exc}") from None


def from_keras(model_or_layer):
    """An rnnlab layer (batch_first=True) computing what the Keras layers compute."""
    keras = keras_module()
    if isinstance(model_or_layer, keras.Model):
        items = list(model_or_layer.layers)
    elif isinstance(model_or_layer, keras.layers.Layer):
        items = [model_or_layer]
    else:
        raise TypeError(f"from_keras takes a Keras model or layer, got "
                        f"{type(model_or_layer).__name__}")
    specs = []
    for i, layer in enumerate(items):
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind == "Bidirectional":
            if layer.merge_mode != "concat":
                raise KerasConversionError(f"layer {i}: Bidirectional merge_mode "
                                           f"{layer.merge_mode!r} (torch concatenates)")
            cells = [layer.forward_layer, layer.backward_layer]
        elif kind in {f.keras["class"] for f in FAMILIES.values() if f.keras}:
            cells = [layer]
        else:
            raise KerasConversionError(f"layer {i} is a {kind}: from_keras reads models made "
                                       "of SimpleRNN, GRU, LSTM and Bidirectional layers only")
        fams = []
        cfgs = []
        for j, c in enumerate(cells):
            cfg = dict(c.get_config(), **{"class": type(c).__name__})
            fams.append(_config_check(cfg, f"layer {i} ({type(c).__name__})", backward=j == 1))
            cfgs.append(cfg)
        if len(set(fams)) != 1:
            raise KerasConversionError(f"layer {i}: the two directions differ")
        if kind == "Bidirectional" and not cells[1].go_backwards:
            raise KerasConversionError(f"layer {i}: the backward layer must run backwards")
        specs.append((fams[0], cfgs[0], [c.get_weights() for c in cells]))
    if not specs:
        raise KerasConversionError("no recurrent layer found")
    fam, first = specs[0][0], specs[0][1]
    H, bias, D = first["units"], first["use_bias"], len(specs[0][2])
    for f, cfg, ws in specs:
        if (f, cfg["units"], cfg["use_bias"], len(ws)) != (fam, H, bias, D):
            raise KerasConversionError("the recurrent layers differ in kind, units, bias, "
                                       "activation or direction: torch's layers stack equal ones")
    for _, cfg, _ in specs[:-1]:
        if not cfg.get("return_sequences"):
            raise KerasConversionError("an inner layer has return_sequences=False")
    I = specs[0][2][0][0].shape[0]
    kw = dict(num_layers=len(specs), bias=bias, bidirectional=D == 2, batch_first=True)
    layer = make_layer(fam, I, H, **kw)
    sd = {}
    for k, (_, _, ws) in enumerate(specs):
        for d, w in enumerate(ws):
            s = f"_l{k}" + ("_reverse" if d else "")
            sd["weight_ih" + s] = _unblocks(w[0].T, fam)
            sd["weight_hh" + s] = _unblocks(w[1].T, fam)
            if bias:
                if fam.keras["bias"] == "pair":
                    sd["bias_ih" + s], sd["bias_hh" + s] = (_unblocks(w[2][0], fam),
                                                            _unblocks(w[2][1], fam))
                else:
                    sd["bias_ih" + s] = _unblocks(w[2], fam)
                    sd["bias_hh" + s] = np.zeros_like(w[2])
    layer.load_state_dict(sd)
    return layer
