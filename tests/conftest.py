import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import random  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfcompress._keras import keras, tf  # noqa: E402

# Two logical CPUs, so MirroredStrategy runs with two replicas on any machine. This must happen
# before TensorFlow initialises its devices, i.e. before any test runs an op.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
VIRTUAL_CPUS = [d.name for d in tf.config.list_logical_devices("CPU")]


@pytest.fixture(autouse=True)
def _no_tf_config_leak(request):
    """A test that sets TF_CONFIG must restore it (monkeypatch): a leaked worker-1 TF_CONFIG made
    every later test of the same xdist worker a non-chief (compress wrote to a temp folder)."""
    before = os.environ.get("TF_CONFIG")
    yield
    after = os.environ.get("TF_CONFIG")
    if after != before:
        if before is None:
            os.environ.pop("TF_CONFIG", None)
        else:
            os.environ["TF_CONFIG"] = before
        pytest.fail(f"{request.node.nodeid} left TF_CONFIG={after!r} in the environment")


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same seeds and a fresh Keras session."""
    keras.backend.clear_session()
    random.seed(0)
    np.random.seed(0)
    tf.random.set_seed(0)
    keras.utils.set_random_seed(0)
    # Strategies built directly in a test get collective keys of their own too.
    tf.distribute.MirroredStrategy._collective_key_base += 100_000
    yield


def _mirrored_strategy():
    """A MirroredStrategy over two logical CPUs with collective keys of its own.

    TensorFlow starts the collective keys of every MirroredStrategy at the same values
    (``MirroredStrategy._collective_key_base`` stays 0), so a second strategy in one process
    reuses the first one's all-reduce keys and fails with "Shape mismatch in the collective
    instance" once tensor shapes differ (e.g. sparse embedding gradients).
    """
    tf.distribute.MirroredStrategy._collective_key_base += 100_000
    return tf.distribute.MirroredStrategy(VIRTUAL_CPUS[:2])


@pytest.fixture
def mirrored():
    """A MirroredStrategy over two logical CPUs (two replicas)."""
    assert len(VIRTUAL_CPUS) >= 2, VIRTUAL_CPUS
    return _mirrored_strategy()


@pytest.fixture(params=["default", "mirrored"])
def strategy(request):
    """Runs a test twice: with the default strategy and with MirroredStrategy over 2 CPUs."""
    if request.param == "default":
        return tf.distribute.get_strategy()
    return _mirrored_strategy()
