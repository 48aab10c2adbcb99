import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")       # Keras tests run on the JAX backend


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
