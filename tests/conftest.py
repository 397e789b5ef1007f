import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import random  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfcompress.keras_compat import keras, tf  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same seeds and a fresh Keras session."""
    keras.backend.clear_session()
    random.seed(0)
    np.random.seed(0)
    tf.random.set_seed(0)
    keras.utils.set_random_seed(0)
    yield
