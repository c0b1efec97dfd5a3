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


def _no_autotune_thread_per_device():
  """Builds tf.distribute's per-device input pipelines without tf.data autotuning.

  Keras's `fit` under a strategy reads through a multi-device iterator, which gives
  each device a pipeline of its own (a generator and a one-element prefetch, nothing
  to tune) with tf.data's default options, so each starts an autotuning thread. When
  such an iterator is collected (Keras and tf.distribute keep them in reference
  cycles), its destructor joins that thread, which finishes its timed wait first:
  `gc.collect()` after three small `train_and_evaluate` runs took 2.3-17.7 s in 4 of
  9 processes, and 0.35-0.40 s in all 9 with this change (2026-12-07, this machine
  kind); in the suite that wait fell on the test that collected, e.g. 13.9 s of
  teardown after a 10.6 s test. The pipelines' elements and order are unchanged.

  A private TensorFlow function: where a release renames it, nothing is patched and
  the suite is only slower.
  """
  from tensorflow.python.data.ops import multi_device_iterator_ops  # pylint: disable=g-import-not-at-top
  make = getattr(multi_device_iterator_ops, "_create_device_dataset", None)
  if make is None:
    return

  def without_autotune(*args, **kwargs):
    options = tf.data.Options()
    options.autotune.enabled = False
    return make(*args, **kwargs).with_options(options)

  multi_device_iterator_ops._create_device_dataset = without_autotune  # pylint: disable=protected-access


_no_autotune_thread_per_device()

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
