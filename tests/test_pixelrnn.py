"""PixelRNN (Row LSTM, Diagonal BiLSTM): causality, receptive fields, normalization,
sampling, training, train_lib end to end (save/load, normalization, sampler frequencies and
replica parity: tests/test_contract.py and tests/test_distributed.py).

Each correctness check is also run on a deliberately broken variant (kept here only)
and shown to fail on it.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import likelihood_checks as checks
from tfgen import config as config_lib
from tfgen import layers
from tfgen import models
from tfgen import train_lib
from tfgen.models import pixelrnn

NAMES = ("row_lstm", "diagonal_bilstm")
TINY = dict(hidden_dim=6, num_layers=2, input_kernel_size=3, output_dim=12)


def _build(name, shape, levels, classes=None, seed=0, scale=1.0, **hparams):
  model = models.build(name, shape, levels, num_classes=classes, **dict(TINY, **hparams))
  return checks.randomize(model, seed=seed, scale=scale)


def _gradients(model, num_images=2, labels=None):
  """`[T, T]` input gradients summed over a few images (a ReLU can be off by chance)."""
  return sum(checks.input_gradients(model, checks.random_images(model, seed), labels)
             for seed in range(num_images))


def _unshifted(self, left, right):
  """The known bug: right-to-left states added without the shift down one row."""
  return left + right


# ---- causality ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 4, 1), (3, 3, 3)])
def test_causality_check_fails_on_unshifted_right_to_left(monkeypatch, shape):
  model = _build("diagonal_bilstm", shape, 4)
  monkeypatch.setattr(pixelrnn.DiagonalBiLSTMLayer, "combine", _unshifted)
  leaks = checks.causality_leaks(model, checks.random_images(model))
  # The right-to-left state at (i, j) has seen (i, j) and the rest of row i.
  assert any(s > t for t, s in leaks) and any(s == t for t, s in leaks)


def _swap_masks(model, shape):
  """Mask B on the mask-A input layer and mask A on every input-to-state convolution."""
  conv = model.input_conv
  conv.mask = layers.causal_mask(conv.kernel_size, shape[-1], conv.filters, "B", shape[-1])
  for lstm in model.lstms:
    for conv in lstm.input_to_state:
      conv.mask = layers.causal_mask(conv.kernel_size, conv.mask.shape[2], conv.filters, "A",
                                     shape[-1])


def _unmask_input_to_state(model, shape):
  """The 1 x k input-to-state convolution reading the whole row window, j + 1 included."""
  for lstm in model.lstms:
    for conv in lstm.input_to_state:
      conv.mask = np.ones_like(conv.mask)


def _colour_blind_input_to_state(model, shape):
  """Input-to-state masks built for one colour: group g reads every group of (i, j)."""
  for lstm in model.lstms:
    for conv in lstm.input_to_state:
      conv.mask = layers.causal_mask(conv.kernel_size, conv.mask.shape[2], conv.filters, "B",
                                     num_colors=1)


@pytest.mark.parametrize("breakage,shape", [
    (_swap_masks, (4, 4, 1)), (_swap_masks, (3, 3, 3)),
    (_unmask_input_to_state, (4, 4, 1)), (_colour_blind_input_to_state, (3, 3, 3))])
def test_causality_check_fails_on_wrong_row_lstm_masks(breakage, shape):
  model = _build("row_lstm", shape, 4)
  breakage(model, shape)
  assert checks.causality_leaks(model, checks.random_images(model))


# ---- receptive fields -----------------------------------------------------------------


def _earlier_pixels_missed(g):
  """Pairs (t, s), s < t, where subpixel t's parameters ignore input subpixel s."""
  return [(t, s) for t in range(g.shape[0]) for s in range(t) if g[t, s] == 0]


def diagonal_bilstm_blind_spot(shape, input_kernel_size):
  """The pairs (t, s) that [1]'s Diagonal BiLSTM misses, whatever its depth: the last
  subpixel of the row above, (i - 1, W - 1, C - 1), from the pixels (i, j) with
  j < W - 1 - s0.

  A feature at position p never depends on the last channel of pixel p itself, so that
  value is carried only by features at later positions: for the last pixel of row
  i - 1 those are on row i (reached from (i - 1, W - 1) by the mask-A input layer, at
  columns >= W - 1 - s0, s0 = k0//2). Position (i, j) reads row i only through the
  left-to-right LSTM, at columns <= j, and rows above only through the shifted
  right-to-left LSTM.
  """
  height, width, channels = shape
  s0 = input_kernel_size // 2
  last = lambda i: (i * width + width - 1) * channels + channels - 1
  return sorted(((i * width + j) * channels + c, last(i - 1))
                for i in range(1, height) for j in range(width - 1 - s0)
                for c in range(channels))


@pytest.mark.parametrize("shape,num_layers", [((4, 5, 1), 1), ((3, 4, 3), 1), ((3, 5, 1), 2)])
def test_diagonal_bilstm_sees_every_earlier_subpixel(shape, num_layers):
  model = _build("diagonal_bilstm", shape, 3, num_layers=num_layers)
  assert _earlier_pixels_missed(_gradients(model)) == []
  # The check fails on [1]'s architecture exactly, with precisely the derived blind spot
  # (which the right-to-left direction reading the pixels closes).
  paper = _build("diagonal_bilstm", shape, 3, num_layers=num_layers,
                 right_to_left_reads_pixels=False)
  missed = _earlier_pixels_missed(_gradients(paper))
  assert missed and missed == diagonal_bilstm_blind_spot(shape, TINY["input_kernel_size"])


def test_completeness_check_fails_on_blind_spots(monkeypatch):
  # The Row LSTM's triangle misses the far right of the row above, and a Diagonal
  # BiLSTM with only its left-to-right direction misses everything to the upper right.
  row = _build("row_lstm", (5, 5, 1), 3, num_layers=1)
  assert _earlier_pixels_missed(_gradients(row))
  monkeypatch.setattr(pixelrnn.DiagonalBiLSTMLayer, "combine",
                      lambda self, left, right: left)
  one_way = _build("diagonal_bilstm", (5, 5, 1), 3, num_layers=1)
  # Pixel (1, 1) no longer sees pixel (0, 3), beyond the input layer's 3x3 reach.
  assert (1 * 5 + 1, 0 * 5 + 3) in _earlier_pixels_missed(_gradients(one_way))


def row_lstm_field(i, j, height, width, num_layers, kernel_size, input_kernel_size):
  """The pixels a grayscale Row LSTM's parameters at (i, j) depend on, derived by hand.

  One layer's state at (i, j) reads its input at (i - d, j + e) with d >= 0 and
  -d*s - s <= e <= d*s (s = k//2: the state-to-state 1 x k steps widen by s per row,
  the input-to-state 1 x k mask-B convolution adds s columns on the left); L residual
  layers compose to -d*s - L*s <= e <= d*s. The mask-A input layer (s0 = k0//2) then
  adds rows d0 = 1..s0 above at columns -s0..s0, and columns -s0..-1 of the same row.
  """
  s, s0, L = kernel_size // 2, input_kernel_size // 2, num_layers
  field = set()
  for d in range(i + 1):
    left = j - d * s - L * s - s0
    right = j - 1 if d == 0 else j + max(
        [d * s - 1] + [(d - d0) * s + s0 for d0 in range(1, min(d, s0) + 1)])
    field.update((i - d, col) for col in range(max(left, 0), min(right, width - 1) + 1))
  return field


def _row_lstm_field_mismatches(model, g):
  height, width, _ = model.image_shape
  hp = model.hparams
  wrong = []
  for t in range(height * width):
    i, j = divmod(t, width)
    seen = {divmod(s, width) for s in np.nonzero(g[t])[0]}
    expected = row_lstm_field(i, j, height, width, hp["num_layers"], hp["kernel_size"],
                              hp["input_kernel_size"])
    if seen != expected:
      wrong.append(((i, j), sorted(seen ^ expected)))
  return wrong


@pytest.mark.parametrize("hparams", [
    dict(num_layers=2, kernel_size=3, input_kernel_size=5),
    dict(num_layers=1, kernel_size=5, input_kernel_size=3),
])
def test_row_lstm_receptive_field_is_the_triangle(hparams):
  model = _build("row_lstm", (6, 9, 1), 3, **hparams)
  field = row_lstm_field(5, 4, 6, 9, hparams["num_layers"], hparams["kernel_size"],
                         hparams["input_kernel_size"])
  assert len(field) < 5 * 9 + 4  # Not every earlier pixel: a triangle.
  assert _row_lstm_field_mismatches(model, _gradients(model)) == []


def test_triangle_check_fails_on_a_narrow_state_to_state_convolution(monkeypatch):
  # A state-to-state convolution that reads only the column above: a narrower field.
  def column_only(self, state):
    kernel = tf.cast(self.state_kernel, state.dtype)
    centre = kernel * np.eye(self.kernel_size, dtype=np.float32)[self.kernel_size // 2,
                                                                 :, None, None]
    return tf.nn.conv1d(state, centre, stride=1, padding="SAME")

  monkeypatch.setattr(pixelrnn.RowLSTMLayer, "state_gates", column_only)
  model = _build("row_lstm", (6, 9, 1), 3, num_layers=1, kernel_size=3, input_kernel_size=3)
  assert _row_lstm_field_mismatches(model, _gradients(model))


@pytest.mark.parametrize("name,shape,steps", [
    ("row_lstm", (5, 3, 1), 5), ("diagonal_bilstm", (5, 3, 1), 7),
    ("diagonal_bilstm", (4, 4, 3), 7)])
def test_sequential_steps(monkeypatch, name, shape, steps):
  lengths = []
  scan = pixelrnn._scan

  def counting_scan(step, elems, *args, **kwargs):
    lengths.append(elems.shape[0])
    return scan(step, elems, *args, **kwargs)

  monkeypatch.setattr(pixelrnn, "_scan", counting_scan)
  model = _build(name, shape, 2)
  lengths.clear()
  model(tf.zeros((2,) + shape, tf.int32))
  assert lengths == [steps] * TINY["num_layers"] and model.sequential_steps == steps


# ---- normalization and sampling -------------------------------------------------------


def test_normalization_check_fails_on_unshifted_right_to_left(monkeypatch):
  monkeypatch.setattr(pixelrnn.DiagonalBiLSTMLayer, "combine", _unshifted)
  deviations = [abs(checks.total_probability(_build("diagonal_bilstm", (2, 2, 1), 3,
                                                    seed=seed)) - 1.0) for seed in range(3)]
  assert max(deviations) > 1e-3, deviations  # A causal model: below 1e-5.


def test_sampler_check_fails_on_a_sampler_that_ignores_the_model(monkeypatch):
  model = _build("diagonal_bilstm", (2, 2, 1), 2, seed=2)
  uniform = lambda params, channel, u, pixel_levels=None: tf.cast(u * 2, tf.int32)
  monkeypatch.setattr(model.head, "quantile", uniform)
  p_value = checks.sampler_p_value(model, 4000, seed=3, fast=False)
  assert p_value < checks.ALPHA, p_value


def _sensitive_diagonal_bilstm(shape, levels, classes=None, **hparams):
  """Half-scale weights spread the samples over the levels, and a 4x state-to-state
  kernel makes the recurrences matter to the output: a wrong carry then shows."""
  model = _build("diagonal_bilstm", shape, levels, classes=classes, scale=0.5, **hparams)
  for lstm in model.lstms:
    lstm.state_kernel.assign(lstm.state_kernel * 4.0)
  return model


# The contract suite runs the tiny Row LSTM; here wider kernels, and the Diagonal BiLSTM
# with state kernels scaled up (_sensitive_diagonal_bilstm) so a wrong carry shows.
@pytest.mark.parametrize("name,shape,levels,classes,hparams", [
    ("row_lstm", (3, 4, 3), 5, None, dict(num_layers=1, kernel_size=5, input_kernel_size=5)),
    ("diagonal_bilstm", (5, 4, 1), 4, None, {}),
    ("diagonal_bilstm", (4, 3, 3), 4, 3, {}),
    ("diagonal_bilstm", (3, 5, 3), 3, None, dict(num_layers=3, input_kernel_size=5)),
    ("diagonal_bilstm", (4, 4, 1), 3, 2, dict(right_to_left_reads_pixels=False)),
])
def test_fast_sampler_equals_naive(name, shape, levels, classes, hparams):
  model = (_sensitive_diagonal_bilstm(shape, levels, classes, **hparams)
           if name == "diagonal_bilstm" else _build(name, shape, levels, classes, **hparams))
  checks.cached_sampler_images(model, 6)


def test_fast_sampler_check_catches_an_off_by_one_window(monkeypatch):
  model = _build("row_lstm", (4, 4, 1), 4)
  naive = model.sample(4, seed=0, fast=False).numpy()

  def horizontal_without_centre(self, row, j):  # Drops column j from the window.
    ph, pw = self.cache_padding
    kernel = self._masked_kernel()[ph, :pw]  # [pw, F_in, F_out]
    window = tf.slice(row, tf.stack([0, j, 0]), tf.stack([-1, pw, -1]))  # [B, pw, F_in]
    return tf.einsum("bwf,wfo->bo", window, kernel) + self.bias

  monkeypatch.setattr(layers.MaskedConv2D, "horizontal", horizontal_without_centre)
  model._function_cache.functions.clear()
  assert not np.array_equal(model.sample(4, seed=0, fast=True).numpy(), naive)


def _dropping(direction, tap):
  """A broken `recurrent_gates`: direction 0 (left to right) or 1 forgets one tap."""
  def recurrent_gates(lstm, d, above, beside):
    kernel = tf.cast(lstm.state_kernel[d], above.dtype)
    if d == direction:
      above, beside = (above * 0.0, beside) if tap == "above" else (above, beside * 0.0)
    return tf.matmul(tf.concat([above, beside], axis=-1), kernel)
  return recurrent_gates


@pytest.mark.parametrize("broken", [
    _dropping(1, "above"),   # the right-to-left recurrence forgets the row above
    _dropping(0, "beside"),  # the left-to-right one forgets the pixel to the left
])
def test_diagonal_fast_sampler_check_catches_a_broken_carry(monkeypatch, broken):
  model = _sensitive_diagonal_bilstm((5, 5, 1), 4)
  naive = model.sample(8, seed=0, fast=False).numpy()
  monkeypatch.setattr(pixelrnn.DiagonalBiLSTMLayer, "recurrent_gates", broken)
  model._function_cache.functions.clear()
  assert not np.array_equal(model.sample(8, seed=0, fast=True).numpy(), naive)


# ---- training, serialization, distribution --------------------------------------------


STEPS = 100


@pytest.mark.parametrize("name", NAMES)
def test_overfits_a_few_images(name):
  images = np.random.default_rng(0).integers(0, 2, (4, 5, 5, 1)).astype(np.uint8)
  model = models.build(name, (5, 5, 1), 2, hidden_dim=12, num_layers=2, input_kernel_size=3,
                       output_dim=24)
  model.compile(keras.optimizers.Adam(2e-2))
  before = model.evaluate(images, batch_size=4, verbose=0, return_dict=True)["bits_per_dim"]
  # One epoch of the same batch repeated: Keras's per-epoch overhead once.
  model.fit(np.tile(images, (STEPS, 1, 1, 1)), batch_size=4, epochs=1, shuffle=False, verbose=0)
  after = model.evaluate(images, batch_size=4, verbose=0, return_dict=True)["bits_per_dim"]
  # The Row LSTM's blind spots leave it above the Diagonal BiLSTM (0.12 against 0.08
  # bits/dim here), but both drop far below the 1 bit/dim of the fresh model.
  assert before > 0.8 and after < 0.2 * before, (before, after)


@pytest.mark.parametrize("name", NAMES)
def test_train_and_evaluate_on_digits(tmp_path, name):
  config = config_lib.TrainConfig.from_flat(model=name, hparams=dict(TINY, num_layers=1),
                                 dataset="digits", batch_size=32, train_steps=3,
                                 checkpoint_every=3, num_samples=2, verbose=0, seed=3,
                                 mixed_precision="none")  # See test_distributed.
  metrics = train_lib.train_and_evaluate(config, str(tmp_path))
  for artifact in ("config.json", "metrics.json", "samples.png", "model.keras", "checkpoints"):
    assert (tmp_path / artifact).exists(), artifact
  assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
  assert metrics["model"] == name and metrics["train_steps"] == 3
  assert 0 < metrics["test_nll_nats"] < 64 * np.log(17) * 1.5
  assert os.path.getsize(tmp_path / "samples.png") > 0


# ---- API ------------------------------------------------------------------------------


def test_build_errors_say_what_to_do():
  with pytest.raises(ValueError, match="Valid hyper-parameters .*num_layers"):
    models.build("diagonal_bilstm", (8, 8, 1), 2, kernel_size=3)
  with pytest.raises(ValueError, match="num_layers must be positive"):
    models.build("row_lstm", (8, 8, 1), 2, num_layers=0)
  with pytest.raises(ValueError, match="'kernel_size' of model 'row_lstm' must be a positive odd"):
    models.build("row_lstm", (8, 8, 1), 2, kernel_size=2)
  with pytest.raises(ValueError, match="must be a bool"):
    models.build("diagonal_bilstm", (8, 8, 1), 2, right_to_left_reads_pixels=1)
  with pytest.raises(ValueError, match="at least the 3 colour channels"):
    models.build("diagonal_bilstm", (8, 8, 3), 2, hidden_dim=2)
  assert set(NAMES) <= set(models.available())
  assert models.default_hparams("diagonal_bilstm")["num_layers"] == 7
  assert models.default_hparams("diagonal_bilstm")["hidden_dim"] == 16


def test_skew_and_unskew_are_inverse_and_put_diagonals_in_columns():
  x = tf.reshape(tf.range(2 * 3 * 4, dtype=tf.float32) + 1, (2, 3, 4, 1))
  skewed = pixelrnn.skew(x).numpy()[..., 0]  # [B, H, N]
  assert skewed.shape == (2, 3, 6)
  for i in range(3):
    for j in range(4):
      assert skewed[1, i, i + j] == x[1, i, j, 0]
  assert (skewed != 0).sum() == 2 * 3 * 4
  np.testing.assert_array_equal(pixelrnn.unskew(pixelrnn.skew(x), 4), x)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__, "-q"]))
