"""Keras 3 and rnnlab, both ways: every layer configuration Keras has, its refusals, the
original GRU, other activations (the variant layers) and dropout-trained layers."""
import numpy as np
import pytest

from rnnlab import GRU, LSTM
from test_io import CONFIGS, IDS, _run, _zero_states

rng = np.random.default_rng(0)

KERAS_CONFIGS = [(c, k) for c, k in CONFIGS if not k.get("proj_size")]


# each family and each configuration once by default (a Latin square), all under -m slow
_DEFAULT = {"LSTM--L1", "RNN-relu-L2-bf-nobias", "RNN-tanh-L2-bi", "GRU--L3-bi-bf"}


@pytest.mark.parametrize("cls, kw", [
    pytest.param(c, k, id=i, marks=[] if i in _DEFAULT else [pytest.mark.slow])
    for (c, k), i in zip(KERAS_CONFIGS, IDS[:16])])
def test_keras_both_ways(tmp_path, cls, kw):
    pytest.importorskip("keras")
    from rnnlab.io.keras import from_keras, to_keras
    m = cls(3, 4, **dict(kw, batch_first=True), seed=2)
    km = to_keras(m)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    h0, c0 = _zero_states(m, 2)
    ours = _run(m, x, h0, c0)[0]
    np.testing.assert_allclose(np.asarray(km(x)), ours, atol=2e-5)
    km.save(tmp_path / "m.keras")
    import keras
    back = from_keras(keras.saving.load_model(tmp_path / "m.keras"))
    np.testing.assert_allclose(_run(back, x, h0, c0)[0], ours, atol=1e-6)


def test_keras_refusals():
    keras = pytest.importorskip("keras")
    from rnnlab.io.keras import KerasConversionError, from_keras, to_keras
    with pytest.raises(ValueError, match="proj_size"):
        to_keras(LSTM(3, 4, proj_size=2))
    cases = [(keras.layers.LSTM(4, recurrent_activation="selu"), "recurrent_activation 'selu'"),
             (keras.layers.SimpleRNN(4, activation="gelu"), "activation 'gelu' has no ONNX"),
             (keras.layers.LSTM(4, go_backwards=True), "go_backwards"),
             (keras.layers.Dense(4), "Dense")]
    for layer, message in cases:
        model = keras.Sequential([keras.Input((None, 3)), layer])
        with pytest.raises(KerasConversionError, match=message):
            from_keras(model)
    for m, message in [(LSTM(3, 4, peepholes=True), "peepholes=True"),
                       (LSTM(3, 4, activations=["Sigmoid", "Tanh", "Relu"]), "one activation "
                        "for LSTM's g and h"),
                       (GRU(3, 4, cell_clip=1.0), "no clip")]:
        with pytest.raises(KerasConversionError, match=message):
            to_keras(m)


@pytest.mark.parametrize("make", [
    lambda k: k.layers.LSTM(4, recurrent_activation="hard_sigmoid", activation="softsign",
                            return_sequences=True),
    lambda k: k.layers.Bidirectional(k.layers.GRU(4, activation="elu", reset_after=False,
                                                  return_sequences=True)),
    lambda k: k.layers.SimpleRNN(4, activation="sigmoid", return_sequences=True)])
def test_keras_activations_both_ways(make):
    """Keras's other activations import as rnnlab's activations= variants (equal to Keras)
    and export back (equal to rnnlab)."""
    keras = pytest.importorskip("keras")
    from rnnlab.io.keras import from_keras, to_keras
    model = keras.Sequential([keras.Input((None, 3)), make(keras)])
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    ours = from_keras(model)
    assert ours.family.variant is not None
    np.testing.assert_allclose(np.asarray(ours(x)[0]), np.asarray(model(x)), atol=1e-5)
    np.testing.assert_allclose(np.asarray(to_keras(ours)(x)), np.asarray(ours(x)[0]),
                               atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_keras_gru_reset_before_both_ways(bidirectional):
    """Keras's GRU(reset_after=False) is rnnlab's GRU(reset_after=False): imported, equal
    to Keras; exported, equal to rnnlab."""
    keras = pytest.importorskip("keras")
    from rnnlab.io.keras import from_keras, to_keras
    layer = keras.layers.GRU(4, reset_after=False, return_sequences=True)
    if bidirectional:
        layer = keras.layers.Bidirectional(layer)
    model = keras.Sequential([keras.Input((None, 3)), layer])
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    ours = from_keras(model)
    assert ours.reset_after is False and ours.bidirectional == bidirectional
    np.testing.assert_allclose(np.asarray(ours(x)[0]), np.asarray(model(x)), atol=1e-5)
    back = GRU(3, 4, batch_first=True, reset_after=False, bidirectional=bidirectional, seed=3)
    np.testing.assert_allclose(np.asarray(to_keras(back)(x)), np.asarray(back(x)[0]),
                               atol=1e-5)


@pytest.mark.parametrize("kind", ["GRU", "LSTM", "SimpleRNN"])
def test_keras_dropout_trained_layers_import_for_inference(kind):
    """Keras's dropout acts only in training: the imported layer equals the Keras layer
    at inference, and a warning says the dropout itself is not carried."""
    keras = pytest.importorskip("keras")
    from rnnlab.io.keras import KerasDropoutWarning, from_keras
    model = keras.Sequential([keras.Input((None, 3)), getattr(keras.layers, kind)(
        4, dropout=0.3, recurrent_dropout=0.2, return_sequences=True)])
    with pytest.warns(KerasDropoutWarning, match="dropout=0.3, recurrent_dropout=0.2"):
        layer = from_keras(model)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(layer(x)[0]), np.asarray(model(x, training=False)),
                               atol=1e-5)
