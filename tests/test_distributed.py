"""MirroredStrategy over two logical CPU devices matches one device, step for step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import test_contract as contract
from tfgen import config as config_lib
from tfgen import data as data_lib
from tfgen import models
from tfgen import precision
from tfgen import train_lib
from tfgen.models import api

TINY = dict(hidden_dim=6, num_blocks=1, output_dim=12, input_kernel_size=3, kernel_size=3)


class _UnscaledLossPixelCNN(models.PixelCNN):
  """The classic mistake: a plain mean NLL, which each replica's gradient then doubles."""

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    images = x["image"]
    return -tf.reduce_mean(self.head.image_distribution(y_pred).log_prob(
        tf.cast(images, tf.int32)))


def _mean_code(cls):
  """`cls` (a VAE) training on the posterior mean: replica parity needs the same
  arithmetic on one and two devices, and fresh noise per replica would differ. The loss
  (reconstruction + KL through compute_loss) is the VAE's own."""

  class MeanCode(cls):

    def call(self, inputs, training=False):
      out = super().call(inputs, training)
      mean, _ = tf.split(out["posterior"], 2, axis=-1)
      return dict(out, z=mean, likelihood=self._decoder_params(mean, self._labels(inputs)))

  return MeanCode


def _parity_case(name):
  """The class to train for family `name`, and the step logs that must agree."""
  cls = models.model_class(name)
  if api.implements(cls, api.VariationalModel):
    return _mean_code(cls), ("loss", "neg_elbo", "kl")
  if api.implements(cls, api.LikelihoodModel):
    return cls, ("loss", "nll", "bits_per_dim")
  return cls, ("loss", "reconstruction_mse")


def _train(strategy, cls, weights, images, labels, hparams=TINY):
  with strategy.scope():
    model = cls((5, 5, 1), 3, num_classes=4, **hparams)
    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
  ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels}).batch(8)
  history = model.fit(ds, epochs=1, verbose=0)
  return history.history, model.get_weights()


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 3, (16, 5, 5, 1)).astype(np.uint8)
  labels = rng.integers(0, 4, (16,)).astype(np.int32)
  return images, labels


def _strategies():
  # The library's own factory: with conftest's two logical CPUs, "mirrored" has two
  # replicas. (Strategies are shared per process; see train_lib.make_strategy.)
  mirrored = train_lib.make_strategy("mirrored")
  assert mirrored.num_replicas_in_sync == 2, "conftest.py should split the CPU in two"
  return train_lib.make_strategy("one_device"), mirrored


@pytest.mark.parametrize("name", models.available())
def test_two_replicas_match_one_device(name, batch):
  # Every family (the shared tiny configurations, FAMILIES below).
  cls, keys = _parity_case(name)
  hparams = FAMILIES[name]
  one, two = _strategies()
  weights = cls((5, 5, 1), 3, num_classes=4, **hparams).get_weights()
  logs_one, w_one = _train(one, cls, weights, *batch, hparams=hparams)
  logs_two, w_two = _train(two, cls, weights, *batch, hparams=hparams)
  for key in keys:
    assert logs_two[key][0] == pytest.approx(logs_one[key][0], rel=1e-5), key
  for a, b in zip(w_one, w_two):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert any(not np.allclose(a, w) for a, w in zip(w_one, weights))  # It did train.


def test_parity_check_catches_unscaled_loss(batch):
  one, two = _strategies()
  weights = models.PixelCNN((5, 5, 1), 3, num_classes=4, **TINY).get_weights()
  _, w_one = _train(one, _UnscaledLossPixelCNN, weights, *batch)
  _, w_two = _train(two, _UnscaledLossPixelCNN, weights, *batch)
  assert not all(np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(w_one, w_two))


@pytest.mark.parametrize("policy,classes", [("mixed_bfloat16", None), ("mixed_float16", 3)])
def test_mixed_precision_keeps_the_likelihood_in_float32(policy, classes):
  from tfgen import data
  info = data.DatasetInfo("tiny", (5, 5, 1), 3, classes, {"train": 8})
  conditional = classes is not None
  mixed = train_lib.build_model(config_lib.TrainConfig.from_flat(
      hparams=dict(TINY), mixed_precision=policy, conditional=conditional), info)
  assert keras.mixed_precision.global_policy().name == "float32"  # Restored after build.
  assert mixed.input_conv.compute_dtype == policy.split("_")[1]
  assert mixed.output_convs[-1].compute_dtype == "float32"
  exact = train_lib.build_model(config_lib.TrainConfig.from_flat(
      hparams=dict(TINY), conditional=conditional), info)
  exact.set_weights(mixed.get_weights())
  x = np.random.default_rng(0).integers(0, 3, (8, 5, 5, 1)).astype(np.uint8)
  y = None if classes is None else np.arange(8) % classes
  log_p = mixed.log_prob(x, y)
  np.testing.assert_allclose(log_p, exact.log_prob(x, y), rtol=2e-2)
  mixed.compile()
  inputs = {"image": x} if y is None else {"image": x, "label": y}
  history = mixed.fit(inputs, batch_size=4, epochs=2, verbose=0).history
  assert np.isfinite(history["loss"]).all()
  labels = None if classes is None else [0, 2]
  for fast in (True, False):
    samples = mixed.sample(2, seed=0, labels=labels, fast=fast).numpy()
    assert samples.shape == (2, 5, 5, 1) and samples.min() >= 0 and samples.max() < 3


# The shared tiny configurations, with one recurrent layer and two PixelCNN++ scales.
FAMILIES = {name: dict(contract.TINY[name]) for name in contract.TINY}
FAMILIES["pixelcnn_pp"].update(num_scales=2, num_mixtures=2)
FAMILIES["row_lstm"].update(num_layers=1)
FAMILIES["diagonal_bilstm"].update(num_layers=1)


def _build_under(policy, name, classes):
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(policy)
  try:
    return models.build(name, (8, 8, 1), 2, num_classes=classes, **FAMILIES[name])
  finally:
    keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("classes", [None, 3])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_trains_in_bfloat16_with_a_float32_loss(name, classes):
  # The auto policy is bf16 on AVX512_BF16 machines and newer GPUs, float16 on older
  # GPUs: every family, with and without classes, must build in both and train in bf16.
  assert sorted(FAMILIES) == models.available()
  _build_under("mixed_float16", name, classes)  # Building runs the model once.
  model = _build_under("mixed_bfloat16", name, classes)
  model.compile(keras.optimizers.Adam(1e-3))
  x = np.random.default_rng(0).integers(0, 2, (4, 8, 8, 1)).astype(np.uint8)
  inputs = {"image": x} if classes is None else {"image": x, "label": np.arange(4) % 3}
  logs = model.train_on_batch(inputs, return_dict=True)
  assert np.isfinite(logs["loss"])
  loss = model.compute_loss(inputs, y_pred=model(inputs))
  assert loss.dtype == tf.float32


# ---- the auto policy ----------------------------------------------------------------


@pytest.mark.parametrize("flags,capabilities,expected", [
    ({"avx512f", "avx512_bf16"}, [], "mixed_bfloat16"),
    ({"avx512f", "amx_bf16"}, [], "mixed_bfloat16"),
    ({"avx512f", "avx2"}, [], "float32"),
    (set(), [], "float32"),
    ({"avx512_bf16"}, [(8, 0), (9, 0)], "mixed_bfloat16"),
    ({"avx512_bf16"}, [(7, 5)], "mixed_float16"),
    ({"avx512_bf16"}, [(8, 6), (7, 0)], "mixed_float16"),  # The slowest GPU decides.
    ({"avx512_bf16"}, [(6, 1)], "float32")])
def test_auto_policy_follows_the_hardware(flags, capabilities, expected):
  assert precision.auto_policy(flags, capabilities) == expected


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
  assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "avx512f", "avx512_bf16"}
  assert precision.cpu_flags(str(tmp_path / "missing")) == set()


def test_use_sets_the_global_policy_and_resolve_refuses_unknown_names():
  try:
    assert precision.use("mixed_bfloat16") == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert precision.use("none") == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"
    assert precision.resolve("auto") == precision.auto_policy()
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
      precision.resolve("bfloat16")
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_a_mixed_run_evaluates_and_saves_in_float32(tmp_path):
  # Training in bf16; the saved model, the metrics and the test NLL are float32's.
  config = config_lib.TrainConfig.from_flat(hparams=dict(TINY), dataset="digits", train_steps=2,
                                 batch_size=8, num_samples=0, verbose=0,
                                 mixed_precision="mixed_bfloat16")
  metrics = train_lib.train_and_evaluate(config, str(tmp_path))
  assert metrics["precision"] == "mixed_bfloat16"
  saved = keras.models.load_model(str(tmp_path / "model.keras"))
  assert saved.dtype_policy.name == "float32" and saved.input_conv.compute_dtype == "float32"
  assert int(saved.optimizer.iterations.numpy()) == 2  # The trained optimizer came along.
  data = data_lib.load_config(config.data)
  exact = saved.test_metrics(data.dataset("test", 256))
  assert exact["nll_nats"] == pytest.approx(metrics["test_nll_nats"], rel=1e-6)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__, "-q"]))
