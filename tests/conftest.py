"""Test-session setup: two logical CPU devices, quiet logs, fixed seeds, prompt cleanup.

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

import gc  # noqa: E402

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


@pytest.fixture(autouse=True)
def _collect_garbage():
  """Frees each test's reference cycles as it ends, not in a later test.

  A tf.data iterator left in a cycle (an exception's traceback holds the frames of the
  `fit` that raised it; a training's leftovers) is deleted by whichever later collection
  finds it, and its destructor can then wait for the pipeline's background threads:
  py-spy showed `IteratorResource::~IteratorResource` holding unrelated later tests for
  7-140 s. Collected as each test ends, the wait lands on the test that made it;
  `pytest -q -n 2` went from 571 tests in 852 s to 601 in 753 s (2026-12-06, the same
  2-core machine, nothing else running).

  What survives the collection is then frozen: the next test's collection scans only
  what that test made, not every earlier test's survivors (models held by module
  fixtures, traced functions in caches). The collections after each test took 216 of
  1,326 test-seconds before, 30 after (577 tests in 681 s, then 588 s, 2026-12-06, the
  same machine). The price: an object that outlives its test and later becomes part of
  an unreachable cycle is never collected (refcounting still frees everything else); the
  workers peaked near 3 GB each.
  """
  yield
  gc.collect()
  gc.freeze()


@pytest.hookimpl(tryfirst=True)  # Before xdist reads the groups from the marks.
def pytest_collection_modifyitems(config, items):
  """Tests of one file that share a module-scoped fixture run in one xdist worker.

  Under `-n 2 --dist loadgroup` each worker would otherwise build such a fixture (a
  trained run, an export in every format) for its share of the tests.
  """
  del config
  for item in items:
    info = getattr(item, "_fixtureinfo", None)  # None for items that are not functions.
    if info is not None and any(definition.scope == "module"
                                for definitions in info.name2fixturedefs.values()
                                for definition in definitions):
      item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}-module-fixtures"))
