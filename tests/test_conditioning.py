"""Conditioning on a vector: p(x | h) for any float h `[B, D]`, through the label path.

Every autoregressive model adds the conditioning V^T y inside its layers
(`layers.ConditionBias`). A class label is the one-hot case of that term; these tests
check the vector case is the same path (weights carry over exactly), keeps causality,
is exact in the cached samplers and the exported ones, really steers samples after
`model.fit`, and refuses wrong inputs with a message.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import likelihood_checks as checks
import test_contract as contract
from export import export_lib
from tfgen import models

# The shared tiny configurations of the autoregressive families; PixelCNN++ with two
# scales, so the condition also reaches its down- and up-sampling passes.
TINY = {name: dict(contract.TINY[name]) for name in contract.EXACT}
TINY["pixelcnn_pp"].update(num_scales=2, num_mixtures=2)
SHAPE, LEVELS, DIM = (4, 4, 3), 3, 3


def _build(name, seed=0, **kwargs):
  return checks.randomize(models.build(name, SHAPE, LEVELS, **kwargs, **TINY[name]),
                          seed=seed, scale=0.7)


def _images(num, seed=0):
  return np.random.default_rng(seed).integers(0, LEVELS, (num,) + SHAPE).astype(np.int32)


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_one_hot_vector_is_the_label_with_the_same_weights(name):
  # V^T onehot(y) is row y of V: a vector model holding the label model's weights
  # must give identical likelihoods. Fails if the vector goes anywhere else.
  labelled = _build(name, num_classes=DIM)
  vector = models.build(name, SHAPE, LEVELS, condition_dim=DIM, **TINY[name])
  vector.set_weights(labelled.get_weights())
  images, labels = _images(6), np.arange(6) % DIM
  np.testing.assert_allclose(
      vector.log_prob(images, condition=np.eye(DIM, dtype=np.float32)[labels]).numpy(),
      labelled.log_prob(images, labels).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(TINY))
def test_the_condition_changes_the_likelihood_and_keeps_causality(name):
  model = _build(name, condition_dim=DIM)
  images = _images(2)
  a = model.log_prob(images, condition=[1.0, -0.5, 2.0]).numpy()
  b = model.log_prob(images, condition=[0.0, 0.0, 0.0]).numpy()
  assert np.all(np.abs(a - b) > 1e-3)
  leaks = (checks.pixel_causality_leaks if name == "pixelcnn_pp" else checks.causality_leaks)
  assert not leaks(model, _images(1, seed=3)[0], condition=[1.0, -0.5, 2.0])


@pytest.mark.parametrize("name", ["pixelcnn", "gated_pixelcnn", "row_lstm"])
def test_cached_sampler_is_exact_with_a_condition_vector(name):
  model = _build(name, condition_dim=DIM)
  condition = np.random.default_rng(1).normal(size=(3, DIM)).astype(np.float32)
  noise = np.random.default_rng(2).uniform(size=(3,) + SHAPE).astype(np.float32)
  fast = model.sample(3, noise=noise, condition=condition, fast=True).numpy()
  naive = model.sample(3, noise=noise, condition=condition, fast=False).numpy()
  np.testing.assert_array_equal(fast, naive)


def test_fit_on_a_condition_dataset_steers_the_samples(tmp_path):
  # Two image kinds, told apart only by the vector: after fit, sampling with each
  # vector must draw its kind; a model that ignored h would draw both half the time.
  shape = (3, 3, 1)
  model = models.build("gated_pixelcnn", shape, 2, condition_dim=2, **TINY["gated_pixelcnn"])
  n = 64
  kind = np.arange(n) % 2
  images = np.broadcast_to(kind[:, None, None, None], (n,) + shape).astype(np.uint8)
  condition = np.stack([kind, 1 - kind], -1).astype(np.float32) * 2.0 - 1.0
  data = tf.data.Dataset.from_tensor_slices({"image": images, "condition": condition})
  model.compile(optimizer=keras.optimizers.Adam(0.05))
  model.fit(data.shuffle(n, seed=0).batch(16).repeat(), steps_per_epoch=60, epochs=1,
            verbose=0)
  for k in (0, 1):
    vec = np.array([k, 1 - k], np.float32) * 2.0 - 1.0
    samples = model.sample(20, seed=k, condition=vec).numpy()
    assert (samples == k).mean() > 0.95, (k, (samples == k).mean())
  # Round trip through .keras keeps the conditioning and the likelihoods.
  path = str(tmp_path / "m.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  assert loaded.condition_dim == 2
  np.testing.assert_allclose(loaded.log_prob(images[:4], condition=condition[:4]).numpy(),
                             model.log_prob(images[:4], condition=condition[:4]).numpy(),
                             rtol=1e-6)


def test_exported_samplers_take_the_condition(tmp_path):
  model = _build("gated_pixelcnn", condition_dim=DIM)
  meta = export_lib.export(model, str(tmp_path), quantize=["none"], batch_size=2)
  assert meta["condition_dim"] == DIM
  assert meta["tflite"]["none"]["inputs"]["condition"]["shape"] == [2, DIM]
  noise = np.random.default_rng(4).uniform(size=(2,) + SHAPE).astype(np.float32)
  condition = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], np.float32)
  expected = model.sample(2, noise=noise, condition=condition).numpy()
  from ai_edge_litert import interpreter as litert
  runner = litert.Interpreter(
      model_path=str(tmp_path / "sampler_float32.tflite")).get_signature_runner("sample")
  np.testing.assert_array_equal(runner(noise=noise, condition=condition)["levels"], expected)
  saved = tf.saved_model.load(str(tmp_path / "saved_model")).signatures
  out = saved["sample"](noise=tf.constant(noise), condition=tf.constant(condition))
  np.testing.assert_array_equal(out["levels"].numpy(), expected)
  lp = saved["log_prob"](images=tf.constant(expected), condition=tf.constant(condition))
  np.testing.assert_allclose(lp["log_prob_nats"].numpy(),
                             model.log_prob(expected, condition=condition).numpy(), rtol=1e-4)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"condition must have shape"):
    saved["sample"](noise=tf.constant(noise), condition=tf.zeros([2, DIM + 1]))


@pytest.mark.parametrize("call,message", [
    (lambda m: m.log_prob(_images(2)), r"pass condition=\.\.\., floats of shape \(2, 3\)"),
    (lambda m: m.log_prob(_images(2), labels=[0, 1]), r"conditioned on a vector; pass"),
    (lambda m: m.sample(2, condition=np.zeros((2, 4))), r"condition must have shape \(2, 3\)"),
    (lambda m: m.sample(2, condition=[np.nan, 0.0, 0.0]), r"NaN or inf"),
    (lambda m: m.sample(2, condition=np.array(["a", "b", "c"])), r"must hold numbers"),
])
def test_wrong_conditions_are_refused_with_a_message(call, message):
  model = models.build("gated_pixelcnn", SHAPE, LEVELS, condition_dim=DIM,
                       **TINY["gated_pixelcnn"])
  with pytest.raises(ValueError, match=message):
    call(model)


def test_condition_dim_is_refused_where_it_cannot_work():
  unconditional = models.build("gated_pixelcnn", SHAPE, LEVELS, **TINY["gated_pixelcnn"])
  with pytest.raises(ValueError, match="takes no condition vector"):
    unconditional.log_prob(_images(1), condition=[1.0])
  with pytest.raises(ValueError, match="not both"):
    models.build("pixelcnn", SHAPE, LEVELS, num_classes=2, condition_dim=2, **TINY["pixelcnn"])
  with pytest.raises(ValueError, match="cannot be conditioned on a vector"):
    models.build("vae", (4, 4, 1), 2, condition_dim=2)
