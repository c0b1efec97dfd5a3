"""Receptive fields of the shared causal layers, read off input gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgen import layers


def _receptive_field(layer_fn, size=7, features=3, out=(3, 3)):
  """The input positions `[H, W]` with a non-zero gradient at output position `out`."""
  x = tf.random.normal([1, size, size, features], seed=1)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = layer_fn(x)
    value = tf.reduce_sum(y[0, out[0], out[1]])
  grad = tape.gradient(value, x)
  return np.abs(grad.numpy()[0]).sum(-1) > 0


def _randomized(layer, features=3):
  layer.build((None, None, None, features))
  layer.set_weights([np.random.default_rng(0).normal(size=w.shape) for w in layer.get_weights()])
  return layer


def _expected(rows, cols, size=7):
  mask = np.zeros((size, size), bool)
  for i in rows:
    mask[i, list(cols)] = True
  return mask


def test_down_reads_rows_up_to_own_both_sides():
  layer = _randomized(layers.CausalConv2D(4, (2, 3), direction="down"))
  got = _receptive_field(layer)
  np.testing.assert_array_equal(got, _expected([2, 3], [2, 3, 4]))
  shifted = _receptive_field(lambda x: layers.shift_down(layer(x)))
  np.testing.assert_array_equal(shifted, _expected([1, 2], [2, 3, 4]))


def test_down_right_reads_rows_and_columns_up_to_own():
  layer = _randomized(layers.CausalConv2D(4, (2, 2), direction="down_right"))
  np.testing.assert_array_equal(_receptive_field(layer), _expected([2, 3], [2, 3]))
  shifted = _receptive_field(lambda x: layers.shift_right(layer(x)))
  np.testing.assert_array_equal(shifted, _expected([2, 3], [1, 2]))


def test_stride_keeps_same_size_and_causality():
  layer = _randomized(layers.CausalConv2D(4, (2, 3), direction="down", strides=2))
  assert layer(tf.zeros([1, 7, 7, 3])).shape == (1, 4, 4, 4)
  assert layer.compute_output_shape((1, 7, 7, 3)) == (1, 4, 4, 4)
  got = _receptive_field(layer, out=(1, 1))  # Reads input rows 1..2, columns 1..3.
  np.testing.assert_array_equal(got, _expected([1, 2], [1, 2, 3]))


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_corner_mask_orders_colours(mask_type):
  layer = _randomized(layers.CausalConv2D(6, (1, 2), direction="down_right",
                                          mask_type=mask_type, num_colors=3))
  x = tf.random.normal([1, 4, 4, 3], seed=2)
  for g_out in range(3):
    with tf.GradientTape() as tape:
      tape.watch(x)
      value = tf.reduce_sum(layer(x)[0, 2, 2, 2 * g_out:2 * g_out + 2])
    grad = np.abs(tape.gradient(value, x).numpy()[0, 2, 2])  # [3] over input colours
    seen = grad > 0
    expected = np.arange(3) < g_out if mask_type == "A" else np.arange(3) <= g_out
    np.testing.assert_array_equal(seen, expected)


def test_bad_arguments_are_explained():
  with pytest.raises(ValueError, match="direction"):
    layers.CausalConv2D(4, 3, direction="up")
  with pytest.raises(ValueError, match="odd kernel width"):
    layers.CausalConv2D(4, (2, 2), direction="down")
  with pytest.raises(ValueError, match="down_right"):
    layers.CausalConv2D(4, (2, 3), direction="down", mask_type="A")


def test_config_round_trip():
  layer = layers.CausalConv2D(4, (2, 2), direction="down_right", mask_type="B", num_colors=3)
  clone = layers.CausalConv2D.from_config(layer.get_config())
  assert (clone.direction, clone.mask_type, clone.num_colors) == ("down_right", "B", 3)
  model = keras.Sequential([keras.Input((5, 5, 3)), layer])
  assert model.output_shape == (None, 5, 5, 4)


if __name__ == "__main__":
  raise SystemExit(pytest.main([__file__, "-q"]))


# ---- the cut kernels equal the full masked convolution --------------------------------


def _full_masked_conv(layer, x):
  """The definition: a 'same' convolution with the whole kernel times the mask."""
  kernel = layer.kernel * layer.mask
  return tf.nn.conv2d(x, kernel, 1, "SAME", dilations=list(layer.dilation_rate)) + layer.bias


def _tap_below_centre(layer):
  """A deliberately broken mask: one tap below the centre row, bottom-right corner."""
  mask = layer.mask.copy()
  mask[-1, -1] = 1.0
  return mask


@pytest.mark.parametrize("kernel,mask_type,colors,dilation,broken", [
    ((7, 7), "B", 1, 1, False), ((7, 7), "A", 3, 1, False), ((3, 5), "B", 3, 1, False),
    ((1, 1), "B", 3, 1, False), ((1, 1), "A", 1, 1, False), ((1, 5), "A", 1, 1, False),
    ((5, 5), "B", 1, 2, False), ((5, 5), "B", 1, 1, True), ((3, 3), "A", 3, 1, True)])
def test_masked_conv_computes_only_used_taps_exactly(kernel, mask_type, colors, dilation,
                                                    broken):
  # The layer cuts its kernel to the box of non-zero mask taps; a mask edited after
  # build (as the causality tests' broken variants do) must be honoured in full.
  layer = _randomized(layers.MaskedConv2D(6, kernel, mask_type=mask_type, num_colors=colors,
                                          dilation_rate=dilation), features=6)
  if broken:
    layer.mask = _tap_below_centre(layer)
  x = tf.random.normal([2, 9, 8, 6], seed=3)
  np.testing.assert_allclose(layer(x), _full_masked_conv(layer, x), rtol=1e-5, atol=1e-5)


def test_masked_conv_box_ignoring_a_tap_would_be_caught():
  # The comparison above fails for a layer that keeps only rows down to the centre
  # while its mask has a tap below: the proof that the test can fail.
  layer = _randomized(layers.MaskedConv2D(6, 5, mask_type="B"), features=6)
  layer.mask = _tap_below_centre(layer)
  x = tf.random.normal([2, 9, 8, 6], seed=3)
  kept_rows = tf.constant(layers.causal_mask((5, 5), 6, 6, "B"))  # rows <= centre only
  wrong = tf.nn.conv2d(x, layer.kernel * kept_rows, 1, "SAME") + layer.bias
  assert np.abs(wrong - _full_masked_conv(layer, x)).max() > 1e-3


@pytest.mark.parametrize("kernel,direction", [((2, 3), "down"), ((2, 2), "down_right"),
                                              ((1, 1), "down_right"), ((4, 7), "down")])
def test_causal_conv_equals_padded_valid_conv(kernel, direction):
  layer = _randomized(layers.CausalConv2D(5, kernel, direction), features=4)
  x = tf.random.normal([2, 6, 7, 4], seed=4)
  padded = tf.pad(x, [[0, 0]] + layer.causal_padding + [[0, 0]])
  expected = tf.nn.conv2d(padded, layer.kernel, 1, "VALID") + layer.bias
  np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_shifts_move_maps_and_zero_fill():
  x = tf.random.normal([2, 4, 5, 3], seed=5)
  np.testing.assert_array_equal(layers.shift_down(x, 2)[:, 2:], x[:, :2])
  np.testing.assert_array_equal(layers.shift_down(x, 2)[:, :2], 0)
  np.testing.assert_array_equal(layers.shift_right(x)[:, :, 1:], x[:, :, :4])
  np.testing.assert_array_equal(layers.shift_right(x)[:, :, :1], 0)
