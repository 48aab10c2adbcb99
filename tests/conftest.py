import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("KERAS_BACKEND", "jax")       # Keras tests run on the JAX backend

# Property-based tests: the default ("ci") profile draws the same examples on every run, so
# that CI on a clean clone tests what was tested here; HYPOTHESIS_PROFILE=fuzz draws new,
# random examples, 2000 per test (run it before a change lands: pytest -m "" with it set).
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
