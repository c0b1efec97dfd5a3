"""Cached incremental sampling returns exactly the images of the naive sampler."""

import numpy as np
import pytest
import tensorflow as tf

import likelihood_checks as checks
from tfgen import layers
from tfgen import models

SMALL = dict(hidden_dim=6, num_blocks=2, output_dim=12, input_kernel_size=3, kernel_size=3)


@pytest.mark.parametrize("shape,levels,classes,hparams", [
    ((5, 4, 1), 4, None, SMALL),
    ((4, 3, 3), 4, None, SMALL),
    ((4, 5, 1), 3, 3, SMALL),
    ((3, 4, 3), 5, 4, SMALL),
    ((6, 6, 1), 2, None, dict(hidden_dim=8, num_blocks=3, output_dim=8, kernel_size=5)),
    ((5, 5, 3), 3, 2, dict(hidden_dim=6, num_blocks=1, output_dim=9, input_kernel_size=7,
                           kernel_size=5)),
])
def test_fast_sampler_equals_naive(shape, levels, classes, hparams):
  model = checks.randomize(models.build("pixelcnn", shape, levels, num_classes=classes,
                                        **hparams))
  labels = None if classes is None else np.arange(6) % classes
  for seed in (0, 1):
    naive = model.sample(6, seed=seed, labels=labels, fast=False).numpy()
    fast = model.sample(6, seed=seed, labels=labels, fast=True).numpy()
    np.testing.assert_array_equal(fast, naive)
  # Row-by-row chunks (the progress bar) rebuild the caches from the image: same result.
  np.testing.assert_array_equal(
      model.sample(6, seed=0, labels=labels, progress=True).numpy(),
      model.sample(6, seed=0, labels=labels, fast=False).numpy())


def test_fast_is_the_default_and_matches_log_prob():
  model = checks.randomize(models.build("pixelcnn", (2, 2, 1), 2, **SMALL), seed=2)
  assert model.supports_fast_sampling
  tv, bound = checks.sample_frequencies(model, 4000, seed=4)
  assert tv < bound, (tv, bound)


def test_equality_check_catches_an_off_by_one_cache_window(monkeypatch):
  model = checks.randomize(models.build("pixelcnn", (4, 4, 1), 4, **SMALL))
  naive = model.sample(4, seed=0, fast=False).numpy()

  def horizontal_without_centre(self, row, j):  # Drops column j from the window.
    ph, pw = self.cache_padding
    kernel = self._masked_kernel()[ph, :pw]  # [pw, F_in, F_out]
    window = tf.slice(row, tf.stack([0, j, 0]), tf.stack([-1, pw, -1]))  # [B, pw, F_in]
    return tf.einsum("bwf,wfo->bo", window, kernel) + self.bias

  monkeypatch.setattr(layers.MaskedConv2D, "horizontal", horizontal_without_centre)
  model._fill_fns.clear()
  fast = model.sample(4, seed=0, fast=True).numpy()
  assert not np.array_equal(fast, naive)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__, "-q"]))
