"""The contract every registered family meets: one suite over `tfgen.models.available()`.

Each check runs for every family whose declared capabilities (`tfgen.models.api`) it
concerns; a family registered without a tiny configuration in `TINY` fails the first
test. The family files keep only what is particular to a family: its own broken
variants (each check here is shown to fail on one there or in `likelihood_checks`
users), its architecture's properties, its training paths.

- save and load: the same class, configuration, likelihoods, samples, reconstructions;
- causality (autoregressive families): the parameters of each subpixel (each pixel, for a
  head whose parameters serve a pixel's channels) have zero gradient with respect to it
  and every later input, and do depend on the one just before;
- cached sampler (autoregressive families): the same images as the naive sampler, also
  in row chunks (the progress bar), with and without classes;
- normalization: exp(log p(x)) over every image of a tiny shape sums to 1, per class;
- sampler: a chi-square test of samples against exp(log p(x)), naive and cached;
- bad inputs: float images, a wrong shape, a level >= K, labels for an unconditional
  model, a class label out of range, a wrong `num`, and `compile(loss=...)`: each one
  ValueError that says what is wrong;
- Keras's targets: `fit(images, y)` and `(image, y)` datasets condition on y as the
  inputs dict does; an unconditional model refuses a y, every model sample weights;
- building: no layer is built by a symbolic trace of its `call` (every layer that holds
  sublayers mixes in `layers.BuiltByFirstCall`);
- XLA: a training step compiles with `jit_compile=True`, which `compile()` picks by
  default on a GPU without a distribution strategy, and computes the same loss.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import likelihood_checks as checks
from tfgen import models
from tfgen.models import api
from tfgen.models import base
from tfgen.models import pixelcnn_pp

# Hyper-parameters small enough for 2x2 .. 3x3 images, per registered family.
TINY = {
    "pixelcnn": dict(hidden_dim=6, num_blocks=2, output_dim=12, input_kernel_size=3,
                     kernel_size=3),
    "gated_pixelcnn": dict(hidden_dim=6, num_layers=2, kernel_size=3, skip_dim=6,
                           output_dim=6),
    "pixelcnn_pp": dict(num_filters=6, num_resnet=1, num_scales=1, num_mixtures=3),
    "row_lstm": dict(hidden_dim=6, num_layers=2, input_kernel_size=3, output_dim=12),
    "diagonal_bilstm": dict(hidden_dim=6, num_layers=2, input_kernel_size=3, output_dim=12),
    "vae": dict(latent_dim=2, hidden_dims="8"),
    "conv_vae": dict(latent_dim=2, hidden_dims="8", conv_filters="4"),
    "autoencoder": dict(latent_dim=2, hidden_dims="8"),
    "conv_autoencoder": dict(latent_dim=2, hidden_dims="8", conv_filters="4"),
}
# Wider than TINY for the causality checks, so that no real dependence vanishes because
# every ReLU on its path is inactive; PixelCNN++ with the crops of three scales.
WIDE = {
    "pixelcnn": dict(hidden_dim=12, output_dim=24),
    "gated_pixelcnn": dict(hidden_dim=12, skip_dim=12, output_dim=12),
    "pixelcnn_pp": dict(num_scales=3),
    "row_lstm": dict(hidden_dim=12, output_dim=24),
    "diagonal_bilstm": dict(hidden_dim=12, output_dim=24),
}
# Normalization tolerance: PixelCNN++'s logistic CDF differences lose a little more.
TOLERANCE = {"pixelcnn_pp": 1e-4}

ALL = models.available()
AUTOREGRESSIVE = [n for n in ALL if issubclass(models.model_class(n), base.AutoregressiveModel)]
EXACT = [n for n in ALL if api.implements(models.model_class(n), api.LikelihoodModel)
         and models.model_class(n).LOG_PROB_IS_EXACT]


def _build(name, shape, levels, classes=None, seed=0, **hparams):
  model = models.build(name, shape, levels, num_classes=classes, **dict(TINY[name], **hparams))
  return checks.randomize(model, seed=seed)


def test_every_registered_family_has_a_tiny_configuration():
  assert sorted(TINY) == ALL, "add the new family's tiny hyper-parameters to TINY"
  assert sorted(WIDE) == AUTOREGRESSIVE, "add the new family's causality width to WIDE"
  assert EXACT, "no exact-likelihood family found: the capability query is broken"


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
@pytest.mark.parametrize("shape,levels,classes", [
    ((5, 5, 1), 4, None), ((4, 4, 3), 4, None), ((4, 3, 3), 3, 5)])
def test_causality(name, shape, levels, classes):
  model = _build(name, shape, levels, classes, **WIDE[name])
  label = None if classes is None else 2
  per_pixel = model.head.params_per_pixel
  leaks = checks.pixel_causality_leaks if per_pixel else checks.causality_leaks
  assert leaks(model, checks.random_images(model), labels=label) == []
  # Not vacuous (summed over a few inputs, since a ReLU can be inactive at one by chance):
  g = sum(checks.input_gradients(model, checks.random_images(model, seed), label, per_pixel)
          for seed in range(3))  # [T, T], or [H * W, T] per pixel
  c = shape[-1]
  if per_pixel:  # Each pixel depends on every channel of the pixel before it.
    pairs = [(p, (p - 1) * c + ch) for p in range(1, g.shape[0]) for ch in range(c)]
  else:  # Each subpixel on the one before it in its row (a Row LSTM's triangle ends there).
    pairs = [(t, t - 1) for t in range(1, g.shape[0]) if t % (shape[1] * c)]
  assert all(g[pair] > 0 for pair in pairs)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
@pytest.mark.parametrize("shape,levels,classes", [
    ((5, 4, 1), 4, None), ((4, 3, 3), 4, 3), ((3, 4, 3), 5, None)])
def test_cached_sampler_equals_naive(name, shape, levels, classes):
  model = _build(name, shape, levels, classes)
  naive = checks.cached_sampler_images(model, 6)
  assert len(np.unique(naive)) > 1  # Not a constant image: a wrong sampler would show.


@pytest.mark.parametrize("name", ALL)
def test_save_and_load_round_trip(tmp_path, name):
  model = _build(name, (3, 3, 3), 4, classes=2)
  x = np.random.default_rng(0).integers(0, 4, (2, 3, 3, 3))
  path = str(tmp_path / "m.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  assert type(loaded) is type(model) and loaded.num_classes == 2
  assert loaded.hparams == model.hparams and loaded.get_config() == model.get_config()
  for a, b in zip(loaded.get_weights(), model.get_weights()):
    np.testing.assert_array_equal(a, b)
  labels = np.array([0, 1])
  if api.implements(model, api.LikelihoodModel):
    options = model.likelihood_options(8, seed=1)  # An estimate: the same seed.
    np.testing.assert_allclose(loaded.log_prob(x, labels, **options),
                               model.log_prob(x, labels, **options), rtol=1e-6)
  if api.implements(model, api.Sampler):
    np.testing.assert_array_equal(loaded.sample(2, seed=1, labels=[1, 0]),
                                  model.sample(2, seed=1, labels=[1, 0]))
  if api.implements(model, api.LatentModel):
    np.testing.assert_allclose(loaded.reconstruct(x, labels), model.reconstruct(x, labels),
                               rtol=1e-6)


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("shape,levels,classes", [
    ((2, 2, 1), 2, None), ((2, 2, 1), 3, None), ((1, 2, 3), 3, None), ((2, 2, 1), 3, 4),
    ((2, 2, 1), 2, 4)])
def test_normalization(name, shape, levels, classes):
  model = _build(name, shape, levels, classes, seed=1)
  for label in ([None] if classes is None else [0, 3]):
    assert checks.total_probability(model, labels=label) == pytest.approx(
        1.0, abs=TOLERANCE.get(name, 1e-5)), label


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("fast", [False, None])
def test_sampler_matches_log_prob(name, fast):
  # None: the default, which for every autoregressive family is its cached sampler.
  model = _build(name, (2, 2, 1), 2, seed=2)
  assert model.supports_fast_sampling
  p_value = checks.sampler_p_value(model, 4000, seed=3, fast=fast)
  assert p_value > checks.ALPHA, p_value


def _entry_points(model):
  """The public calls of `model` that take images, by its capabilities."""
  calls = []
  if api.implements(model, api.LikelihoodModel):
    calls.append(lambda images, labels=None: model.log_prob(images, labels))
  if api.implements(model, api.LatentModel):
    calls.append(lambda images, labels=None: model.encode(images, labels))
  return calls


@pytest.mark.parametrize("name", ALL)
def test_bad_inputs_are_one_clear_error(name):
  model = _build(name, (3, 3, 1), 3)
  conditional = _build(name, (3, 3, 1), 3, classes=2)
  good = np.zeros((1, 3, 3, 1), np.int32)
  calls = _entry_points(model)
  assert calls, f"{name} declares no capability that takes images"
  for call in calls:
    with pytest.raises(ValueError, match="integer pixel levels"):
      call(good.astype(np.float32))
    with pytest.raises(ValueError, match="must have shape"):
      call(np.zeros((1, 4, 3, 1), np.int32))
    with pytest.raises(ValueError, match="levels in"):
      call(np.full((1, 3, 3, 1), 3, np.int32))
    with pytest.raises(ValueError, match="unconditional"):
      call(good, labels=[0])
  for call in _entry_points(conditional):
    with pytest.raises(ValueError, match="class-conditional"):
      call(good)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
      call(good, labels=[2])
  if api.implements(model, api.Sampler):
    for num in (0, 2.5, -1):
      with pytest.raises(ValueError, match="positive whole number"):
        model.sample(num, seed=0)
  with pytest.raises(ValueError, match="defines its own loss"):
    model.compile(loss="mse")


@pytest.mark.parametrize("name", ALL)
def test_keras_targets_are_the_condition(name):
  """Keras's `fit(x, y)` and `(image, label)` datasets: y is the label, or the vector of
  a model built with `condition_dim`; a model without conditioning refuses a y (it would
  ignore it), and every model refuses sample weights (Keras itself drops those where
  there is no y)."""
  images = np.random.default_rng(0).integers(0, 3, (4, 3, 3, 1)).astype(np.int32)
  labels = np.array([0, 1, 1, 0], np.int32)
  built = {"label": _build(name, (3, 3, 1), 3, classes=2)}
  if models.model_class(name).SUPPORTS_CONDITION_VECTOR:
    built["condition"] = checks.randomize(models.build(
        name, (3, 3, 1), 3, condition_dim=2, **TINY[name]), seed=0)
  for key, model in built.items():
    y = labels if key == "label" else np.eye(2, dtype=np.float32)[labels]
    other = 1 - y
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    # pylint: disable-next=protected-access
    inputs = model._checked_batch((tf.constant(images), tf.constant(y)))
    np.testing.assert_array_equal(inputs[key], y)
    if key == "condition":  # The rest is the same code for both kinds of y.
      continue
    pairs = tf.data.Dataset.from_tensor_slices((images, y)).batch(4)  # as_supervised
    by_pairs = model.evaluate(pairs, verbose=0, return_dict=True)
    if not api.implements(model, api.VariationalModel):  # Their evaluation draws noise.
      by_dict = model.evaluate({"image": images, key: y}, batch_size=4, verbose=0,
                               return_dict=True)
      assert by_pairs == pytest.approx(by_dict, rel=1e-5)  # numpy and tf.data round apart
      assert model.evaluate({"image": images, key: other}, batch_size=4, verbose=0,
                            return_dict=True) != pytest.approx(by_dict, rel=1e-3)
    model.fit(images, y, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match=f"pass the {key}s once"):
      model.fit({"image": images, key: y}, y, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="does not take sample weights"):
      model.fit(images, y, sample_weight=np.ones(4), batch_size=4, verbose=0)
  unconditional = _build(name, (3, 3, 1), 3)
  unconditional.compile(optimizer=keras.optimizers.Adam())
  before = [w.copy() for w in unconditional.get_weights()]
  for call in (unconditional.fit, unconditional.evaluate):
    with pytest.raises(ValueError, match="is not conditional.*would ignore"):
      call(images, labels, batch_size=4, verbose=0)
  for a, b in zip(before, unconditional.get_weights()):
    np.testing.assert_array_equal(a, b)


def _training_losses(name, jit_compiles):
  """The loss of one training step of the same tiny model, once per `jit_compile`."""
  images = {"image": np.random.default_rng(0).integers(0, 4, (4, 3, 3, 1)).astype(np.int32)}
  losses = []
  for jit_compile in jit_compiles:
    keras.utils.set_random_seed(0)  # The same weights, and the same noise where drawn.
    model = _build(name, (3, 3, 1), 4)
    model.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=jit_compile)
    losses.append(float(model.train_on_batch(images, return_dict=True)["loss"]))
  return losses


@pytest.mark.parametrize("name", ALL)
def test_a_training_step_compiles_under_xla(name):
  """On a GPU, `model.compile()` turns XLA on (Keras's `jit_compile="auto"`) unless a
  distribution strategy is active: a user's own `fit` runs every family under it."""
  plain, xla = _training_losses(name, (False, True))
  assert np.isfinite(xla)
  if not api.implements(models.model_class(name), api.VariationalModel):
    # XLA draws other noise for a variational model's sampled ELBO; the rest is exact.
    assert xla == pytest.approx(plain, rel=1e-5)


def test_the_xla_check_fails_on_a_loop_without_a_bound(monkeypatch):
  """XLA needs a bound on a `tf.while_loop` that stacks a list (the PixelRNNs' scan)."""
  original = tf.while_loop

  def unbounded(*args, maximum_iterations=None, **kwargs):
    del maximum_iterations
    return original(*args, **kwargs)

  monkeypatch.setattr(tf, "while_loop", unbounded)
  with pytest.raises(tf.errors.InvalidArgumentError, match="fixed tensor list size"):
    _training_losses("row_lstm", (True,))


def _symbolic_traces(monkeypatch):
  """The classes of the layers Keras builds by tracing `call` on symbolic inputs, as
  they happen: Keras does so for a layer without a `build()` of its own."""
  from keras.src.layers import layer as layer_module  # pylint: disable=g-import-not-at-top
  traced = []
  original = layer_module.backend.compute_output_spec

  def recording(fn, *args, **kwargs):
    traced.append(type(getattr(fn, "__self__", fn)).__name__)
    return original(fn, *args, **kwargs)

  monkeypatch.setattr(layer_module.backend, "compute_output_spec", recording)
  return traced


@pytest.mark.parametrize("name", ALL)
def test_building_traces_no_layer_symbolically(name, monkeypatch):
  traced = _symbolic_traces(monkeypatch)
  for classes in (None, 3):
    models.build(name, (4, 4, 1), 2, num_classes=classes, **TINY[name])
  assert not traced, f"Keras traced {sorted(set(traced))} to build them: mix in BuiltByFirstCall"


def test_the_trace_check_sees_a_layer_without_build(monkeypatch):
  traced = _symbolic_traces(monkeypatch)
  monkeypatch.setattr(pixelcnn_pp.GatedResnet, "build", keras.layers.Layer.build)
  models.build("pixelcnn_pp", (4, 4, 1), 2, **TINY["pixelcnn_pp"])
  assert "GatedResnet" in traced
