"""Benchmark data helpers shared by the bench/ scripts."""

import datetime
import json
import os
import platform
import sys
import tempfile

import numpy as np


def subset_npz(path, num_test, seed=0):
  """A temporary copy of a split npz: its train split and `num_test` random test images.

  No validation split, so a run under a short budget spends it on training, and a
  random test subset, because stored test splits may be sorted by class.

  Returns:
    The path of the new npz file.
  """
  with np.load(path) as f:
    train, test = f["train"], f["test"]
  keep = np.sort(np.random.default_rng(seed).choice(len(test), num_test, replace=False))
  out = os.path.join(tempfile.mkdtemp(prefix="tfgen_bench_data_"), "subset.npz")
  np.savez(out, train=train, test=test[keep])
  return out


def machine():
  """The CPU (model, the AVX-512/bf16 flags that decide speed), cores, GPUs, the
  TensorFlow and Keras versions and the date: what a results file must say."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfgen import precision  # pylint: disable=g-import-not-at-top
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  cpu_flags = precision.cpu_flags()
  extras = [f for f in ("avx512f",) + precision.BF16_CPU_FLAGS if f in cpu_flags]
  return {"cpu": cpu, "cpu_flags": extras, "cores": os.cpu_count(),
          "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
          "tensorflow": tf.__version__, "keras": keras.__version__,
          "date": datetime.date.today().isoformat()}


def define_out_flag():
  """`--out`: the results file (JSON lines) that `append_result` adds each result to."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  return flags.DEFINE_string("out", None, "Also append each JSON result, with the machine, "
                             "date and command, as a line of this file.")


def report(result, out, indent=None):
  """Prints `result` as JSON and, when `out` (the `--out` flag) names a file, appends it
  there with `append_result`."""
  print(json.dumps(result, indent=indent), flush=True)
  if out:
    append_result(out, result)


def append_result(path, result):
  """Appends `result` with the machine and the command line as one JSON line to `path`."""
  record = dict(result, machine=machine(),
                command=" ".join(["python3"] + [os.path.relpath(sys.argv[0])] + sys.argv[1:]))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")
