"""Test-wide setup: quiet TensorFlow, two logical CPU devices, deterministic seeds, no
silent skips."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# No silent skips (tests/skips.py): its hooks, run as this conftest's.
from skips import (  # noqa: E402, F401
    pytest_collectreport, pytest_configure, pytest_runtest_makereport, pytest_sessionfinish,
    pytest_terminal_summary,
)

# Two logical CPU devices so that MirroredStrategy gets two replicas on a CPU-only machine.
# This must happen before TensorFlow initialises its devices.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # devices already initialised by another plugin
    pass

@pytest.fixture(autouse=True)
def _seed_and_policy():
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")
    # Without a gc.collect() after every test: it cost as much as the tests themselves
    # (Python's own collection still runs).
    keras.backend.clear_session(free_memory=False)


@pytest.fixture(scope="session")
def vgg_weights(tmp_path_factory):
    """A VGG19 notop `.weights.h5` with random weights: tests never fetch ImageNet weights."""
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.weights.h5"
    keras.utils.set_random_seed(1)
    keras.applications.VGG19(include_top=False, weights=None).save_weights(str(path))
    return str(path)
