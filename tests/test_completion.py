"""Completion (`tfgen.completion`, `model.complete`) for every autoregressive family.

On images small enough to enumerate, the exact conditional p(x_missing | x_observed)
is exp(log p(x)) over the images that agree with the observed subpixels, normalized:

- suffix masks: completions have those frequencies (chi-square), with the observed
  subpixels untouched; fails for a completion that re-samples the observed subpixels
  or conditions on something else in their place;
- a non-suffix mask: the ancestral walk alone fails that test, and Gibbs sweeps pass it;
- `conditional_log_prob` is log p(x) - log p(x_observed) by enumeration;
- cached completion returns exactly the naive completion's images for the same noise;
- bad masks, images, noise and counts: one ValueError each.
"""

import numpy as np
import pytest
import tensorflow as tf

import likelihood_checks as checks
import test_contract as contract
from tfgen import completion
from tfgen import models
from tfgen import sampling
from tfgen.models import api

COMPLETERS = [n for n in contract.EXACT if api.implements(models.model_class(n), api.Completer)]


def _exact_conditional_check(model, image, keep, samples):
  """(whether every sample keeps the observed subpixels, the chi-square p-value of
  the samples' missing subpixels against p(x_missing | x_observed))."""
  every = checks.all_images(model.image_shape, model.num_levels)  # [K**T, H, W, C]
  agrees = np.all((every == image) | ~keep, axis=(1, 2, 3))  # [K**T]
  p = np.exp(model.log_prob(every[agrees]).numpy().astype(np.float64))
  kept = bool(np.all(samples[:, keep] == image[keep]))
  # The missing subpixels of each sample, written into the observed image, so that
  # a sample that changed an observed subpixel still counts where it would belong.
  completed = np.where(keep, image, samples)
  counts = checks.image_counts(completed, model.num_levels)[agrees]  # [K**T] -> agreeing
  return kept, checks.chi_square_p_value(counts, p)


# Two images of 2x2, 3 levels: the bottom row missing, and all but the first pixel.
SUFFIX_IMAGES = np.array([[[1, 2], [0, 0]], [[2, 0], [0, 0]]], np.int32)[..., None]
SUFFIX_KEEP = np.array([[[1, 1], [0, 0]], [[1, 0], [0, 0]]], bool)[..., None]


def _suffix_check(model, fast, num=2000):
  samples = model.complete(SUFFIX_IMAGES, SUFFIX_KEEP, num_samples=num, seed=5, fast=fast)
  assert samples.shape == (num, 2, 2, 2, 1)
  return [_exact_conditional_check(model, SUFFIX_IMAGES[b], SUFFIX_KEEP[b],
                                   samples.numpy()[:, b]) for b in range(2)]


@pytest.mark.parametrize("name", COMPLETERS)
@pytest.mark.parametrize("fast", [False, None])
def test_suffix_completion_is_the_exact_conditional(name, fast):
  model = contract._build(name, (2, 2, 1), 3, seed=2)
  for b, (kept, p_value) in enumerate(_suffix_check(model, fast)):
    assert kept, f"image {b}: an observed subpixel changed"
    assert p_value > checks.ALPHA, (b, p_value)


@pytest.mark.parametrize("broken", ["resamples_observed", "ignores_observed"])
def test_suffix_check_fails_for_a_broken_completion(monkeypatch, broken):
  model = contract._build("pixelcnn", (2, 2, 1), 3, seed=2)
  if broken == "resamples_observed":  # The observed subpixels are drawn, not kept.
    monkeypatch.setattr(sampling, "clamped_noise", lambda noise, keep: noise)
  else:  # Kept in the output, but the model conditions on zeros in their place.
    real = completion.clamped_start
    monkeypatch.setattr(completion, "clamped_start", lambda images, keep, noise: real(
        tf.zeros_like(images), keep, noise))
  results = _suffix_check(model, fast=None)
  if broken == "resamples_observed":
    assert not all(kept for kept, _ in results)
  # Either way the missing subpixels follow another distribution.
  assert min(p for _, p in results) < checks.ALPHA, results


# 2x2 binary with only the last pixel observed: every missing subpixel comes before it.
GIBBS_IMAGE = np.array([[0, 0], [0, 1]], np.int32)[..., None]
GIBBS_KEEP = np.array([[0, 0], [0, 1]], bool)[..., None]


def _gibbs_check(model, sweeps, num=3000):
  samples = model.complete(GIBBS_IMAGE[None], GIBBS_KEEP[None], num_samples=num, seed=7,
                           gibbs_sweeps=sweeps).numpy()[:, 0]
  return _exact_conditional_check(model, GIBBS_IMAGE, GIBBS_KEEP, samples)


@pytest.mark.parametrize("name", COMPLETERS)
def test_gibbs_sweeps_reach_the_conditional_of_a_non_suffix_mask(name):
  model = contract._build(name, (2, 2, 1), 2, seed=4)
  assert not completion.missing_is_suffix(GIBBS_KEEP[None])[0]
  kept, p_value = _gibbs_check(model, sweeps=10)
  assert kept and p_value > checks.ALPHA, p_value


def test_without_sweeps_a_non_suffix_completion_ignores_later_observations():
  # The broken variant of the test above: the ancestral walk alone (what Gibbs refines).
  model = contract._build("pixelcnn", (2, 2, 1), 2, seed=4)
  kept, p_value = _gibbs_check(model, sweeps=0)
  assert kept and p_value < checks.ALPHA, p_value


@pytest.mark.parametrize("name", COMPLETERS)
def test_conditional_log_prob_is_log_p_x_minus_log_p_observed(name):
  model = contract._build(name, (1, 2, 3), 3, seed=6)
  every = checks.all_images(model.image_shape, 3)
  log_p = model.log_prob(every).numpy().astype(np.float64)
  rng = np.random.default_rng(0)
  images = every[rng.choice(len(every), 3)]
  # Missing: the last two channels of pixel 1; pixel 1; everything after subpixel 0.
  keep = np.ones((3, 1, 2, 3), bool)
  keep[0, 0, 1, 1:] = keep[1, 0, 1] = False
  keep[2].reshape(-1)[1:] = False
  got = model.conditional_log_prob(images, keep).numpy()
  for b in range(3):
    agrees = np.all((every == images[b]) | ~keep[b], axis=(1, 2, 3))
    marginal = np.log(np.exp(log_p[agrees]).sum())  # log p(x_observed)
    own = np.flatnonzero(np.all(every == images[b], axis=(1, 2, 3)))[0]
    expected = log_p[own] - marginal
    assert got[b] == pytest.approx(expected, abs=2e-4), b
    # The broken variant, the sum over the observed subpixels, is log p(x_observed).
    assert abs(log_p[own] - got[b] - expected) > 1e-2


@pytest.mark.parametrize("name", [n for n in COMPLETERS
                                  if models.model_class(n).supports_fast_sampling])
def test_cached_completion_equals_naive_completion(name):
  model = contract._build(name, (3, 3, 3), 4, classes=2, seed=3)
  rng = np.random.default_rng(1)
  images = rng.integers(0, 4, (2, 3, 3, 3))
  keep = rng.random((2, 3, 3, 3)) < 0.5  # Any mask, suffix or not.
  keep[:, 0, 0, 0], keep[:, 2, 2, 2] = True, False
  keep[1, :1] = True  # The cached sampler then starts after a wholly observed row.
  noise = rng.uniform(size=(2, 2, 3, 3, 3)).astype(np.float32)
  fast = model.complete(images, keep, num_samples=2, noise=noise, labels=[0, 1], fast=True)
  naive = model.complete(images, keep, num_samples=2, noise=noise, labels=[0, 1], fast=False)
  np.testing.assert_array_equal(fast, naive)
  # The dict of `completion_noise_specs`, as every Completer takes it: the same images.
  np.testing.assert_array_equal(naive, model.complete(
      images, keep, num_samples=2, noise={"noise": noise}, labels=[0, 1], fast=False))
  assert np.all(fast.numpy()[:, keep] == np.broadcast_to(images, fast.shape)[:, keep])


def test_masks_of_whole_pixels_seeds_and_shapes():
  model = contract._build("pixelcnn", (3, 3, 3), 4, seed=3)
  images = np.random.default_rng(2).integers(0, 4, (2, 3, 3, 3))
  pixels = np.zeros((2, 3, 3), bool)
  pixels[:, 0] = True  # The top row observed.
  a = model.complete(images, pixels, num_samples=3, seed=1)
  b = model.complete(images, np.repeat(pixels[..., None], 3, -1).astype(np.int32),
                     num_samples=3, seed=1)
  assert a.shape == (3, 2, 3, 3, 3) and a.dtype == tf.int32
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a.numpy()[:, :, 0], np.broadcast_to(images[:, 0], (3, 2, 3, 3)))
  assert not np.array_equal(a, model.complete(images, pixels, num_samples=3, seed=2))


def test_bad_completion_inputs_are_one_clear_error():
  model = contract._build("pixelcnn", (2, 2, 1), 3, seed=0)
  images = np.zeros((1, 2, 2, 1), np.int32)
  keep = np.array([[[1, 1], [0, 0]]], bool)[..., None]
  cases = [
      (dict(mask=keep[:, :1]), "mask must have the images' shape"),
      (dict(mask=keep.astype(np.float32)), "mask must be boolean or 0/1"),
      (dict(mask=keep.astype(np.int32) * 2), r"0 \(missing\) and 1 \(observed\)"),
      (dict(mask=np.ones_like(keep)), "nothing missing"),
      (dict(mask=np.zeros_like(keep)), "nothing observed"),
      (dict(images=np.full((1, 2, 2, 1), 3)), "levels in"),
      (dict(images=images.astype(np.float32)), "integer pixel levels"),
      (dict(noise=np.full((1, 1, 1, 2, 1), 0.5, np.float32)), "noise must have shape"),
      (dict(noise=np.full((1, 1, 2, 2, 1), 1.5, np.float32)), r"in \[0, 1\)"),
      (dict(noise={"z": np.zeros((1, 1, 2, 2, 1), np.float32)}), "or the dict"),
      (dict(num_samples=0), "num_samples must be a positive whole number"),
      (dict(gibbs_sweeps=-1), "gibbs_sweeps must be a whole number >= 0"),
      (dict(gibbs_sweeps=10 ** 5, num_samples=100), "image likelihoods"),
      (dict(labels=[0]), "unconditional"),
  ]
  for change, message in cases:
    args = {"images": images, "mask": keep, **change}
    with pytest.raises(ValueError, match=message):
      model.complete(args.pop("images"), args.pop("mask"), seed=0, **args)
  with pytest.raises(ValueError, match="not a suffix"):
    model.conditional_log_prob(images, np.array([[[0, 1], [1, 1]]], bool)[..., None])


# ---- VAEs: the encode/decode chain of Rezende et al. 2014 ------------------------------


def _vae(seed=11, **hparams):
  hp = dict(latent_dim=1, hidden_dims="16", **hparams)
  return checks.randomize(models.build("vae", (2, 2, 1), 2, **hp), seed=seed)


def _missing_given_z(model, candidates, z):
  """p(x_missing | z, x_observed) `[G, M]` at codes z `[G]` of a 1-D latent: p(x | z) of
  each candidate image, normalized over the candidates."""
  decoded = model.decode(tf.constant(z[:, None], tf.float32))
  log_p = np.stack([decoded.log_prob(np.broadcast_to(c, (len(z),) + c.shape)).numpy()
                    for c in candidates], axis=1).astype(np.float64)  # [G, M]
  p = np.exp(log_p - log_p.max(axis=1, keepdims=True))
  return p / p.sum(axis=1, keepdims=True)


def _average_over_normal(model, candidates, mean, stddev, points=4001, width=10.0):
  """E_{z ~ N(mean, stddev^2)} p(x_missing | z, x_observed) `[M]`, by quadrature on a
  grid of +-`width` standard deviations (fine enough for a narrow posterior too)."""
  grid = np.linspace(-width, width, points)
  weights = np.exp(-0.5 * grid ** 2)
  return (weights / weights.sum()) @ _missing_given_z(model, candidates, mean + stddev * grid)


def _vae_chain_law(model, image, keep, steps):
  """(candidate images `[M, H, W, C]`, the law `[M]` of the chain after `steps` decodes):
  x_1 from the prior's decode, then x_t ~ sum_z q(z | x_{t-1}) p(x_missing | z), the
  transition matrix computed by numerical integration over the 1-D latent."""
  every = checks.all_images(model.image_shape, model.num_levels)
  candidates = every[np.all((every == image) | ~keep, axis=(1, 2, 3))]  # [M, H, W, C]
  q = model.encode(candidates)
  mean, stddev = (q.mean().numpy()[:, 0].astype(np.float64),
                  q.stddev().numpy()[:, 0].astype(np.float64))
  transition = np.stack([_average_over_normal(model, candidates, mean[m], stddev[m])
                         for m in range(len(candidates))])  # [M, M]
  law = _average_over_normal(model, candidates, 0.0, 1.0)
  for _ in range(steps - 1):
    law = law @ transition
  return candidates, law


# Only the first pixel observed: 8 completions, each a different image.
VAE_IMAGE = np.array([[1, 0], [0, 0]], np.int32)[..., None]
VAE_KEEP = np.array([[1, 0], [0, 0]], bool)[..., None]


def _vae_chain_check(model, steps, num=4000, breaks=None):
  """(observed pixel kept, chi-square p-value of `complete` against the chain's law);
  `breaks(model)`, if given, breaks the model's completion after the law is computed."""
  candidates, law = _vae_chain_law(model, VAE_IMAGE, VAE_KEEP, steps)
  if breaks:
    breaks(model)
  samples = model.complete(VAE_IMAGE[None], VAE_KEEP[None], num_samples=num, seed=3,
                           steps=steps).numpy()[:, 0]  # [S, H, W, C]
  kept = bool(np.all(samples[:, VAE_KEEP] == VAE_IMAGE[VAE_KEEP]))
  index = {c.tobytes(): m for m, c in enumerate(candidates)}
  counts = np.bincount([index[np.where(VAE_KEEP, VAE_IMAGE, s).tobytes()] for s in samples],
                       minlength=len(candidates))
  return kept, checks.chi_square_p_value(counts, law)


def test_vae_completion_follows_the_encode_decode_chain():
  # The exact law of the chain (not of p(x_missing | x_observed), which it only
  # approaches as q(z | x) approaches the true posterior) after 3 decodes.
  kept, p_value = _vae_chain_check(_vae(), steps=3)
  assert kept and p_value > checks.ALPHA, p_value


def _broken_chain(broken, monkeypatch):
  def breaks(model):
    if broken == "encodes_observed_only":  # Re-encodes the observed part, zeros elsewhere.
      real = model._encoder_outputs
      keep = tf.constant(VAE_KEEP)
      monkeypatch.setattr(model, "_encoder_outputs", lambda inputs, training=False: real(
          dict(inputs, image=tf.where(keep, inputs["image"], 0)), training))
      return
    real = model.complete_from_noise
    if broken == "one_step_short":  # Its loop skips a step.
      monkeypatch.setattr(model, "complete_from_noise", lambda x, k, noise, c, **kw: real(
          x, k, {name: v[:, 1:] for name, v in noise.items()}, c, **kw))
    else:  # Decodes every subpixel, the observed ones too.
      monkeypatch.setattr(model, "complete_from_noise", lambda x, k, noise, c, **kw: real(
          x, tf.zeros_like(k), noise, c, **kw))
  return breaks


@pytest.mark.parametrize("broken", ["encodes_observed_only", "one_step_short",
                                    "redraws_observed"])
def test_vae_chain_check_fails_for_a_broken_chain(monkeypatch, broken):
  kept, p_value = _vae_chain_check(_vae(), steps=3, breaks=_broken_chain(broken, monkeypatch))
  assert not kept or p_value < checks.ALPHA, (broken, p_value)


def test_vae_completion_keeps_observed_pixels_and_follows_its_seed():
  model = checks.randomize(models.build("conv_vae", (4, 4, 1), 5, num_classes=2, latent_dim=2,
                                        hidden_dims="16", conv_filters="4-8"), scale=0.5)
  images = np.random.default_rng(0).integers(0, 5, (3, 4, 4, 1))
  keep = np.zeros((3, 4, 4), bool)
  keep[:, :, :2] = True  # The left half observed (whole pixels): not a suffix.
  a = model.complete(images, keep, num_samples=2, seed=1, labels=[0, 1, 1], steps=4)
  assert a.shape == (2, 3, 4, 4, 1) and a.dtype == tf.int32
  np.testing.assert_array_equal(a.numpy()[:, :, :, :2], np.broadcast_to(images[:, :, :2],
                                                                        (2, 3, 4, 2, 1)))
  assert a.numpy().min() >= 0 and a.numpy().max() < 5
  np.testing.assert_array_equal(
      a, model.complete(images, keep, num_samples=2, seed=1, labels=[0, 1, 1], steps=4))
  assert not np.array_equal(a, model.complete(images, keep, num_samples=2, seed=2,
                                              labels=[0, 1, 1], steps=4))
  # Explicit noise: the same images as the seed's draw of it.
  rng = np.random.default_rng(5)
  noise = {"z": rng.standard_normal((2, 3, 4, 2)).astype(np.float32),
           "noise": rng.uniform(size=(2, 3, 4, 4, 4, 1)).astype(np.float32)}
  b = model.complete(images, keep, num_samples=2, noise=noise, labels=[0, 1, 1], steps=4)
  np.testing.assert_array_equal(
      b, model.complete(images, keep, num_samples=2, noise=noise, labels=[0, 1, 1], steps=4))


def test_bad_vae_completion_inputs_are_one_clear_error():
  model = _vae()
  images, keep = VAE_IMAGE[None], VAE_KEEP[None]
  z = np.zeros((1, 1, 2, 1), np.float32)
  uniform = np.full((1, 1, 2, 2, 2, 1), 0.5, np.float32)
  cases = [
      (dict(mask=np.ones_like(keep)), "nothing missing"),
      (dict(mask=keep[:, :1]), "mask must have the images' shape"),
      (dict(steps=0), "steps must be a positive whole number"),
      (dict(noise=uniform), "must be a dict"),
      (dict(noise={"z": z[:, :, :1], "noise": uniform}), r"noise\['z'\] must have shape"),
      (dict(noise={"z": z + np.nan, "noise": uniform}), "NaN"),
      (dict(noise={"z": z, "noise": uniform + 1.0}), r"in \[0, 1\)"),
      (dict(labels=[0]), "unconditional"),
  ]
  for change, message in cases:
    args = {"images": images, "mask": keep, "steps": 2, **change}
    with pytest.raises(ValueError, match=message):
      model.complete(args.pop("images"), args.pop("mask"), **args)
