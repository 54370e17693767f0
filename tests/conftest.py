import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

# Registers the hypothesis profiles ("ci" loaded) before the hypothesis
# plugin reads --hypothesis-profile.
import tests.property.profiles  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
