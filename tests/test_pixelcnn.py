"""PixelCNN: causality, normalization, sampling, training, serialization, API errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import likelihood_checks as checks
from tfgen import layers
from tfgen import models

TINY = dict(hidden_dim=6, num_blocks=2, output_dim=12, input_kernel_size=3, kernel_size=3)


@pytest.mark.parametrize("shape,wrong", [
    ((5, 5, 1), "B"),  # mask B on the first layer: a pixel sees itself
    ((4, 4, 3), "B"),
])
def test_causality_check_fails_on_wrong_first_mask(shape, wrong):
  model = models.build("pixelcnn", shape, 4, **TINY)
  conv = model.input_conv
  conv.mask = layers.causal_mask(conv.kernel_size, shape[-1], conv.filters, wrong, shape[-1])
  leaks = checks.causality_leaks(model, checks.random_images(model))
  assert any(t == s for t, s in leaks)


def test_causality_check_fails_on_colour_blind_mask():
  # Mask-B layers built for grayscale on an RGB model: the R features read the G and B
  # features of the same pixel, which have seen R (and G).
  model = checks.randomize(models.build("pixelcnn", (3, 3, 3), 4, **TINY))
  convs = [model.input_conv, *model.output_convs] + [c for block in model.blocks for c in block]
  for layer in convs:
    if layer.mask_type == "B":
      layer.mask = layers.causal_mask(layer.kernel_size, layer.mask.shape[2], layer.filters,
                                      layer.mask_type, num_colors=1)
  leaks = checks.causality_leaks(model, checks.random_images(model))
  assert any(s > t for t, s in leaks)


def test_normalization_check_fails_on_leaky_model():
  # Mask B on the first layer: each pixel's logits see the pixel itself. The total of a
  # leaky model can land near 1 by chance for one draw of weights, so take the worst
  # of three draws.
  deviations = []
  for seed in range(3):
    model = checks.randomize(models.build("pixelcnn", (2, 2, 1), 3, **TINY), seed=seed)
    conv = model.input_conv
    conv.mask = layers.causal_mask(conv.kernel_size, 1, conv.filters, "B", 1)
    deviations.append(abs(checks.total_probability(model) - 1.0))
  assert max(deviations) > 1e-2, deviations


def test_sampler_check_fails_on_a_sampler_that_draws_uniformly_a_fifth_of_the_time():
  # What a total-variation bound of 5 standard deviations let through: 80% correct draws,
  # 20% uniform images.
  model = checks.randomize(models.build("pixelcnn", (2, 2, 1), 2, **TINY), seed=2)
  correct = model.sample(3200, seed=3, fast=False).numpy()
  uniform = np.random.default_rng(3).integers(0, 2, (800, 2, 2, 1))
  every = checks.all_images(model.image_shape, 2)
  p = np.exp(model.log_prob(every).numpy().astype(np.float64))
  counts = checks.image_counts(np.concatenate([correct, uniform]), 2)
  assert checks.chi_square_p_value(counts, p) < checks.ALPHA
  assert checks.chi_square_p_value(checks.image_counts(
      model.sample(4000, seed=4, fast=False).numpy(), 2), p) > checks.ALPHA


def test_sampler_check_fails_on_a_sampler_that_ignores_the_model(monkeypatch):
  model = checks.randomize(models.build("pixelcnn", (2, 2, 1), 2, **TINY), seed=2)
  uniform = lambda params, channel, u, pixel_levels=None: tf.cast(u * 2, tf.int32)
  monkeypatch.setattr(model.head, "quantile", uniform)
  p_value = checks.sampler_p_value(model, 4000, seed=3, fast=False)
  assert p_value < checks.ALPHA, p_value


def test_sample_shapes_range_and_seed():
  model = models.build("pixelcnn", (4, 3, 3), 5, **TINY)
  a = model.sample(3, seed=7).numpy()
  assert a.shape == (3, 4, 3, 3) and a.dtype == np.int32
  assert a.min() >= 0 and a.max() < 5
  np.testing.assert_array_equal(a, model.sample(3, seed=7).numpy())
  np.testing.assert_array_equal(a, model.sample(3, seed=7, progress=True).numpy())
  assert not np.array_equal(a, model.sample(3, seed=8).numpy())


def test_sample_uses_noise_by_inverse_cdf():
  model = models.build("pixelcnn", (2, 2, 1), 4, **TINY)
  zeros = model.sample(2, noise=np.zeros((2, 2, 2, 1), np.float32)).numpy()
  assert (zeros == 0).all()  # u = 0 is below every CDF value: the lowest level.
  top = model.sample(2, noise=np.full((2, 2, 2, 1), 0.999999, np.float32)).numpy()
  assert (top == 3).all()


def test_conditional_sampling_uses_label():
  model = models.build("pixelcnn", (4, 4, 1), 4, num_classes=3, **TINY)
  # Make the class bias decisive: class k pushes every logit towards level k.
  for layer in model.class_biases:
    layer.projection.embeddings.assign(np.zeros(layer.projection.embeddings.shape))
  last = model.class_biases[-1].projection.embeddings
  last.assign(np.random.default_rng(0).normal(0, 3, last.shape))
  noise = np.random.default_rng(1).uniform(size=(6, 4, 4, 1)).astype(np.float32)
  a = model.sample(6, labels=np.zeros(6, np.int32), noise=noise).numpy()
  b = model.sample(6, labels=np.full(6, 2, np.int32), noise=noise).numpy()
  assert not np.array_equal(a, b)
  with pytest.raises(ValueError, match="class-conditional"):
    model.sample(2)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
    model.sample(2, labels=[0, 3])


def test_overfits_a_few_images():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 2, (4, 6, 6, 1)).astype(np.uint8)
  model = models.build("pixelcnn", (6, 6, 1), 2, hidden_dim=16, num_blocks=2, output_dim=32,
                       kernel_size=3)
  model.compile(keras.optimizers.Adam(1e-2))
  before = model.evaluate(images, batch_size=4, verbose=0, return_dict=True)["bits_per_dim"]
  # One epoch of the same batch repeated: Keras's per-epoch overhead once.
  model.fit(np.tile(images, (250, 1, 1, 1)), batch_size=4, epochs=1, shuffle=False, verbose=0)
  after = model.evaluate(images, batch_size=4, verbose=0, return_dict=True)["bits_per_dim"]
  assert before > 0.8 and after < 0.1 * before, (before, after)


def test_fit_logs_nll_and_bits_per_dim():
  model = models.build("pixelcnn", (4, 4, 1), 3, **TINY)
  model.compile()
  x = np.random.default_rng(0).integers(0, 3, (8, 4, 4, 1)).astype(np.uint8)
  history = model.fit({"image": x, "label": np.zeros(8, np.int32)}, batch_size=4, verbose=0)
  logs = history.history
  assert {"loss", "nll", "bits_per_dim"} <= set(logs)
  assert logs["bits_per_dim"][0] == pytest.approx(logs["nll"][0] / (16 * np.log(2)), rel=1e-5)
  result = model.evaluate(x, batch_size=4, verbose=0, return_dict=True)
  expected = -model.log_prob(x).numpy().mean()
  assert result["nll"] == pytest.approx(expected, rel=1e-5)


def test_log_prob_shape_and_gradient_of_masked_weights_is_zero():
  model = models.build("pixelcnn", (3, 3, 1), 2, **TINY)
  x = np.ones((2, 3, 3, 1), np.int32)
  assert model.log_prob(x).shape == (2,)
  with tf.GradientTape() as tape:
    loss = -tf.reduce_sum(model.distribution({"image": x}).log_prob(x))
  grad = tape.gradient(loss, model.input_conv.kernel).numpy()
  assert (grad[model.input_conv.mask == 0] == 0).all()


def test_build_errors_list_valid_choices():
  with pytest.raises(ValueError, match="Available models: .*pixelcnn"):
    models.build("pixelcnnn", (8, 8, 1), 2)
  with pytest.raises(ValueError, match="Valid hyper-parameters .*hidden_dim"):
    models.build("pixelcnn", (8, 8, 1), 2, hiden_dim=3)
  with pytest.raises(ValueError, match="must be a int"):
    models.build("pixelcnn", (8, 8, 1), 2, hidden_dim=3.5)
  with pytest.raises(ValueError, match="must be positive"):
    models.build("pixelcnn", (8, 8, 1), 2, num_blocks=0)
  with pytest.raises(ValueError, match="num_levels must be at least 2"):
    models.build("pixelcnn", (8, 8, 1), 1)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__, "-q"]))
