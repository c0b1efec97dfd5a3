"""Benchmark data helpers shared by the bench/ scripts."""

import os
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
