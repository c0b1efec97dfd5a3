"""Autoencoders and VAEs: decoder likelihoods, the importance-weighted bound checked
against numerical integration, training outputs, and the latent-space tools."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import likelihood_checks
from tfgen import config as config_lib
from tfgen import distributions
from tfgen import latents
from tfgen import models
from tfgen import train_lib

tfd = tfp.distributions
TINY = dict(hidden_dims="16", latent_dim=3)


def _level_probs(head, params):
  """P(x = k) of every subpixel for every level k: `[K, B, H, W, C]`, float64."""
  dist = head.image_distribution(params).distribution  # Per subpixel.
  levels = tf.range(head.num_levels)[:, None, None, None, None]
  shape = tf.concat([[head.num_levels], tf.shape(params)[:-1], [head.num_channels]], 0)
  values = tf.cast(tf.broadcast_to(levels, shape), dist.dtype)
  return np.exp(dist.log_prob(values).numpy().astype(np.float64))


def _extreme_params(num_channels, seed=0):
  rng = np.random.default_rng(seed)
  params = rng.normal(size=(3, 4, 4, 2 * num_channels)) * 3
  params[0, 0, 0] = [1e4, 1e4] if num_channels == 1 else params[0, 0, 0]  # Huge scale.
  params[0, 0, 1, 1] = -1e4  # Tiny scale (softplus floor).
  params[0, 1, 1, 0] = 50.0  # Mean far above the top level.
  params[0, 1, 2, 0] = -50.0  # Mean far below level 0.
  return tf.constant(params, tf.float32)


@pytest.mark.parametrize("num_levels", [2, 5, 256])
def test_discretized_gaussian_sums_to_one_and_stays_finite(num_levels):
  head = distributions.make_pixel_head("gaussian", num_levels, 1)
  params = _extreme_params(1)
  probs = _level_probs(head, params)
  assert np.isfinite(np.log(np.maximum(probs, 1e-300))).all()
  log_p = head.image_distribution(params).log_prob(np.zeros((3, 4, 4, 1), np.int32))
  assert np.isfinite(log_p.numpy()).all()
  np.testing.assert_allclose(probs.sum(0), 1.0, atol=2e-5)


def test_sum_to_one_check_catches_edges_without_tails():
  class NoTails(distributions.DiscretizedGaussianPixelHead):
    def image_distribution(self, params):
      loc, scale = self._loc_scale(params)
      return tfd.Independent(tfd.QuantizedDistribution(tfd.Normal(loc - 0.5, scale)), 3)

  probs = _level_probs(NoTails(5, 1), _extreme_params(1))
  assert not np.allclose(probs.sum(0), 1.0, atol=2e-5)


@pytest.mark.parametrize("name,num_levels", [("gaussian", 4), ("bernoulli", 2),
                                             ("categorical", 3)])
def test_image_quantile_draws_the_distribution(name, num_levels):
  head = distributions.make_pixel_head(name, num_levels, 1)
  params = tf.random.stateless_normal([1, 1, 1, head.num_params], [3, 4])
  probs = _level_probs(head, params)[:, 0, 0, 0, 0]
  noise = tf.random.stateless_uniform([20000, 1, 1, 1], [5, 6])
  draws = head.image_quantile(tf.repeat(params, 20000, axis=0), noise).numpy().ravel()
  freq = np.bincount(draws, minlength=num_levels) / 20000
  np.testing.assert_allclose(freq, probs, atol=5 * np.sqrt(0.25 / 20000))


def test_bernoulli_needs_binary_data():
  with pytest.raises(ValueError, match="binary images"):
    models.build("vae", (4, 4, 1), 17, likelihood="bernoulli", **TINY)


# ---- the importance-weighted estimate ----------------------------------------------

def _one_d_vae(seed=0):
  """A random decoder with an x-dependent proposal q(z | x) = N(mu(x), 1.5^2).

  mu(x) is the random encoder's, scaled to move by about a unit between images (so an
  estimator that paired samples, weights and images wrongly would show), and sigma is
  wider than the prior, so importance weights have finite variance and k = 5000
  samples pin log p(x) down to ~0.01 nats whatever the decoder.
  """
  model = models.build("vae", (2, 2, 1), 2, latent_dim=1, hidden_dims="8")
  likelihood_checks.randomize(model, seed=seed, scale=1.5)
  last = model.encoder.layers[-1]
  kernel = last.kernel.numpy()  # [hidden, 2]: mu, then sigma before the softplus.
  kernel[:, 0] /= np.abs(kernel[:, 0]).sum()
  kernel[:, 1] = 0.0
  last.kernel.assign(kernel)
  last.bias.assign([0.0, float(np.log(np.expm1(1.5 - 1e-4)))])  # softplus^-1
  return model


def _quadrature_log_p(model, images):
  """log p(x) = log integral p(x | z) N(z; 0, 1) dz by the trapezoid rule on [-9, 9]."""
  z = np.linspace(-9.0, 9.0, 3601, dtype=np.float32)[:, None]  # [G, 1]
  dist = model.decode(z)  # batch [G]
  log_px = np.stack([dist.log_prob(np.broadcast_to(x, (len(z),) + x.shape)).numpy()
                     for x in images]).astype(np.float64)  # [N, G]
  log_joint = log_px - 0.5 * z[:, 0] ** 2 - 0.5 * np.log(2 * np.pi)
  top = log_joint.max(1, keepdims=True)
  dz = float(z[1, 0] - z[0, 0])
  return top[:, 0] + np.log(np.trapezoid(np.exp(log_joint - top), dx=dz, axis=1))


def _iwae_error(model, k=5000, **options):
  """(exact log p(x) of every 2x2 binary image, mean and max |estimate - exact|)."""
  images = likelihood_checks.all_images(model.image_shape, model.num_levels)
  exact = _quadrature_log_p(model, images)
  estimate = model.log_prob(images, num_importance_samples=k, seed=3, **options).numpy()
  error = np.abs(estimate - exact)
  return exact, error.mean(), error.max()


def test_iwae_agrees_with_numerical_integration():
  # Measured with this proposal: k=5000 errors 0.011 mean, 0.039 max: Monte Carlo noise.
  model = _one_d_vae()
  means = model.encode(likelihood_checks.all_images((2, 2, 1), 2)).mean().numpy()
  assert np.ptp(means) > 0.5, means  # The proposal depends on x.
  exact, mean_error, max_error = _iwae_error(model)
  assert np.exp(exact).sum() == pytest.approx(1.0, abs=1e-4)  # p(x) is normalized.
  assert mean_error < 0.02 and max_error < 0.06, (mean_error, max_error)


def test_chunked_estimate_agrees_too():
  # 4 pixels x 1 param x 16 images = 64 elements per sample: chunks of 7 samples, and a
  # last chunk of 5000 % 7 = 2 that must be masked.
  _, mean_error, max_error = _iwae_error(_one_d_vae(), max_elements=7 * 64)
  assert mean_error < 0.02 and max_error < 0.06, (mean_error, max_error)


def test_integration_check_catches_an_estimator_without_the_1_over_k():
  class NoMean(models.VAE):
    def _iw_log_prob(self, images, labels, k, chunk, seed):
      return super()._iw_log_prob(images, labels, k, chunk, seed) + tf.math.log(
          tf.cast(k, tf.float32))

  model = NoMean((2, 2, 1), 2, latent_dim=1, hidden_dims="8")
  model.set_weights(_one_d_vae().get_weights())
  _, mean_error, _ = _iwae_error(model)
  assert mean_error > 1.0


def test_iwae_bounds_elbo_and_tightens_with_k():
  model = likelihood_checks.randomize(
      models.build("vae", (4, 4, 1), 2, latent_dim=4, hidden_dims="16"), seed=1)
  images = np.random.default_rng(0).integers(0, 2, (64, 4, 4, 1))
  bounds = [float(tf.reduce_mean(model.log_prob(images, num_importance_samples=k, seed=k)))
            for k in (1, 10, 100, 1000)]
  assert bounds == sorted(bounds), bounds
  assert bounds[-1] - bounds[0] > 0.1  # A real gap for a random encoder.
  elbo = float(tf.reduce_mean(model.elbo(images)))
  assert bounds[-1] >= elbo


# ---- training -----------------------------------------------------------------------

def test_kl_warmup_starts_from_the_reconstruction_alone():
  model = models.build("vae", (4, 4, 1), 2, kl_warmup_steps=100, **TINY)
  model.compile(keras.optimizers.Adam(1e-3))  # Builds the optimizer: iterations exists.
  images = np.random.default_rng(0).integers(0, 2, (8, 4, 4, 1))
  out = model({"image": images})
  loss = float(model.compute_loss({"image": images}, y_pred=out, training=True))
  reconstruction = float(model.trackers["reconstruction"].result())
  kl = float(model.trackers["kl"].result())
  assert kl > 0
  assert loss == pytest.approx(-reconstruction, rel=1e-5)
  eval_loss = float(model.compute_loss({"image": images}, y_pred=out, training=False))
  assert eval_loss == pytest.approx(-reconstruction + kl, rel=1e-5)


@pytest.mark.parametrize("name,shape,levels", [("vae", (8, 8, 1), 2),
                                               ("conv_vae", (10, 6, 3), 5),
                                               ("conv_autoencoder", (28, 28, 1), 2),
                                               ("autoencoder", (6, 6, 1), 17)])
def test_overfits_a_few_images_and_round_trips(name, shape, levels, tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, levels, (8,) + shape).astype(np.uint8)
  hparams = dict(latent_dim=4, hidden_dims="64") if "vae" in name else dict(latent_dim=4)
  model = models.build(name, shape, levels, **hparams)
  model.compile(keras.optimizers.Adam(3e-3))
  ds = tf.data.Dataset.from_tensor_slices({"image": images}).batch(8).repeat(60)
  history = model.fit(ds, verbose=0).history
  assert history["loss"][0] > 0
  first = model.evaluate(tf.data.Dataset.from_tensor_slices({"image": images}).batch(8),
                         verbose=0, return_dict=True)
  assert first["loss"] < history["loss"][0] or first["loss"] < 1e-3
  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  np.testing.assert_allclose(loaded.reconstruct(images[:2]), model.reconstruct(images[:2]),
                             rtol=1e-5, atol=1e-5)
  if "vae" in name:
    np.testing.assert_allclose(loaded.log_prob(images[:2], num_importance_samples=5),
                               model.log_prob(images[:2], num_importance_samples=5), rtol=1e-5)
    assert loaded.sample(2, seed=1).shape == (2,) + shape
  assert model.encoder(tf.zeros((1,) + (
      (int(np.prod(shape)),) if model.hparams["architecture"] == "dense" else shape))).shape[-1] \
      == (8 if "vae" in name else 4)


def test_conditional_vae_decodes_by_label():
  model = likelihood_checks.randomize(
      models.build("vae", (4, 4, 1), 2, num_classes=3, **TINY), seed=2)
  z = np.zeros((3, 3), np.float32)
  means = model.decode_mean(z, [0, 1, 2]).numpy()
  assert not np.allclose(means[0], means[1]) and not np.allclose(means[1], means[2])
  samples = model.sample(3, seed=0, labels=[0, 1, 2])
  assert samples.shape == (3, 4, 4, 1)
  with pytest.raises(ValueError, match="class-conditional"):
    model.sample(3, seed=0)


def test_sample_is_a_function_of_codes_and_noise():
  model = likelihood_checks.randomize(models.build("vae", (4, 4, 1), 5, **TINY), seed=3)
  z = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
  noise = np.random.default_rng(1).uniform(size=(4, 4, 4, 1)).astype(np.float32)
  a = model.sample(4, z=z, noise=noise)
  np.testing.assert_array_equal(a, model.sample(4, z=z, noise=noise))
  np.testing.assert_array_equal(model.sample(4, seed=7), model.sample(4, seed=7))
  mean = model.sample(4, z=z, mean=True).numpy()
  np.testing.assert_array_equal(mean, np.round(model.decode_mean(z).numpy()))
  with pytest.raises(ValueError, match="Latent codes must have shape"):
    model.sample(4, z=z[:, :2])


def test_latent_tools():
  model = likelihood_checks.randomize(models.build("vae", (4, 4, 1), 5, **TINY), seed=4)
  images = np.random.default_rng(0).integers(0, 5, (6, 4, 4, 1))
  path = latents.interpolate(model, images[0], images[1], steps=5)
  recon = model.reconstruct(images[:2]).numpy()
  np.testing.assert_allclose(path[[0, -1]], recon, rtol=1e-5, atol=1e-5)
  grid = latents.traversal(model, [2, 0], np.linspace(-2, 2, 4))
  assert grid.shape == (2, 4, 4, 4, 1)
  np.testing.assert_allclose(grid[0, 1], model.decode_mean([[0, 0, -2 + 4 / 3]])[0], atol=1e-5)
  unchanged, edited = latents.edit(model, images, {1: 0.0}, relative=True)
  np.testing.assert_allclose(unchanged, edited)
  _, edited = latents.edit(model, images, {1: 3.0})
  codes = model.features(images).numpy()
  codes[:, 1] = 3.0
  np.testing.assert_allclose(edited, model.decode_mean(codes).numpy(), atol=1e-5)
  with pytest.raises(ValueError, match="outside"):
    latents.edit(model, images, {3: 1.0})
  with pytest.raises(ValueError, match="2-D latent space"):
    latents.manifold(model)
  ds = tf.data.Dataset.from_tensor_slices({"image": images}).batch(3)
  score, _, _ = latents.code_statistics(model, ds)
  q = model.encode(images)
  kl = tfd.kl_divergence(q, model.prior_distribution()).numpy().mean()
  assert score.sum() == pytest.approx(kl, rel=1e-4)  # Per-dimension KLs add up.
  # PCA of the pixels: centred projections, the first with the largest variance.
  components, _ = latents.principal_components(ds)
  assert components.shape == (6, 2)
  np.testing.assert_allclose(components.mean(0), 0.0, atol=1e-5)
  pixels = images.reshape(6, -1).astype(np.float64)
  total = ((pixels - pixels.mean(0)) ** 2).sum()
  assert components.var(0)[0] >= components.var(0)[1]
  assert (components ** 2).sum() <= total + 1e-6


def test_linear_probe_beats_chance_on_real_digits():
  from sklearn import datasets
  digits = datasets.load_digits()
  x, y = digits.data, digits.target
  accuracy = latents.linear_probe(x[:1200], y[:1200], x[1200:], y[1200:], per_class=20)
  assert accuracy > 0.8


def test_train_main_outputs_for_a_2d_vae(tmp_path):
  config = config_lib.TrainConfig.from_flat(model="vae", hparams=dict(latent_dim=2, hidden_dims="32"),
                                 dataset="digits", train_steps=30, batch_size=32,
                                 eval_importance_samples=20, num_samples=8, verbose=0,
                                 mixed_precision="none")  # See test_distributed.
  metrics = train_lib.train_and_evaluate(config, str(tmp_path))
  for key in ("test_nll_nats", "test_neg_elbo_nats", "test_bits_per_dim", "test_kl_nats",
              "test_reconstruction_nats"):
    assert np.isfinite(metrics[key]), key
  # The k-sample bound is tighter than the ELBO.
  assert metrics["test_nll_nats"] < metrics["test_neg_elbo_nats"]
  for name in ("samples.png", "reconstructions.png", "traversal.png", "latent_scatter.png",
               "pca_scatter.png", "manifold.png", "model.keras"):
    assert (tmp_path / name).exists(), name
  saved = json.loads((tmp_path / "metrics.json").read_text())
  assert saved["test_nll_nats"] == pytest.approx(metrics["test_nll_nats"])


def test_train_main_autoencoder_has_no_samples(tmp_path):
  config = config_lib.TrainConfig.from_flat(model="autoencoder", hparams=dict(latent_dim=2),
                                 dataset="digits", train_steps=10, batch_size=32,
                                 num_samples=8, verbose=0, mixed_precision="none")
  metrics = train_lib.train_and_evaluate(config, str(tmp_path))
  assert 0 < metrics["test_reconstruction_mse"] < 1
  assert not os.path.exists(tmp_path / "samples.png")
  for name in ("reconstructions.png", "traversal.png", "latent_scatter.png",
               "pca_scatter.png"):
    assert (tmp_path / name).exists(), name


if __name__ == "__main__":
  raise SystemExit(pytest.main([__file__, "-q"]))
