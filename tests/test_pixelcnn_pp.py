"""PixelCNN++: the logistic mixture head, causality, normalization, sampling, training.

The Polyak (EMA) averaging that PixelCNN++ brought to the training driver is tested
with the driver, in test_train_main.py.
"""

import itertools
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import likelihood_checks as checks
from tfgen import distributions
from tfgen import models
from tfgen.models import pixelcnn_pp

TINY = dict(num_filters=6, num_resnet=1, num_scales=3, num_mixtures=3)
# One scale: for shapes too small to down-sample, where three scales only cost time.
FLAT = dict(TINY, num_scales=1)


def _head_params(head, batch, seed=0, scale=2.0):
  return np.random.default_rng(seed).normal(0, scale, (batch, head.num_params)).astype(
      np.float32)


# ---- the discretized logistic mixture ----------------------------------------------


def _reference_log_prob(head, params, pixels):
  """log p(pixel) in float64 NumPy, straight from the paper's definition (no tricks)."""
  from scipy.special import expit, logsumexp  # pylint: disable=import-outside-toplevel
  m, c, k = head.num_mixtures, head.num_channels, head.num_levels
  params = params.astype(np.float64)
  logits = params[:m]
  means = params[m:m + c * m].reshape(c, m)
  log_scales = np.maximum(params[m + c * m:m + 2 * c * m].reshape(c, m), -7.0)
  coeffs = np.tanh(params[m + 2 * c * m:].reshape(-1, m))
  out = []
  for pixel in pixels:
    v = 2.0 * pixel / (k - 1) - 1.0
    total = logits - logsumexp(logits)
    pairs = [(i, j) for i in range(c) for j in range(i)]
    for ch in range(c):
      mu = means[ch] + sum(coeffs[n] * v[j] for n, (i, j) in enumerate(pairs) if i == ch)
      s = np.exp(log_scales[ch])
      upper = 1.0 if pixel[ch] == k - 1 else expit((v[ch] + 1.0 / (k - 1) - mu) / s)
      lower = 0.0 if pixel[ch] == 0 else expit((v[ch] - 1.0 / (k - 1) - mu) / s)
      total = total + np.log(upper - lower)
    out.append(logsumexp(total))
  return np.array(out)


@pytest.mark.parametrize("channels,levels", [(1, 2), (1, 5), (3, 3), (3, 4)])
def test_log_prob_matches_the_paper_formula(channels, levels):
  head = distributions.make_pixel_head("logistic_mixture", levels, channels, num_mixtures=3)
  params = _head_params(head, 1, seed=channels + levels, scale=1.0)[0]
  pixels = np.array(list(itertools.product(range(levels), repeat=channels)), np.int32)
  got = head.pixel_distribution(np.repeat(params[None], len(pixels), 0)).log_prob(pixels)
  np.testing.assert_allclose(got.numpy(), _reference_log_prob(head, params, pixels),
                             rtol=1e-4, atol=1e-5)
  assert np.exp(got.numpy().astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-5)


def test_reference_check_fails_without_the_channel_coefficients(monkeypatch):
  head = distributions.make_pixel_head("logistic_mixture", 4, 3, num_mixtures=3)
  params = _head_params(head, 1, seed=7, scale=1.0)[0]
  pixels = np.array(list(itertools.product(range(4), repeat=3)), np.int32)
  monkeypatch.setattr(distributions.DiscretizedLogisticMixture, "_locs",
                      lambda self, scaled: self._means)  # G and B ignore R and G.
  got = head.pixel_distribution(np.repeat(params[None], len(pixels), 0)).log_prob(pixels)
  assert np.abs(got.numpy() - _reference_log_prob(head, params, pixels)).max() > 1e-2


def _level_sums(dist, levels):
  """Per subpixel: sum over the K levels of p(x_c = l | x_<c), float64 `[..., C]`."""
  return np.exp(dist.conditional_log_probs(levels).numpy().astype(np.float64)).sum(-1)


@pytest.mark.parametrize("levels", [2, 3, 256])
@pytest.mark.parametrize("channels", [1, 3])
def test_levels_sum_to_one_for_every_subpixel(levels, channels):
  head = distributions.make_pixel_head("logistic_mixture", levels, channels, num_mixtures=4)
  params = _head_params(head, 500, seed=levels, scale=3.0)
  conditioning = np.random.default_rng(1).integers(0, levels, (500, channels))
  sums = _level_sums(head.pixel_distribution(params), conditioning)
  np.testing.assert_allclose(sums, 1.0, atol=2e-5)


def _extreme_mixture(levels, channels, mixtures=3):
  """Parameters at the extremes: scales e^-30 .. e^30, logits +-1e4, means far out."""
  grid = list(itertools.product([-30.0, -7.0, 0.0, 30.0], [-1e4, -1.2, 0.3, 1e4],
                                [-1e4, 0.0, 1e4]))
  n = len(grid)
  rng = np.random.default_rng(0)
  log_scales = np.array([g[0] for g in grid], np.float32)[:, None, None] * np.ones(
      (1, channels, mixtures), np.float32)
  logits = np.array([g[1] for g in grid], np.float32)[:, None] * np.array(
      [1.0, -1.0, 0.5][:mixtures], np.float32)
  means = np.array([g[2] for g in grid], np.float32)[:, None, None] + rng.normal(
      0, 0.5, (n, channels, mixtures)).astype(np.float32)
  coeffs = rng.uniform(-1, 1, (n, channels, channels, mixtures)).astype(np.float32)
  return (tf.constant(logits), tf.constant(means), tf.constant(log_scales),
          tf.constant(coeffs))


@pytest.mark.parametrize("levels", [2, 3, 256])
def test_extreme_parameters_stay_finite_and_normalized(levels):
  params = _extreme_mixture(levels, 3)
  pixels = np.random.default_rng(2).integers(0, levels, (params[0].shape[0], 3))
  edge = np.zeros_like(pixels)
  edge[::2] = levels - 1
  for x in (pixels, edge):
    with tf.GradientTape() as tape:
      tape.watch(params)
      dist = distributions.DiscretizedLogisticMixture(*params, num_levels=levels)
      log_p = dist.log_prob(x)
      conditional = dist.conditional_log_probs(x)
      target = tf.reduce_sum(log_p) + tf.reduce_sum(conditional)
    grads = tape.gradient(target, params)
    assert np.isfinite(log_p.numpy()).all() and np.isfinite(conditional.numpy()).all()
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    np.testing.assert_allclose(_level_sums(dist, x), 1.0, atol=2e-5)


def test_stability_check_fails_on_the_naive_difference_of_sigmoids(monkeypatch):
  def naive(x, loc, log_scale, half_width, is_lowest, is_highest):
    s = tf.exp(log_scale)
    upper = tf.where(is_highest, 1.0, tf.sigmoid((x + half_width - loc) / s))
    lower = tf.where(is_lowest, 0.0, tf.sigmoid((x - half_width - loc) / s))
    return tf.math.log(upper - lower)

  monkeypatch.setattr(distributions, "_discretized_logistic_log_prob", naive)
  dist = distributions.DiscretizedLogisticMixture(*_extreme_mixture(256, 3), num_levels=256)
  x = np.random.default_rng(2).integers(0, 256, (dist.batch_shape[0], 3))
  assert not np.isfinite(dist.log_prob(x).numpy()).all()


def test_normalization_check_fails_without_tail_integration(monkeypatch):
  original = distributions._discretized_logistic_log_prob
  monkeypatch.setattr(  # Edge levels get their bin only, not the tails.
      distributions, "_discretized_logistic_log_prob",
      lambda x, loc, s, w, lo, hi: original(x, loc, s, w, tf.zeros_like(lo), tf.zeros_like(hi)))
  head = distributions.make_pixel_head("logistic_mixture", 256, 1, num_mixtures=4)
  sums = _level_sums(head.pixel_distribution(_head_params(head, 50, scale=3.0)),
                     np.zeros((50, 1), np.int32))
  assert np.abs(sums - 1.0).max() > 1e-2


def test_distribution_api_sample_and_mean():
  head = distributions.make_pixel_head("logistic_mixture", 3, 3, num_mixtures=3)
  params = np.tile(_head_params(head, 1, seed=3, scale=2.0)[:, None, None], (2, 2, 1, 1))
  dist = head.image_distribution(params)  # [B=2], event [H=2, W=1, C=3]
  assert dist.batch_shape == [2] and dist.event_shape == [2, 1, 3]
  pixels = np.array(list(itertools.product(range(3), repeat=3)), np.int32)
  p = np.exp(_reference_log_prob(head, params[0, 0, 0], pixels))
  np.testing.assert_allclose(dist.mean().numpy()[0, 0, 0], p @ pixels, rtol=1e-4)
  draws = dist.sample(3000, seed=[1, 2]).numpy()  # [3000, 2, 2, 1, 3]
  assert draws.shape == (3000, 2, 2, 1, 3) and draws.dtype == np.int32
  flat = draws.reshape(-1, 3)
  freq = np.bincount(flat @ np.array([9, 3, 1]), minlength=27) / len(flat)
  assert 0.5 * np.abs(freq - p).sum() < 0.5 * 5 * np.sqrt(p * (1 - p) / len(flat)).sum()
  np.testing.assert_allclose(flat.mean(0), p @ pixels, atol=0.05)
  gray = distributions.make_pixel_head("logistic_mixture", 256, 1, num_mixtures=2)
  g_params = _head_params(gray, 4)
  levels = np.arange(256)[:, None, None]
  expected = (np.exp(gray.pixel_distribution(g_params).log_prob(levels).numpy()) *
              levels[..., 0]).sum(0)
  np.testing.assert_allclose(gray.mean(g_params[:, None, None])[:, 0, 0, 0], expected,
                             rtol=1e-4)
  with pytest.raises(ValueError, match="estimate it from samples"):
    distributions.make_pixel_head("logistic_mixture", 256, 3).mean(
        np.zeros((1, 1, 1, 100), np.float32))


def _head_sampler_p_value(head, params, num, seed=0):
  """Chi-square p-value of channel-by-channel `head.quantile` draws against the joint pmf."""
  k, c = head.num_levels, head.num_channels
  rng = np.random.default_rng(seed)
  batch = np.repeat(params[None], num, 0)
  levels = np.zeros((num, c), np.int32)
  for ch in range(c):
    levels[:, ch] = head.quantile(batch, ch, rng.uniform(size=num).astype(np.float32),
                                  levels).numpy()
  pixels = np.array(list(itertools.product(range(k), repeat=c)), np.int32)
  p = np.exp(head.pixel_distribution(np.repeat(params[None], len(pixels), 0))
             .log_prob(pixels).numpy().astype(np.float64))
  counts = np.bincount(levels @ (k ** np.arange(c)[::-1]), minlength=len(pixels))
  return checks.chi_square_p_value(counts, p)


def _with_prior_weights(monkeypatch):
  """The classic bug: channel c drawn from sum_k pi_k p(x_c | x_<c, k), prior weights."""

  def conditional_with_prior(self, levels):
    locs = self._locs(self._scaled(tf.cast(levels, tf.int32)))  # [..., C, M]
    every = self._level_log_probs(tf.range(self.num_levels), locs[..., None],
                                  self._log_scales[..., None])  # [..., C, M, K]
    log_pi = tf.nn.log_softmax(self._logits)[..., None, :, None]
    return tf.reduce_logsumexp(log_pi + every, axis=-2)

  monkeypatch.setattr(distributions.DiscretizedLogisticMixture, "conditional_log_probs",
                      conditional_with_prior)


def test_head_quantile_samples_the_joint(monkeypatch):
  head = distributions.make_pixel_head("logistic_mixture", 3, 3, num_mixtures=3)
  params = _head_params(head, 1, seed=5, scale=2.0)[0]
  p_value = _head_sampler_p_value(head, params, 6000)
  assert p_value > checks.ALPHA, p_value
  _with_prior_weights(monkeypatch)
  p_value = _head_sampler_p_value(head, params, 6000)
  assert p_value < checks.ALPHA, p_value


# ---- the network: causality ----------------------------------------------------------


def _leaks_with(monkeypatch, target, name, replacement, shape=(4, 4, 3)):
  monkeypatch.setattr(target, name, replacement)
  model = checks.randomize(models.build("pixelcnn_pp", shape, 3, **TINY))
  return checks.pixel_causality_leaks(model, checks.random_images(model))


def test_causality_check_fails_without_shift_right(monkeypatch):
  leaks = _leaks_with(monkeypatch, pixelcnn_pp.layers, "shift_right", lambda x, cols=1: x)
  assert any(p == s // 3 for p, s in leaks)  # A pixel sees itself.


def test_causality_check_fails_without_shift_down(monkeypatch):
  leaks = _leaks_with(monkeypatch, pixelcnn_pp.layers, "shift_down", lambda x, rows=1: x)
  assert any(s // 3 > p for p, s in leaks)  # A pixel sees the rest of its row.


def test_causality_check_fails_on_a_badly_cropped_upsampling(monkeypatch):
  def crop_one_row_low(self, inputs, output_size):  # Coarse row i reaches fine row 2i-1.
    out = keras.layers.Conv2DTranspose.call(self, inputs)
    out = tf.pad(out, [[0, 0], [0, 1], [0, 0], [0, 0]])
    return out[:, 1:output_size[0] + 1, :output_size[1]]

  leaks = _leaks_with(monkeypatch, pixelcnn_pp.CausalConv2DTranspose, "call",
                      crop_one_row_low, shape=(4, 4, 1))
  assert any(s > p for p, s in leaks)


# ---- normalization and sampling ------------------------------------------------------


def test_normalization_with_two_scales():
  # One scale is tests/test_contract.py's; 3x3 images take a down- and an up-sampling.
  model = checks.randomize(models.build("pixelcnn_pp", (3, 3, 1), 2, **dict(TINY, num_scales=2)),
                           seed=1)
  assert checks.total_probability(model) == pytest.approx(1.0, abs=1e-4)


def test_normalization_check_fails_on_a_leaky_model(monkeypatch):
  monkeypatch.setattr(pixelcnn_pp.layers, "shift_right", lambda x, cols=1: x)
  deviations = [abs(checks.total_probability(checks.randomize(
      models.build("pixelcnn_pp", (2, 2, 1), 3, **FLAT), seed=seed)) - 1.0)
                for seed in range(2)]
  assert max(deviations) > 1e-2, deviations


def _mixed_model(shape, levels):
  """A tiny model whose pixels are clearly multi-modal mixtures: random weights, and
  output biases of scale 2 (the pixel parameters of a 1x1 image are mostly biases)."""
  model = checks.randomize(models.build("pixelcnn_pp", shape, levels, **FLAT), seed=2)
  model.output_conv.bias.assign(_head_params(model.head, 1, seed=5, scale=2.0)[0])
  return model


@pytest.mark.parametrize("shape,levels,fast", [((1, 1, 3), 3, True), ((1, 1, 3), 3, False)])
def test_sampler_matches_log_prob(shape, levels, fast):
  # Clearly multi-modal mixtures across the channels of a pixel (2x2 binary images with
  # random weights: tests/test_contract.py).
  model = _mixed_model(shape, levels)
  assert model.supports_fast_sampling  # The default; fast=False is the naive loop.
  p_value = checks.sampler_p_value(model, 4000, seed=3, fast=fast)
  assert p_value > checks.ALPHA, p_value


def test_sampler_check_fails_with_prior_mixture_weights(monkeypatch):
  model = _mixed_model((1, 1, 3), 3)
  _with_prior_weights(monkeypatch)
  p_value = checks.sampler_p_value(model, 4000, seed=3)
  assert p_value < checks.ALPHA, p_value


def test_sample_shapes_seeds_and_labels():
  model = models.build("pixelcnn_pp", (3, 4, 3), 5, num_classes=2, **FLAT)
  a = model.sample(2, seed=7, labels=[0, 1]).numpy()
  assert a.shape == (2, 3, 4, 3) and a.dtype == np.int32 and 0 <= a.min() and a.max() < 5
  np.testing.assert_array_equal(a, model.sample(2, seed=7, labels=[0, 1]).numpy())
  with pytest.raises(ValueError, match="class-conditional"):
    model.sample(2)


# ---- cached sampling: the static schedule of `tfgen.incremental` ----------------------


@pytest.mark.parametrize("shape,levels,classes,hparams", [
    ((4, 4, 3), 4, None, dict(TINY, num_scales=2, num_mixtures=2)),
    ((5, 3, 1), 3, 2, dict(TINY, num_resnet=2)),  # odd sizes: ceil at both coarse scales
])
def test_fast_sampler_equals_naive(shape, levels, classes, hparams):
  model = checks.randomize(models.build("pixelcnn_pp", shape, levels, num_classes=classes,
                                        **hparams), scale=0.5)
  naive = checks.cached_sampler_images(model, 4)
  assert len(np.unique(naive)) == levels  # Spread over the levels: a wrong sampler shows.


_original_shift_taps = pixelcnn_pp.incremental.shift_taps


def _shift_taps_two_columns(shape, rows=0, cols=0):  # Causal, but not the model.
  return _original_shift_taps(shape, rows, 2 * cols)


def _shift_taps_no_rows(shape, rows=0, cols=0):  # The u stream reads its own row.
  return _original_shift_taps(shape, 0, cols)


def test_fast_sampler_check_catches_a_wrong_plan(monkeypatch):
  model = checks.randomize(models.build("pixelcnn_pp", (4, 4, 1), 4,
                                        **dict(TINY, num_scales=2)), scale=0.5)
  naive = model.sample(4, seed=0, fast=False).numpy()
  monkeypatch.setattr(pixelcnn_pp.incremental, "shift_taps", _shift_taps_two_columns)
  assert not np.array_equal(model.sample(4, seed=0).numpy(), naive)
  # A plan whose output needs pixels not drawn yet is refused when it is built.
  monkeypatch.setattr(pixelcnn_pp.incremental, "shift_taps", _shift_taps_no_rows)
  model._function_cache.functions.clear()
  with pytest.raises(ValueError, match="Not causal"):
    model.sample(4, seed=0)


# ---- the model: size, training, serialization, errors --------------------------------


def test_default_size_matches_the_default_pixelcnn():
  # Neither count depends on the image size: 8x8 builds what 28x28 would, faster.
  pp = models.build("pixelcnn_pp", (8, 8, 1), 2).count_params()
  plain = models.build("pixelcnn", (8, 8, 1), 2).count_params()
  assert abs(pp - plain) / plain < 0.05, (pp, plain)


def test_dropout_is_active_in_training_only():
  model = checks.randomize(models.build("pixelcnn_pp", (4, 4, 1), 3, **dict(TINY, dropout=0.5)))
  x = {"image": checks.random_images(model)[None]}
  np.testing.assert_array_equal(model(x), model(x))
  assert not np.allclose(model(x, training=True), model(x, training=True))


def test_overfits_a_few_images():
  images = np.random.default_rng(0).integers(0, 4, (4, 4, 4, 1)).astype(np.uint8)
  model = models.build("pixelcnn_pp", (4, 4, 1), 4, num_filters=12, num_resnet=1,
                       num_scales=2, num_mixtures=3)
  # 1e-2 oscillates here (2.16 -> 1.79 bits/dim, measured 2026-12-02); 3e-3 reaches 0.27.
  model.compile(keras.optimizers.Adam(3e-3))
  before = model.evaluate(images, batch_size=4, verbose=0, return_dict=True)["bits_per_dim"]
  # One epoch of the same batch repeated: Keras's per-epoch overhead once.
  model.fit(np.tile(images, (120, 1, 1, 1)), batch_size=4, epochs=1, shuffle=False, verbose=0)
  after = model.evaluate(images, batch_size=4, verbose=0, return_dict=True)["bits_per_dim"]
  assert before > 1.0 and after < 0.25 * before, (before, after)


def test_build_errors():
  with pytest.raises(ValueError, match="Valid hyper-parameters .*num_filters"):
    models.build("pixelcnn_pp", (8, 8, 1), 2, num_filter=3)
  with pytest.raises(ValueError, match="num_scales must be positive"):
    models.build("pixelcnn_pp", (8, 8, 1), 2, num_scales=0)
  with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
    models.build("pixelcnn_pp", (8, 8, 1), 2, dropout=1.0)
  with pytest.raises(ValueError, match="Unknown pixel distribution"):
    distributions.make_pixel_head("logistic", 2, 1)
  assert distributions.make_pixel_head("categorical", 4, 3).num_params == 12  # Unchanged.
  assert distributions.make_pixel_head("logistic_mixture", 256, 3).num_params == 100


# ---- train_main -----------------------------------------------------------------------


def test_train_main_end_to_end(tmp_path):
  import sys  # pylint: disable=import-outside-toplevel
  import commands  # pylint: disable=import-outside-toplevel
  from conftest import REPO_ROOT  # pylint: disable=import-outside-toplevel
  flag = ",".join(f"{k}={v}" for k, v in FLAT.items())
  proc = commands.run(
      [sys.executable, os.path.join(REPO_ROOT, "train_main.py"), "--model=pixelcnn_pp",
       "--dataset=digits", f"--hparams={flag}", "--batch_size=32", "--train_steps=4",
       "--conditional", "--ema_decay=0.9", "--num_samples=10", "--verbose=0",
       "--mixed_precision=none",  # Precision plays no part here; see test_distributed.
       f"--model_dir={tmp_path}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert metrics["model"] == "pixelcnn_pp" and metrics["train_steps"] == 4
  assert metrics["test_nll_nats"] > 0 and (tmp_path / "samples.png").exists()
  assert json.loads((tmp_path / "config.json").read_text())["optim"]["ema_decay"] == 0.9


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__, "-q"]))
