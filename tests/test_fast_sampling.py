"""Cached incremental sampling returns exactly the images of the naive sampler.

PixelCNN and Gated PixelCNN, and the incremental parts of the layers they use.
"""

import numpy as np
import pytest
import tensorflow as tf

import likelihood_checks as checks
from tfgen import layers
from tfgen import models

SMALL = dict(hidden_dim=6, num_blocks=2, output_dim=12, input_kernel_size=3, kernel_size=3)


# The contract suite (tests/test_contract.py) runs the small configurations; these are
# the wider kernels and the class-conditional ones of this family.
@pytest.mark.parametrize("shape,levels,classes,hparams", [
    ((4, 5, 1), 3, 3, SMALL),
    ((3, 4, 3), 5, 4, SMALL),
    ((6, 6, 1), 2, None, dict(hidden_dim=8, num_blocks=3, output_dim=8, kernel_size=5)),
    ((5, 5, 3), 3, 2, dict(hidden_dim=6, num_blocks=1, output_dim=9, input_kernel_size=7,
                           kernel_size=5)),
])
def test_fast_sampler_equals_naive(shape, levels, classes, hparams):
  model = checks.randomize(models.build("pixelcnn", shape, levels, num_classes=classes,
                                        **hparams))
  checks.cached_sampler_images(model, 6, seeds=(0, 1))


def test_equality_check_catches_an_off_by_one_cache_window(monkeypatch):
  model = checks.randomize(models.build("pixelcnn", (4, 4, 1), 4, **SMALL))
  naive = model.sample(4, seed=0, fast=False).numpy()

  def horizontal_without_centre(self, row, j):  # Drops column j from the window.
    ph, pw = self.cache_padding
    kernel = self._masked_kernel()[ph, :pw]  # [pw, F_in, F_out]
    window = tf.slice(row, tf.stack([0, j, 0]), tf.stack([-1, pw, -1]))  # [B, pw, F_in]
    return tf.einsum("bwf,wfo->bo", window, kernel) + self.bias

  monkeypatch.setattr(layers.MaskedConv2D, "horizontal", horizontal_without_centre)
  model._function_cache.functions.clear()
  fast = model.sample(4, seed=0, fast=True).numpy()
  assert not np.array_equal(fast, naive)


# ---- Gated PixelCNN -------------------------------------------------------------------

GATED = dict(hidden_dim=6, num_layers=2, kernel_size=3, skip_dim=6, output_dim=6)


@pytest.mark.parametrize("direction,size,mask", [
    ("down", (2, 3), None), ("down", (3, 5), None), ("down_right", (1, 2), "A"),
    ("down_right", (2, 2), "B"), ("down_right", (1, 1), "B")])
def test_causal_conv_incremental_parts_equal_the_full_convolution(direction, size, mask):
  layer = layers.CausalConv2D(6, size, direction=direction, mask_type=mask, num_colors=3)
  x = tf.random.stateless_normal([2, 5, 6, 3], seed=[0, 1])  # [B, H, W, F_in]
  layer(x)  # Builds the kernel and its mask.
  layer.set_weights([np.random.default_rng(0).normal(size=w.shape) for w in layer.weights])
  full = layer(x).numpy()
  top, left, right = layer.cache_padding
  padded = tf.pad(x, [[0, 0], [top, 0], [left, right], [0, 0]])  # [B, top+H, W', F_in]
  for i in range(5):
    rows = padded[:, i:i + top + 1]  # the layer's input on rows i-top .. i
    np.testing.assert_allclose(layer.row(rows).numpy(), full[:, i], rtol=1e-5, atol=1e-5)
    vertical = layer.vertical(rows[:, :-1])
    for j in range(6):
      out = layer.horizontal(rows[:, -1], tf.constant(j))  # [B, F_out]
      out = out if vertical is None else out + vertical[:, j]
      np.testing.assert_allclose(out.numpy(), full[:, i, j], rtol=1e-5, atol=1e-5)
  if size == (1, 1):
    np.testing.assert_allclose(layer.pointwise(x).numpy(), full, rtol=1e-5, atol=1e-5)
  else:
    with pytest.raises(ValueError, match="needs a 1x1 layer"):
      layer.pointwise(x)


@pytest.mark.parametrize("shape,levels,classes,hparams", [  # Beyond the contract suite's.
    ((4, 5, 1), 3, 3, GATED),
    ((3, 4, 3), 5, 4, GATED),
    ((6, 6, 1), 2, None, dict(GATED, num_layers=3, kernel_size=5)),
    ((5, 5, 3), 3, 2, dict(GATED, hidden_dim=9, kernel_size=7)),
])
def test_gated_fast_sampler_equals_naive(shape, levels, classes, hparams):
  model = checks.randomize(models.build("gated_pixelcnn", shape, levels, num_classes=classes,
                                        **hparams))
  checks.cached_sampler_images(model, 6, seeds=(0, 1))


def _horizontal_without_current_column(self, row, j):  # Off by one: drops column j.
  kernel = self._incremental_kernel()[-1, :-1]  # [kw-1, F_in, F_out]
  window = tf.slice(row, tf.stack([0, j, 0]), tf.stack([-1, kernel.shape[0], -1]))
  return tf.einsum("bwf,wfo->bo", window, kernel) + self.bias


def _row_without_rows_above(self, rows):  # A vertical cache that never fills.
  kernel = self._incremental_kernel()
  rows = tf.concat([tf.zeros_like(rows[:, :-1]), rows[:, -1:]], axis=1)
  return tf.nn.conv2d(rows, kernel, strides=1, padding="VALID")[:, 0] + self.bias


@pytest.mark.parametrize("broken,shape,classes", [
    (("horizontal", _horizontal_without_current_column), (4, 4, 1), None),
    (("row", _row_without_rows_above), (3, 3, 3), 2)])
def test_gated_equality_check_catches_a_broken_cache(monkeypatch, broken, shape, classes):
  model = checks.randomize(models.build("gated_pixelcnn", shape, 4, num_classes=classes,
                                        **GATED))
  labels = None if classes is None else [0, 1, 0, 1]
  naive = model.sample(4, seed=0, labels=labels, fast=False).numpy()
  np.testing.assert_array_equal(model.sample(4, seed=0, labels=labels).numpy(), naive)
  monkeypatch.setattr(layers.CausalConv2D, *broken)
  model._function_cache.functions.clear()
  fast = model.sample(4, seed=0, labels=labels, fast=True).numpy()
  assert not np.array_equal(fast, naive)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__, "-q"]))
