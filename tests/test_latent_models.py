"""VAEs past the diagonal Gaussian: the IAF posterior, the mixture and VampPrior priors
and categorical latents, each checked against exact log p(x) (quadrature over a 2-D
latent, or a sum over every categorical code), with broken variants that the checks
catch; and the classifier built on a trained encoder."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import likelihood_checks
from tfgen import config as config_lib
from tfgen import distributions
from tfgen import latents
from tfgen import layers
from tfgen import models
from tfgen import scoring
from tfgen import train_lib

IMAGES = likelihood_checks.all_images((2, 2, 1), 2)  # The 16 binary 2x2 images.
CONTINUOUS = {
    "iaf": dict(posterior="iaf", num_flows=2, flow_units=8),
    "mixture": dict(prior="mixture", prior_components=3),
    "vamp": dict(prior="vamp", prior_components=3),
    "iaf_mixture": dict(posterior="iaf", num_flows=2, flow_units=8, prior="mixture",
                        prior_components=3),
}


def _two_d_vae(hparams, seed=1, sigma=2.0, flow_scale=0.2):
  """A random 2-D-latent VAE whose base proposal is N(mu(x), sigma^2) (see test_vae's
  `_one_d_vae`: wider than the posterior, so importance weights have finite variance),
  with random mixture components or pseudo-inputs, and random flows whose steps shrink
  q by sigmoid(s + 2) near 0.88 and bend it by shifts that depend on z (weights of
  `flow_scale`: larger ones shrink q below the posterior's width, and the estimate's
  error is then its variance, not a wrong density)."""
  model = models.build("vae", (2, 2, 1), 2, latent_dim=2, hidden_dims="8", **hparams)
  likelihood_checks.randomize(model, seed=seed, scale=1.5)
  last = model.encoder.layers[-1]
  kernel, bias = last.kernel.numpy(), last.bias.numpy()  # mu [2], s [2], then context.
  kernel[:, :2] /= np.abs(kernel[:, :2]).sum(0)
  kernel[:, 2:4], bias[:2] = 0.0, 0.0
  bias[2:4] = np.log(np.expm1(sigma - 1e-4))  # softplus^-1
  last.kernel.assign(kernel)
  last.bias.assign(bias)
  rng = np.random.default_rng(seed)
  for flow in model.flows:
    flow.set_weights([rng.normal(0, flow_scale / np.sqrt(w.shape[0]) if w.ndim > 1 else
                                 flow_scale, w.shape) for w in flow.get_weights()])
  return model


def _grid(half_width=9.0, points=301):
  axis = np.linspace(-half_width, half_width, points, dtype=np.float32)
  z1, z2 = np.meshgrid(axis, axis, indexing="ij")
  return np.stack([z1.ravel(), z2.ravel()], -1), float(axis[1] - axis[0])  # [G, 2]


def _trapezoid_2d(values, step, points):
  """The 2-D trapezoid rule of `values` `[..., G]` on the `_grid`."""
  shaped = values.reshape(values.shape[:-1] + (points, points))
  return np.trapezoid(np.trapezoid(shaped, dx=step, axis=-1), dx=step, axis=-1)


def _quadrature_log_p(model, points=301):
  """log p(x) = log integral p(x | z) p(z) dz of every 2x2 image, and integral p(z) dz."""
  z, step = _grid(points=points)
  log_prior = model.prior_distribution().log_prob(z).numpy().astype(np.float64)  # [G]
  dist = model.decode(z)
  log_px = np.stack([dist.log_prob(np.broadcast_to(x, (len(z),) + x.shape)).numpy()
                     for x in IMAGES]).astype(np.float64)  # [16, G]
  log_joint = log_px + log_prior
  top = log_joint.max(1, keepdims=True)
  log_p = top[:, 0] + np.log(_trapezoid_2d(np.exp(log_joint - top), step, points))
  return log_p, float(_trapezoid_2d(np.exp(log_prior), step, points))


@pytest.mark.parametrize("name", sorted(CONTINUOUS))
def test_iwae_agrees_with_quadrature_and_bounds_the_elbo(name):
  # Measured with these proposals, k = 50,000, over initial weights of 4 seeds: errors
  # 0.006-0.012 mean, 0.017-0.043 max.
  model = _two_d_vae(CONTINUOUS[name])
  exact, prior_mass = _quadrature_log_p(model)
  assert prior_mass == pytest.approx(1.0, abs=1e-3)  # p(z) is normalized.
  assert np.exp(exact).sum() == pytest.approx(1.0, abs=1e-3)  # So is p(x).
  estimate = model.log_prob(IMAGES, num_importance_samples=50000, seed=3).numpy()
  error = np.abs(estimate - exact)
  assert error.mean() < 0.02 and error.max() < 0.06, (error.mean(), error.max())
  # The ELBO (its expectation: many one-sample estimates) never exceeds log p(x).
  elbo = np.mean([model.elbo(IMAGES, seed=s).numpy() for s in range(200)], axis=0)
  assert np.all(elbo <= exact + 0.02), elbo - exact
  if "iaf" in name:
    _check_flow_density(model)


def _check_flow_density(model):
  """The flow posterior's density: its one-pass log q at its own draws equals TFP's
  log_prob by inversion, and q integrates to one."""
  q = model.encode(IMAGES[5:7])
  # The flow really reshapes q (so these checks are not of an identity).
  assert np.abs(model.features(IMAGES[5:7]).numpy() - q.distribution.mean().numpy()).max() > 0.1
  z, log_q = distributions.sample_with_log_prob(q, 4, seed=tf.constant([1, 2]))
  np.testing.assert_allclose(log_q.numpy(), q.log_prob(z).numpy(), atol=1e-3)
  grid, step = _grid(points=201)
  density = np.exp(q.log_prob(grid[:, None, :]).numpy().astype(np.float64))  # [G, 2]
  np.testing.assert_allclose(_trapezoid_2d(density.T, step, 201), 1.0, atol=1e-3)


def test_quadrature_check_catches_a_wrong_log_determinant(monkeypatch):
  # The broken flow: its one-pass density forgets the Jacobian of each step.
  monkeypatch.setattr(tfp.bijectors.MaskedAutoregressiveFlow, "_inverse_log_det_jacobian",
                      lambda self, y, **kwargs: tf.zeros_like(y[..., 0]))
  model = _two_d_vae(CONTINUOUS["iaf"])
  exact, _ = _quadrature_log_p(model)
  estimate = model.log_prob(IMAGES, num_importance_samples=50000, seed=3).numpy()
  assert np.abs(estimate - exact).mean() > 0.2
  with pytest.raises(AssertionError):
    _check_flow_density(model)


def test_quadrature_check_catches_an_unnormalized_prior(monkeypatch):
  class Unnormalized:  # The mixture prior, off by a constant factor e^0.3.
    def __init__(self, prior):
      self.prior = prior

    def log_prob(self, z):
      return self.prior.log_prob(z) + 0.3

  build = distributions.gaussian_mixture_prior
  monkeypatch.setattr(distributions, "gaussian_mixture_prior",
                      lambda *args: Unnormalized(build(*args)))
  _, prior_mass = _quadrature_log_p(_two_d_vae(CONTINUOUS["mixture"]))
  assert abs(prior_mass - 1.0) > 0.3


@pytest.mark.parametrize("name", ["iaf_mixture", "vamp", "categorical"])
def test_sampler_draws_images_at_the_rate_of_exact_log_p(name):
  # The whole sampler (the prior's codes, then p(x | z)) against exact p(x): quadrature
  # over z, or the sum over every categorical code.
  if name == "categorical":
    model = _categorical_vae()
    p = np.exp(_exact_categorical_log_p(model))
  else:
    model = _two_d_vae(CONTINUOUS[name])
    p = np.exp(_quadrature_log_p(model)[0])
  samples = model.sample(20000, seed=5).numpy()
  counts = likelihood_checks.image_counts(samples, 2)
  assert likelihood_checks.chi_square_p_value(counts, p) > likelihood_checks.ALPHA


def test_sampler_check_catches_mixture_components_drawn_at_equal_rates(monkeypatch):
  # The broken sampler picks every mixture component equally often, whatever its weight.
  model = _two_d_vae(CONTINUOUS["mixture"])
  model.prior_logits.assign([3.0, 0.0, -3.0])
  p = np.exp(_quadrature_log_p(model)[0])
  monkeypatch.setattr(distributions, "inverse_cdf", lambda probs, u: tf.cast(
      tf.floor(u * probs.shape[-1]), tf.int32))
  counts = likelihood_checks.image_counts(model.sample(20000, seed=5).numpy(), 2)
  assert likelihood_checks.chi_square_p_value(counts, p) < likelihood_checks.ALPHA


def test_made_is_autoregressive_and_its_flow_inverts():
  net = layers.AutoregressiveNetwork(4, 12)
  net.build((None, 4), (None, 3))
  rng = np.random.default_rng(0)
  net.set_weights([w + rng.normal(0, 0.5, w.shape) for w in net.get_weights()])
  z = tf.constant(rng.normal(size=(1, 4)), tf.float32)
  context = tf.constant(rng.normal(size=(1, 3)), tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(z)
    shift, log_scale = net(z, context)
    out = tf.concat([shift, log_scale], 0)  # [2, 4]
  jacobian = tape.jacobian(out, z).numpy()[:, :, 0, :]  # [2, 4 (out), 4 (in)]
  # Output d depends on inputs < d only: the Jacobian is strictly lower triangular...
  assert np.all(np.abs(np.triu(jacobian[0])) == 0) and np.all(np.abs(np.triu(jacobian[1])) == 0)
  assert np.abs(np.tril(jacobian[0], -1)).sum() > 0  # ...and not zero.
  bijector = distributions.iaf_bijector([net, net], context)
  z0 = tf.constant(rng.normal(size=(5, 4)), tf.float32)
  np.testing.assert_allclose(bijector.inverse(bijector.forward(z0)).numpy(), z0.numpy(),
                             atol=1e-4)
  # Its log-determinant is the log |det| of the Jacobian, by autodiff.
  with tf.GradientTape() as tape:
    tape.watch(z0)
    y = bijector.forward(z0)
  full = tape.batch_jacobian(y, z0).numpy()  # [5, 4, 4]
  np.testing.assert_allclose(bijector.forward_log_det_jacobian(z0, event_ndims=1).numpy(),
                             np.linalg.slogdet(full)[1], atol=1e-4)


# ---- categorical latents ------------------------------------------------------------

CATEGORICAL = dict(latent="categorical", num_latents=2, num_categories=3)


def _categorical_vae(seed=0):
  """A random categorical VAE whose q(z | x) is far from one-hot (logits scaled down),
  so every code has weight and k = 50,000 importance samples pin log p(x) down (k =
  5000 left errors up to 0.013 mean, 0.05 max, depending on the initial weights)."""
  model = likelihood_checks.randomize(
      models.build("vae", (2, 2, 1), 2, hidden_dims="8", **CATEGORICAL), seed=seed)
  last = model.encoder.layers[-1]
  last.kernel.assign(last.kernel * 0.3)
  last.bias.assign(last.bias * 0.3)
  return model


def _exact_categorical_log_p(model):
  """log p(x) = log sum_z p(x | z) p(z) over all G^N one-hot codes, uniform p(z)."""
  n, g = CATEGORICAL["num_latents"], CATEGORICAL["num_categories"]
  codes = np.array([np.eye(g)[list(np.unravel_index(i, (g,) * n))].ravel()
                    for i in range(g ** n)], np.float32)  # [G^N, N*G]
  dist = model.decode(codes)
  log_px = np.stack([dist.log_prob(np.broadcast_to(x, (len(codes),) + x.shape)).numpy()
                     for x in IMAGES]).astype(np.float64)  # [16, G^N]
  top = log_px.max(1, keepdims=True)
  return top[:, 0] + np.log(np.exp(log_px - top).sum(1)) - n * np.log(g)


def test_categorical_vae_iwae_equals_the_exact_sum():
  model = _categorical_vae()
  assert model.latent_dim == 6
  exact = _exact_categorical_log_p(model)
  assert np.exp(exact).sum() == pytest.approx(1.0, abs=1e-5)  # Normalized decoders.
  estimate = model.log_prob(IMAGES, num_importance_samples=50000, seed=1).numpy()
  error = np.abs(estimate - exact)
  assert error.mean() < 0.01 and error.max() < 0.03, (error.mean(), error.max())
  elbo = np.mean([model.elbo(IMAGES, seed=s).numpy() for s in range(200)], axis=0)
  assert np.all(elbo <= exact + 0.02), elbo - exact


def test_categorical_check_catches_a_prior_that_is_not_uniform(monkeypatch):
  monkeypatch.setattr(distributions, "uniform_categorical_prior", lambda n, g: (
      distributions.tfd.Independent(distributions.tfd.OneHotCategorical(
          logits=tf.constant([[2.0] + [0.0] * (g - 1)] * n)), 1)))
  model = _categorical_vae()
  estimate = model.log_prob(IMAGES, num_importance_samples=50000, seed=1).numpy()
  assert np.abs(estimate - _exact_categorical_log_p(model)).mean() > 0.05


def test_categorical_kl_is_the_discrete_kl_to_uniform():
  model = _categorical_vae()
  outputs = model({"image": tf.constant(IMAGES)})
  logits = outputs["posterior"].numpy().reshape(16, 2, 3)
  q = np.exp(logits - logits.max(-1, keepdims=True))
  q /= q.sum(-1, keepdims=True)
  expected = (q * np.log(q)).sum((1, 2)) + 2 * np.log(3.0)
  np.testing.assert_allclose(model._kl(outputs).numpy(), expected, rtol=1e-5, atol=1e-6)
  # Training sees relaxed codes on the simplex; evaluation, sampling and scoring see
  # one-hot codes, so `evaluate`'s ELBO is the discrete model's.
  relaxed = model({"image": tf.constant(IMAGES)}, training=True)["z"].numpy()
  relaxed = relaxed.reshape(16, 2, 3)
  assert np.allclose(relaxed.sum(-1), 1.0, atol=1e-5) and (relaxed.max(-1) < 1 - 1e-6).any()
  z = outputs["z"].numpy().reshape(16, 2, 3)
  np.testing.assert_array_equal(np.sort(z, -1), np.broadcast_to([0.0, 0.0, 1.0], z.shape))
  assert set(np.unique(model.features(IMAGES).numpy().reshape(16, 2, 3).sum(-1).round(4))) == {
      1.0}


# ---- every variant through the public API ---------------------------------------------

@pytest.mark.parametrize("hparams", [dict(posterior="iaf", num_flows=1, flow_units=8),
                                     dict(prior="mixture", prior_components=4),
                                     dict(prior="vamp", prior_components=4),
                                     CATEGORICAL])
def test_variants_train_sample_complete_and_save(hparams, tmp_path):
  model = models.build("vae", (4, 4, 1), 2, latent_dim=2, hidden_dims="16", **hparams)
  # Four images, eight times each: codes of any kind can tell them apart.
  images = np.tile(np.random.default_rng(0).integers(0, 2, (4, 4, 4, 1)), (8, 1, 1, 1))
  images = images.astype(np.int32)
  model.compile(keras.optimizers.Adam(1e-2))
  before = float(tf.reduce_mean(model.log_prob(images, num_importance_samples=20)))
  # 80 steps in 4 epochs (Keras's cost per epoch is most of a 2-step epoch's time).
  model.fit(np.tile(images, (10, 1, 1, 1)), batch_size=16, epochs=4, verbose=0)
  after = float(tf.reduce_mean(model.log_prob(images, num_importance_samples=20)))
  assert after > before + 1.0, (before, after)
  np.testing.assert_array_equal(model.sample(5, seed=2), model.sample(5, seed=2))
  assert model.sample(5, seed=2).numpy().max() <= 1
  mask = np.zeros((2, 4, 4, 1), bool)
  mask[:, :2] = True
  completed = model.complete(images[:2], mask, num_samples=2, seed=0, steps=4).numpy()
  np.testing.assert_array_equal(completed[:, :, :2], np.broadcast_to(images[:2, :2],
                                                                     (2, 2, 2, 4, 1)))
  path = str(tmp_path / "m.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  np.testing.assert_allclose(loaded.log_prob(images[:4], num_importance_samples=20).numpy(),
                             model.log_prob(images[:4], num_importance_samples=20).numpy(),
                             rtol=1e-5)


def test_mixture_prior_codes_pick_components_by_inverse_cdf():
  model = likelihood_checks.randomize(models.build(
      "vae", (2, 2, 1), 2, latent_dim=2, hidden_dims="8", prior="mixture",
      prior_components=3), seed=2)
  prior = model.prior_distribution()
  probs = prior.mixture_distribution.probs_parameter().numpy()
  locs = prior.components_distribution.mean().numpy()
  scales = prior.components_distribution.stddev().numpy()
  rng = np.random.default_rng(0)
  z = rng.standard_normal((500, 2)).astype(np.float32)
  u = rng.uniform(size=500).astype(np.float32)
  k = np.searchsorted(np.cumsum(probs), u)
  codes = model._prior_codes({"z": z, "component": u}).numpy()
  np.testing.assert_allclose(codes, locs[k] + scales[k] * z, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hparams,message", [
    (dict(posterior="flow"), "posterior must be one of"),
    (dict(prior="vamp", posterior="iaf"), "needs the Gaussian posterior"),
    (dict(latent="categorical", prior="mixture"), "has its own posterior"),
    (dict(num_categories=1, latent="categorical"), "at least 2"),
    (dict(temperature=0.0), "temperature must be positive"),
    (dict(num_flows=0, posterior="iaf"), "num_flows must be positive"),
])
def test_bad_latent_options_are_refused(hparams, message):
  with pytest.raises(ValueError, match=message):
    models.build("vae", (4, 4, 1), 2, **hparams)


def test_vamp_prior_needs_an_unconditional_vae():
  with pytest.raises(ValueError, match="unconditional"):
    models.build("vae", (4, 4, 1), 2, num_classes=3, prior="vamp")


def test_latent_tools_rank_dimensions_by_variance_without_a_per_dimension_kl():
  model = models.build("vae", (4, 4, 1), 2, latent_dim=3, hidden_dims="16", prior="mixture")
  images = np.random.default_rng(0).integers(0, 2, (20, 4, 4, 1)).astype(np.int32)
  dataset = tf.data.Dataset.from_tensor_slices({"image": images}).batch(10)
  score, mean, std = latents.code_statistics(model, dataset)
  np.testing.assert_allclose(score, std ** 2, rtol=1e-4)
  with pytest.raises(ValueError, match="splits over code dimensions"):
    model.dimension_kl(model.encode(images))
  pictures, _, _ = latents.default_traversal(model, dataset, max_rows=2, steps=3)
  assert pictures.shape == (2, 3, 4, 4, 1)


def test_train_main_runs_a_conv_vae_with_an_iaf_and_a_mixture_prior(tmp_path):
  config = config_lib.TrainConfig.from_flat(
      model="conv_vae", hparams=dict(latent_dim=2, hidden_dims="32", conv_filters="8",
                                     posterior="iaf", flow_units=16, prior="mixture",
                                     prior_components=5),
      dataset="digits", train_steps=20, batch_size=32, eval_importance_samples=10,
      num_samples=4, verbose=0, mixed_precision="none")  # See test_distributed.
  metrics = train_lib.train_and_evaluate(config, str(tmp_path))
  assert metrics["test_nll_nats"] < metrics["test_neg_elbo_nats"]
  assert "active_latent_dims" not in metrics  # No per-dimension KL to count them by.
  for name in ("samples.png", "traversal.png", "latent_scatter.png", "pca_scatter.png",
               "manifold.png", "completions.png"):
    assert (tmp_path / name).exists(), name
  model = keras.models.load_model(str(tmp_path / "model.keras"))
  assert model.hparams["posterior"] == "iaf" and model.hparams["prior"] == "mixture"
  images = np.zeros((3, 8, 8, 1), np.int32)
  np.testing.assert_allclose(  # Outlier scores: the same importance-weighted estimate.
      scoring.log_prob(model, images, num_importance_samples=10, seed=1),
      model.log_prob(images, num_importance_samples=10, seed=1).numpy(), rtol=1e-5)


# ---- features for a supervised model --------------------------------------------------

def test_classifier_from_a_trained_encoder(tmp_path):
  from sklearn import datasets
  digits = datasets.load_digits()
  images = np.round(digits.images / 16.0).astype(np.int32)[..., None]  # Binary 8x8.
  labels = digits.target.astype(np.int32)
  vae = models.build("vae", (8, 8, 1), 2, latent_dim=8, hidden_dims="64")
  vae.compile(keras.optimizers.Adam(3e-3))
  # Few long epochs rather than many short ones: Keras's cost per epoch is most of a
  # short epoch's time. The same 225 (here) and 500 (below) steps.
  vae.fit(np.tile(images[:1500], (5, 1, 1, 1)), batch_size=100, epochs=3, verbose=0)
  encoder_weights = [w.copy() for w in vae.encoder.get_weights()]
  rng = np.random.default_rng(0)
  few = np.concatenate([rng.choice(np.flatnonzero(labels[:1500] == k), 10, replace=False)
                        for k in range(10)])
  accuracies = {}
  for fine_tune in (False, True):
    keras.utils.set_random_seed(0)
    clf = latents.classifier(vae, 10, fine_tune=fine_tune)
    body = [w.copy() for w in clf.get_layer("encoder").get_weights()]
    clf.fit(images[np.tile(few, 20)], labels[np.tile(few, 20)], batch_size=20, epochs=5,
            verbose=0)
    accuracies[fine_tune] = clf.evaluate(images[1500:], labels[1500:], verbose=0,
                                         return_dict=True)["accuracy"]
    moved = [not np.array_equal(a, b) for a, b in zip(
        body, clf.get_layer("encoder").get_weights())]
    assert any(moved) == fine_tune  # Frozen means frozen; fine-tuning trains the body.
    assert clf.predict(images[:3], verbose=0).shape == (3, 10)
  # The classifier trains a copy: the VAE's own encoder is untouched.
  for a, b in zip(encoder_weights, vae.encoder.get_weights()):
    np.testing.assert_array_equal(a, b)
  # Chance is 0.1; measured 0.45 frozen (a linear layer on 8 posterior means), 0.70
  # fine-tuned.
  assert accuracies[False] > 0.35 and accuracies[True] > 0.55, accuracies


def test_classifier_refuses_a_conditional_model():
  vae = models.build("vae", (4, 4, 1), 2, num_classes=3, latent_dim=2, hidden_dims="8")
  with pytest.raises(ValueError, match="class-conditional"):
    latents.classifier(vae, 3)
