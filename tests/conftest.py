"""Test-session setup: two logical CPU devices, quiet logs, fixed seeds.

The CPU is split into two logical devices before TensorFlow initializes any, so that
MirroredStrategy tests can run two replicas on a machine without GPUs.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if os.environ.get("PYTEST_XDIST_WORKER"):
  # One compute thread per test process (and per training it starts, which inherits
  # the environment): with -n 2 on two cores, a second thread per process only spins
  # against the other process's pool.
  os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")


@pytest.fixture(autouse=True)
def _seed():
  keras.utils.set_random_seed(1234)
  yield
