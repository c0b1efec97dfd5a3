"""The base class of tfgen's autoregressive image models.

It holds the contract every pixel model follows: `call` returns pixel parameters
`[B, H, W, P]`; `log_prob`, `sample`, the training loss and the metrics are all
derived from those parameters through the model's pixel head.

Glossary of tensor shapes:
  B: batch.  H, W: image height and width.  C: colour channels.
  K: levels of a subpixel.  P: parameters per pixel (`head.num_params`).
"""

import keras
import numpy as np
import tensorflow as tf

from tfgen import completion
from tfgen import distributions
from tfgen import layers
from tfgen import sampling
from tfgen.models import api


def unpack_inputs(inputs):
  """Splits model inputs into `(images, labels)`; labels may be None.

  Inputs are either an integer image tensor `[B, H, W, C]` or a dict with key
  "image" and, optionally, "label" (the element format of `tfgen.data`) or
  "condition" (a float vector `[B, D]` for a model built with `condition_dim`).
  """
  if isinstance(inputs, dict):
    return inputs["image"], inputs.get("label")
  return inputs, None


class HParamsMixin:
  """Hyper-parameter checking shared by every model class.

  A subclass lists its hyper-parameters with their defaults in `HPARAMS`; values are
  checked against the default's type so that a typo or a wrong type fails at build
  time with the list of valid names, not deep inside TensorFlow.
  """

  HPARAMS = {}
  # Hyper-parameters that are sizes of centred masked kernels: positive odd numbers.
  ODD_HPARAMS = ()

  @classmethod
  def resolve_hparams(cls, hparams):
    unknown = sorted(set(hparams) - set(cls.HPARAMS))
    if unknown:
      valid = ", ".join(f"{k}={v!r}" for k, v in cls.HPARAMS.items())
      raise ValueError(
          f"Unknown hyper-parameter(s) {unknown} for model {cls.MODEL_NAME!r}. "
          f"Valid hyper-parameters and their defaults: {valid}.")
    resolved = dict(cls.HPARAMS)
    for key, value in hparams.items():
      default = cls.HPARAMS[key]
      expected = type(default)
      if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
      if expected is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # --hparams=hidden_dims=128 reads a number: one width.
      if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ValueError(
            f"Hyper-parameter {key!r} of model {cls.MODEL_NAME!r} must be a "
            f"{expected.__name__} (default {default!r}), got {value!r}.")
      resolved[key] = value
    for key in cls.ODD_HPARAMS:
      if resolved[key] < 1 or resolved[key] % 2 == 0:
        raise ValueError(
            f"Hyper-parameter {key!r} of model {cls.MODEL_NAME!r} must be a positive odd "
            f"number (a masked kernel centred on its pixel), got {resolved[key]}.")
    return resolved


class _FunctionCache:
  """Traced `tf.function`s of a model, kept where TensorFlow's object graph does not
  look: held in a (tracked) attribute dict, they would be saved with the model by
  `tf.saved_model.save` (the exporter), and a dict with non-string keys cannot be."""

  def __init__(self):
    self.functions = {}


class ImageModel(HParamsMixin, layers.BuiltByFirstCall, keras.Model):
  """What every tfgen model shares: image and label checks, Keras plumbing, config.

  A model of images `[B, H, W, C]` of integer levels in `[0, K)`, optionally
  conditioned on class labels `[B]` (`num_classes`) or on a float vector `[B, D]`
  (`condition_dim`, where the class sets `SUPPORTS_CONDITION_VECTOR`). Subclasses
  build their layers in `__init__` and call `self._finish_init()` at its end, so every
  variable exists after construction.

  Args:
    image_shape: `(H, W, C)`.
    num_levels: `K`.
    num_classes: number of class labels for a conditional model, or None.
    condition_dim: `D` for a model p(x | h) of a conditioning vector h (an embedding,
      attributes), or None. Not together with `num_classes`.
    **hparams: model hyper-parameters, see the subclass's `HPARAMS`.
  """

  MODEL_NAME = None
  SUPPORTS_CONDITION_VECTOR = False

  def __init__(self, image_shape, num_levels, num_classes=None, name=None,
               condition_dim=None, **hparams):
    resolved = self.resolve_hparams(hparams)
    super().__init__(name=name or self.MODEL_NAME)
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3 or min(image_shape) < 1:
      raise ValueError(f"image_shape must be (H, W, C) with positive sizes, got {image_shape}.")
    if num_classes is not None and int(num_classes) < 1:
      raise ValueError(f"num_classes must be a positive integer or None, got {num_classes}.")
    if condition_dim is not None:
      if not self.SUPPORTS_CONDITION_VECTOR:
        raise ValueError(
            f"Model {self.MODEL_NAME!r} cannot be conditioned on a vector (condition_dim); "
            "the autoregressive models (pixelcnn, gated_pixelcnn, pixelcnn_pp, row_lstm, "
            "diagonal_bilstm) can. Use num_classes for class labels.")
      if num_classes is not None:
        raise ValueError("Give num_classes (class labels) or condition_dim (a vector), "
                         "not both. For both, append the one-hot label to the vector.")
      if int(condition_dim) < 1:
        raise ValueError(f"condition_dim must be a positive integer or None, got "
                         f"{condition_dim}.")
    self.image_shape = image_shape
    self.num_levels = int(num_levels)
    self.num_classes = None if num_classes is None else int(num_classes)
    self.condition_dim = None if condition_dim is None else int(condition_dim)
    self.hparams = resolved
    self._function_cache = _FunctionCache()

  def _compiled(self, key, make):
    """The model's traced function `key`, made by `make()` on first use."""
    functions = self._function_cache.functions
    if key not in functions:
      functions[key] = make()
    return functions[key]

  @property
  def is_conditional(self):
    """Whether the model is p(x | y), on class labels or on a vector."""
    return self.num_classes is not None or self.condition_dim is not None

  def _condition_bias(self, filters):
    """The layer that adds the conditioning V^T y to a feature map of `filters`."""
    return layers.ConditionBias(filters, self.num_classes, self.condition_dim)

  @property
  def num_subpixels(self):
    return int(np.prod(self.image_shape))

  def _finish_init(self):
    """Creates every variable now: shapes are fully known from the constructor."""
    images = tf.zeros((1,) + self.image_shape, tf.int32)
    if self.condition_dim is not None:
      condition = tf.zeros((1, self.condition_dim))
    else:
      condition = None if self.num_classes is None else tf.zeros((1,), tf.int32)
    self(self._inputs(images, condition))

  def _inputs(self, images, condition):
    """The model's input dict; `condition` is labels `[B]` or a vector `[B, D]`."""
    if condition is None:
      return {"image": images}
    key = "label" if self.condition_dim is None else "condition"
    return {"image": images, key: condition}

  def _labels(self, inputs):
    """What a conditional model conditions on, or None for p(x).

    int32 labels `[B]` for a class-conditional model, float32 `[B, D]` for a model
    built with `condition_dim`.
    """
    if self.condition_dim is not None:
      condition = inputs.get("condition") if isinstance(inputs, dict) else None
      if condition is None:
        raise ValueError(
            f"Model {self.name!r} is conditioned on a vector of {self.condition_dim} "
            "floats: pass condition=..., e.g. model.log_prob(images, condition=h), or a "
            "dataset with a 'condition' key.")
      return tf.cast(condition, tf.float32)
    _, labels = unpack_inputs(inputs)
    if self.num_classes is None:
      return None
    if labels is None:
      raise ValueError(
          f"Model {self.name!r} is class-conditional ({self.num_classes} classes): pass "
          "labels, e.g. model.log_prob(images, labels) or a dataset with a 'label' key.")
    return tf.cast(labels, tf.int32)

  def _scaled_images(self, inputs):
    """Integer levels -> float32 in [-1, 1], the network's input."""
    images, _ = unpack_inputs(inputs)
    x = tf.cast(images, tf.float32)
    return x * (2.0 / (self.num_levels - 1)) - 1.0  # [B, H, W, C]

  def _check_images(self, images, what="images"):
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_integer:
      raise ValueError(
          f"{what} must hold integer pixel levels in [0, {self.num_levels}), got dtype "
          f"{images.dtype.name}. Convert floats in [0, 1] with round(x * {self.num_levels - 1}).")
    if images.shape.rank == 3 and self.image_shape[-1] == 1:
      images = images[..., None]
    if images.shape.rank != 4 or tuple(images.shape[1:]) != self.image_shape:
      raise ValueError(
          f"{what} must have shape (B,) + {self.image_shape}, got {tuple(images.shape)}.")
    if tf.executing_eagerly() and images.shape[0]:
      lo, hi = int(tf.reduce_min(images)), int(tf.reduce_max(images))
      if lo < 0 or hi >= self.num_levels:
        raise ValueError(
            f"{what} hold levels in [{lo}, {hi}] but this model has {self.num_levels} levels "
            f"[0, {self.num_levels - 1}]. Re-quantize the data or build the model with "
            "the data's number of levels.")
    return tf.cast(images, tf.int32)

  @staticmethod
  def _check_num(num, what="num", minimum=1):
    """A count (`num` images to sample by default) as an int; a fraction or a count
    below `minimum` is refused."""
    try:
      value = float(num)
    except (TypeError, ValueError):
      value = float("nan")
    if isinstance(num, bool) or not value.is_integer() or value < minimum:
      kind = ("a positive whole number" if minimum == 1 else
              f"a whole number >= {minimum}")
      raise ValueError(f"{what} must be {kind}{' of images' if what == 'num' else ''}, "
                       f"got {num!r}.")
    return int(value)

  @staticmethod
  def _uniform_noise(shape, seed, stream=0):
    """Uniform noise in [0, 1) of `shape`: from `seed` (with `stream` apart from the
    seed's other draws) reproducibly, or fresh for seed None."""
    if seed is None:
      return tf.random.uniform(shape)
    return tf.random.stateless_uniform(shape, seed=[int(seed), stream])

  @staticmethod
  def _normal_noise(shape, seed, stream=0):
    """Standard normal noise of `shape`, seeded as `_uniform_noise`."""
    if seed is None:
      return tf.random.normal(shape)
    return tf.random.stateless_normal(shape, seed=[int(seed), stream])

  @staticmethod
  def _check_uniform(noise, shape, what="noise"):
    """Uniform noise for inverse-CDF sampling: float32 of `shape`, values in [0, 1).

    A value outside [0, 1) (or NaN) would draw the top level (or level 0) whatever the
    model says, so it is refused, as the exported signatures refuse it.
    """
    noise = tf.convert_to_tensor(noise, tf.float32)
    if tuple(noise.shape) != tuple(shape):
      raise ValueError(f"{what} must have shape {tuple(shape)}, got {tuple(noise.shape)}.")
    if tf.executing_eagerly():
      finite = bool(tf.reduce_all(tf.math.is_finite(noise)))
      lo, hi = float(tf.reduce_min(noise)), float(tf.reduce_max(noise))
      if not finite or lo < 0.0 or hi >= 1.0:
        raise ValueError(
            f"{what} must hold uniform values in [0, 1) (one per subpixel, for "
            f"inverse-CDF sampling), got {'NaN or inf values' if not finite else ''}"
            f"{'' if not finite else f'values in [{lo:g}, {hi:g}]'}. Draw it with "
            "np.random.uniform(size=...), or pass seed= instead.")
    return noise

  def _check_condition(self, labels, condition, batch):
    """Checks what a caller passed to condition on; returns it as one tensor or None.

    Labels for a class-conditional model, a vector for one built with
    `condition_dim`, nothing for p(x).
    """
    if self.condition_dim is None:
      if condition is not None:
        raise ValueError(
            f"Model {self.name!r} takes no condition vector (it was built without "
            "condition_dim); " + ("pass labels." if self.num_classes else "drop condition."))
      return self._check_labels(labels, batch)
    if labels is not None:
      raise ValueError(f"Model {self.name!r} is conditioned on a vector; pass "
                       "condition=..., not labels.")
    shape = (batch, self.condition_dim)
    if condition is None:
      raise ValueError(
          f"Model {self.name!r} is conditioned on a vector: pass condition=..., floats of "
          f"shape {shape} (or ({self.condition_dim},) for all images).")
    condition = tf.convert_to_tensor(condition)
    if not (condition.dtype.is_floating or condition.dtype.is_integer):
      raise ValueError(f"condition must hold numbers, got dtype {condition.dtype.name}.")
    condition = tf.cast(condition, tf.float32)
    if condition.shape.rank == 1:
      condition = tf.broadcast_to(condition, (batch,) + tuple(condition.shape))
    if tuple(condition.shape) != shape:
      raise ValueError(f"condition must have shape {shape} (or ({self.condition_dim},) "
                       f"for all images), got {tuple(condition.shape)}.")
    if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(condition))):
      raise ValueError("condition holds NaN or inf values.")
    return condition

  def _check_labels(self, labels, batch):
    if self.num_classes is None:
      if labels is not None:
        raise ValueError(f"Model {self.name!r} is unconditional; do not pass labels.")
      return None
    if labels is None:
      raise ValueError(
          f"Model {self.name!r} is class-conditional ({self.num_classes} classes): pass "
          f"labels, an int array of shape ({batch},) with values in [0, {self.num_classes}).")
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 0:
      labels = tf.fill([batch], labels)
    if not labels.dtype.is_integer or tuple(labels.shape) != (batch,):
      raise ValueError(
          f"labels must be integers of shape ({batch},), got {labels.dtype.name} "
          f"{tuple(labels.shape)}.")
    if tf.executing_eagerly() and batch:
      lo, hi = int(tf.reduce_min(labels)), int(tf.reduce_max(labels))
      if lo < 0 or hi >= self.num_classes:
        raise ValueError(
            f"labels must lie in [0, {self.num_classes}), got values in [{lo}, {hi}].")
    return tf.cast(labels, tf.int32)

  def test_metrics(self, dataset, **options):
    """Test-set metrics, a dict of Python floats named with their units.

    The default is Keras `evaluate`'s metrics. Subclasses with estimators that are not
    per-batch metrics (e.g. importance-weighted likelihood bounds) override it.

    Args:
      dataset: a `tf.data.Dataset` of the model's inputs.
      **options: model-specific evaluation options; see the subclass.
    """
    del options
    return {k: float(v) for k, v in self.evaluate(dataset, verbose=0, return_dict=True).items()}

  # ---- Keras plumbing ---------------------------------------------------------------

  def compile(self, optimizer="adam", loss=None, **kwargs):
    """Keras `compile` with the model's own loss (see `compute_loss`)."""
    if loss is not None:
      raise ValueError(
          f"Model {self.name!r} defines its own loss (see its compute_loss); call "
          "compile() without `loss`.")
    super().compile(optimizer=optimizer, **kwargs)
    # Built now (the model's variables exist from construction): built lazily inside
    # the first traced step, a step that fails on bad data leaves the next `fit`
    # "creating variables on a non-first call".
    if self.built and not self.optimizer.built:
      self.optimizer.build(self.trainable_variables)

  def train_step(self, data):
    return self._reducible_logs(super().train_step(self._checked_batch(data)))

  def test_step(self, data):
    return self._reducible_logs(super().test_step(self._checked_batch(data)))

  def _checked_batch(self, data):
    """A `fit`/`evaluate` batch, checked as `log_prob` checks its arguments.

    Dtypes and shapes are checked while tracing (a ValueError before the first step);
    levels and labels by assertions that run with the step, on any device: a level
    >= K or a label >= num_classes would otherwise be a raw gather error on a CPU and
    silently NaN or zero on a GPU.

    Keras's `(x, y)` convention is the conditioning: `fit(images, labels)`, a dataset of
    `(image, label)` pairs (`tfds.load(..., as_supervised=True)`) or, for a model built
    with `condition_dim`, `fit(images, vectors)` become the inputs dict. A model without
    conditioning refuses a y rather than ignore it: it would train p(x) while its user
    believes it learns p(x | y).

    Args:
      data: what Keras passes a step: the inputs, or `(inputs, y, sample_weight)`.

    Returns:
      `inputs`, or `(inputs, None, sample_weight)` where there are sample weights.
    """
    inputs, targets, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if targets is not None:
      inputs = self._with_targets(inputs, targets)
    images, labels = unpack_inputs(inputs)
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_integer:
      raise ValueError(
          f"Model {self.name!r} was given {images.dtype.name} images to train or evaluate on; "
          f"it models integer pixel levels in [0, {self.num_levels}). Convert floats in "
          f"[0, 1] with tf.cast(tf.round(x * {self.num_levels - 1}), tf.int32) in the "
          "input pipeline.")
    wrong_shape = (f"Model {self.name!r} takes images of shape (batch,) + {self.image_shape}, "
                   "got {}. Resize the data or build the model for its "
                   "shape.")
    shape = tuple(images.shape[1:])
    if images.shape.rank != 4 or any(
        got is not None and got != want for got, want in zip(shape, self.image_shape)):
      raise ValueError(wrong_shape.format(f"batches of shape {tuple(images.shape)}"))
    checks = [tf.debugging.Assert(  # Static shapes may be relaxed by retracing.
        tf.reduce_all(tf.shape(images)[1:] == tf.constant(self.image_shape, tf.int32)),
        [wrong_shape.format("a batch of another shape")]),
              tf.debugging.Assert(
        # In int64: K = 256 is 0 in uint8, which failed every batch of 8-bit images.
        tf.cast(tf.reduce_max(images), tf.int64) < self.num_levels,
        [f"Image levels must lie in [0, {self.num_levels}) for this model (num_levels="
         f"{self.num_levels}); a batch holds a larger level. Re-quantize the data (e.g. "
         "--reduce_levels) or build the model with the data's number of levels."])]
    if not images.dtype.is_unsigned:
      checks.append(tf.debugging.Assert(
          tf.reduce_min(images) >= 0, ["Image levels must be >= 0; a batch holds a negative "
                                       "level."]))
    if self.condition_dim is not None:
      condition = inputs.get("condition") if isinstance(inputs, dict) else None
      if condition is None:
        raise ValueError(
            f"Model {self.name!r} is conditioned on a vector of {self.condition_dim} floats "
            "per image: pass them as fit(images, vectors), or as a dataset of (image, "
            "vector) pairs or of dicts with a 'condition' key.")
      checks.append(tf.debugging.Assert(
          tf.reduce_all(tf.math.is_finite(tf.cast(condition, tf.float32))),
          ["condition holds NaN or inf values."]))
    elif self.num_classes is not None:
      if labels is None:
        raise ValueError(
            f"Model {self.name!r} is class-conditional ({self.num_classes} classes): pass the "
            "labels as fit(images, labels), or as a dataset of (image, label) pairs or of "
            "dicts with a 'label' key.")
      labels = tf.convert_to_tensor(labels)
      if not labels.dtype.is_integer:
        raise ValueError(f"Labels must be integers, got {labels.dtype.name}.")
      checks.append(tf.debugging.Assert(
          tf.logical_and(tf.reduce_min(labels) >= 0,
                         tf.cast(tf.reduce_max(labels), tf.int64) < self.num_classes),
          [f"Labels must be class indices in [0, {self.num_classes}); a batch holds one "
           "outside that range."]))
    with tf.control_dependencies(checks):
      inputs = tf.nest.map_structure(tf.identity, inputs)
    return inputs if sample_weight is None else (inputs, None, sample_weight)

  def _refuse_sample_weight(self, sample_weight):
    """Every loss is a mean over images; weighting them is not supported."""
    if sample_weight is not None:
      raise ValueError(
          f"Model {self.name!r} does not take sample weights: its loss is the mean over "
          "the images of the batch. Drop sample_weight; to weight images, repeat or "
          "resample them in the input pipeline.")

  def _with_targets(self, inputs, targets):
    """The inputs dict of a `(images, y)` batch: y is the label or condition vector."""
    if self.num_classes is None and self.condition_dim is None:
      raise ValueError(
          f"Model {self.name!r} is not conditional: fit and evaluate take images only "
          "(what it learns to model is the images themselves), but it was also given "
          "targets y, which it would ignore. Pass the images alone, e.g. "
          "model.fit(images), or build the model with num_classes=K (or condition_dim=D) "
          "to condition on y.")
    key = "label" if self.condition_dim is None else "condition"
    if isinstance(inputs, dict):
      raise ValueError(
          f"Model {self.name!r} was given a dict of inputs and targets y: pass the "
          f"{key}s once, either as y (fit(images, {key}s)) or under the dict's {key!r} key.")
    return {"image": inputs, key: targets}

  def _reducible_logs(self, logs):
    # Keras (3.15) reduces step logs across a multi-worker cluster with
    # strategy.reduce("MEAN", v, axis=0), which rejects the scalar metric values every
    # model returns (tensorflow/tensorflow#72388). The values are already synchronized
    # (metric states are aggregated across replicas), so shape [1] makes that mean the
    # value itself, returned as a scalar.
    strategy = self.distribute_strategy
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
      return logs
    spec = resolver.cluster_spec()
    if sum(spec.num_tasks(job) for job in spec.jobs) <= 1:
      return logs
    return {key: tf.reshape(value, [1]) for key, value in logs.items()}

  def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    # Keras (3.15) builds a model under a distribution strategy by first reducing one
    # input batch across replicas (strategy.reduce("MEAN", batch)). Under
    # MultiWorkerMirroredStrategy that reduce rejects nested inputs such as
    # {"image", "label"}, so fit() fails before the first step. tfgen models are built
    # at construction; with the optimizer built too there is nothing to build, so skip
    # it. (tests/test_multi_worker.py fails loudly if Keras changes this hook.)
    if self.built and self.optimizer is not None and self.optimizer.built:
      return
    super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

  def compile_from_config(self, config):
    """Recompiles a loaded model (with its optimizer) from `get_compile_config()`."""
    config = keras.saving.deserialize_keras_object(config)
    if config.get("loss") is None:
      config.pop("loss", None)
    self.compile(**config)  # Builds the optimizer too.

  # ---- serialization ----------------------------------------------------------------

  def get_config(self):
    config = dict(name=self.name, image_shape=list(self.image_shape),
                  num_levels=self.num_levels, num_classes=self.num_classes,
                  **dict(self.hparams))
    if self.condition_dim is not None:
      config["condition_dim"] = self.condition_dim
    return config

  @classmethod
  def from_config(cls, config):
    return cls(**config)


class AutoregressiveModel(ImageModel, api.LikelihoodModel, api.Sampler, api.Completer):
  """A model of p(x) (or p(x | y)) as a product of per-subpixel distributions.

    log p(x | y) = sum_t log p(x_t | x_<t, y),   t over H * W * C subpixels

  Subclasses build their layers in `__init__`, call `self._finish_init()` at its end,
  and implement `call(inputs, training=False) -> params [B, H, W, P]`.

  Args: see `ImageModel`.
  """

  PIXEL_DISTRIBUTION = "categorical"
  SAMPLE_REPORTS_PROGRESS = True
  # Every autoregressive model conditions through `_condition_bias`, labels or vector.
  SUPPORTS_CONDITION_VECTOR = True

  def __init__(self, image_shape, num_levels, num_classes=None, name=None, **hparams):
    super().__init__(image_shape, num_levels, num_classes, name=name, **hparams)
    self.head = distributions.make_pixel_head(
        self.PIXEL_DISTRIBUTION, self.num_levels, self.image_shape[-1])
    self.nll_tracker = keras.metrics.Mean(name="nll")
    self.bits_per_dim_tracker = keras.metrics.Mean(name="bits_per_dim")

  # ---- likelihood -------------------------------------------------------------------

  def distribution(self, inputs, training=False):
    """The image distribution p(x | y) for a batch, given the images it conditions on."""
    return self.head.image_distribution(self(inputs, training=training))

  def log_prob(self, images, labels=None, condition=None):
    """log p(x) (or log p(x | y)) of each image, in nats.

    Args:
      images: integer `[B, H, W, C]` (or `[B, H, W]` for C=1) levels in `[0, K)`.
      labels: int `[B]` class labels for a class-conditional model, else None.
      condition: float `[B, D]` (or `[D]` for all) for a model built with
        `condition_dim`, else None.

    Returns:
      float32 `[B]`.

    Raises:
      ValueError: for images, labels or condition of the wrong shape, dtype or range.
    """
    images = self._check_images(images)
    labels = self._check_condition(labels, condition, images.shape[0])
    if images.shape[0] == 0:  # Nothing to score (convolutions fail on empty batches).
      return tf.zeros([0], tf.float32)
    log_prob = self._compiled("log_prob", lambda: tf.function(
        lambda inputs: self.distribution(inputs).log_prob(inputs["image"]),
        reduce_retracing=True))
    return log_prob(self._inputs(images, labels))

  def test_metrics(self, dataset, **options):
    """Exact test NLL: `{"nll_nats": per image, "bits_per_dim": ...}`.

    Args:
      dataset: a `tf.data.Dataset` of the model's inputs.
      **options: ignored; the likelihood is exact and needs no estimator settings.
    """
    del options
    results = self.evaluate(dataset, verbose=0, return_dict=True)
    return {"nll_nats": float(results["nll"]), "bits_per_dim": float(results["bits_per_dim"])}

  # ---- sampling ---------------------------------------------------------------------

  # Models with a cached incremental sampler set this and define `incremental_fill`.
  supports_fast_sampling = False

  def incremental_fill(self, images, noise, condition, row_start, row_stop):
    """The cached sampler: draws rows `row_start .. row_stop-1` of `images`.

    Exactly the images `_naive_fill` draws from the same noise, at a cost linear in
    the number of pixels. A chunk may start at any row: the caches are rebuilt from
    the rows already drawn. The families write it on the skeleton of
    `tfgen.sampling.cached_rows` (PixelCNN++ on its static plan, `tfgen.incremental`).

    Args:
      images: int32 `[B, H, W, C]`, rows before `row_start` sampled.
      noise: float32 `[B, H, W, C]` uniform noise.
      condition: int32 labels `[B]`, float32 `[B, D]` or None: what the model
        conditions on.
      row_start, row_stop: int32 scalars.

    Returns:
      int32 `[B, H, W, C]`.
    """
    raise NotImplementedError(f"Model {self.name!r} has no cached sampler.")

  def sample(self, num, seed=None, labels=None, noise=None, progress=False, fast=None,
             condition=None):
    """Draws images pixel by pixel, channel by channel.

    The whole loop runs inside one compiled graph (`tf.while_loop`); with
    `progress=True` the same graph is run one image row at a time to report progress,
    with identical results (the fast sampler then rebuilds its caches from the rows
    already drawn at every row: about one extra network pass per row).

    Args:
      num: number of images `B`.
      seed: int; the same seed gives the same images. None draws fresh noise.
      labels: int `[B]` (or a scalar for all) class labels for a conditional model.
      noise: optional float `[B, H, W, C]` uniform noise in [0, 1) to use instead of
        a seed (inverse-CDF sampling; see `tfgen.sampling`).
      progress: show a progress bar.
      fast: use the cached incremental sampler (the default where the model has one;
        cost linear in the number of pixels). False reruns the whole network for every
        subpixel (quadratic); both return the same images for the same noise.
      condition: float `[B, D]` (or `[D]` for all) for a model built with
        `condition_dim`.

    Returns:
      int32 `[B, H, W, C]` levels in `[0, K)`.

    Raises:
      ValueError: for bad `num`, `labels` or `noise`, or `fast=True` on a model
        without a cached sampler.
    """
    num = self._check_num(num)
    fast = self._check_fast(fast)
    labels = self._check_condition(labels, condition, num)
    shape = (num,) + self.image_shape
    if noise is None:
      noise = self._uniform_noise(shape, seed)
    noise = self._check_uniform(noise, shape)
    fill = self._graph_fill(builtin_only=False, fast=fast)
    images = tf.zeros(shape, tf.int32)
    height = self.image_shape[0]
    if not progress:
      return fill(images, noise, labels, tf.constant(0), tf.constant(height))
    bar = keras.utils.Progbar(height, unit_name="row")
    for i in range(height):
      images = fill(images, noise, labels, tf.constant(i), tf.constant(i + 1))
      bar.update(i + 1)
    return images

  def _check_fast(self, fast):
    """`fast=` of `sample`/`complete`: None means the cached sampler where there is one."""
    if fast is None:
      return self.supports_fast_sampling
    if fast and not self.supports_fast_sampling:
      raise ValueError(f"Model {self.name!r} has no cached sampler; use fast=False.")
    return bool(fast)

  def _graph_fill(self, builtin_only, fast=None):
    """The fill that `sample`, `complete` and the exported graphs run.

    The cached one where the model has one and, for a TFLite graph (`builtin_only`),
    it lowers to builtin operators. Outside TFLite it is one `tf.function` per model, so
    a graph that both samples and completes (an export) traces and stores the loop once,
    traced without AutoGraph (its loops are explicit `tf.while_loop`s, and converting
    the Python that builds them only adds to every trace). A TFLite graph inlines it:
    the converter cannot lower a TensorList inside a called function.
    """
    if fast is None:
      fast = self.supports_fast_sampling and (self.fast_sampler_is_builtin or not builtin_only)
    fill = self.incremental_fill if fast else self._naive_fill
    if builtin_only:
      return fill
    return self._compiled("fill_fast" if fast else "fill_naive",
                          lambda: tf.function(fill, reduce_retracing=True, autograph=False))

  def _naive_fill(self, images, noise, condition, row_start, row_stop):
    """Samples rows `row_start .. row_stop-1`, one full network pass per subpixel."""
    params_fn = lambda x: self(self._inputs(x, condition), training=False)
    per_row = self.image_shape[1] * self.image_shape[2]
    return sampling.fill_subpixels(params_fn, self.head, images, noise,
                                   row_start * per_row, row_stop * per_row)

  # ---- completion --------------------------------------------------------------------

  def complete(self, images, mask, num_samples=1, seed=None, noise=None, labels=None,
               condition=None, gibbs_sweeps=0, fast=None):
    """Draws the missing subpixels of `images` given the observed ones.

    The subpixels are visited in the generation order (raster, then channel); an
    observed one is kept, a missing one drawn from p(x_t | x_<t) with everything
    before it in place. Where the missing subpixels of an image are a suffix of that
    order (the bottom rows, the right part of the last observed row), this is an exact
    sample of p(x_missing | x_observed), and the cached sampler starts at the first row
    with a missing subpixel after one pass over the observed rows. For other masks the
    walk ignores observations that come after a missing subpixel, so its images are
    only approximately conditional; `gibbs_sweeps` refines them by Gibbs sampling from
    p(x_t | x_-t), exact in the limit (see `tfgen.completion`).

    Args:
      images: integer `[B, H, W, C]` (or `[B, H, W]` for C=1) levels in `[0, K)`;
        the levels at missing subpixels are checked like the others but not used.
      mask: bool or 0/1 of the images' shape, or `[B, H, W]` for whole pixels: true at
        the observed subpixels. Each image needs observed and missing subpixels.
      num_samples: completions per image, `S`.
      seed: int; the same seed gives the same completions. None draws fresh noise.
      noise: optional float `[S, B, H, W, C]` uniform in [0, 1) instead of a seed (the
        values at observed subpixels are not used), or `{"noise": that}` (the form of
        `completion_noise_specs`, which every `Completer` takes).
      labels: int `[B]` (or a scalar) class labels for a class-conditional model.
      condition: float `[B, D]` (or `[D]`) for a model built with `condition_dim`.
      gibbs_sweeps: Gibbs sweeps over the missing subpixels after the ancestral walk;
        each costs K x (missing positions) image likelihoods per completion, at most
        `tfgen.completion.MAX_GIBBS_IMAGE_EVALUATIONS` per call. Their randomness comes
        from `seed` (fresh without one).
      fast: use the cached sampler (the default where the model has one); both give
        the same images for the same noise.

    Returns:
      int32 `[S, B, H, W, C]`: the images with their missing subpixels drawn.

    Raises:
      ValueError: for bad images, mask, labels, noise or `num_samples`, or Gibbs
        sweeps over the bound.
    """
    images = self._check_images(images)
    batch = images.shape[0]
    keep = completion.keep_mask(mask, self.image_shape, batch)
    num_samples = self._check_num(num_samples, "num_samples")
    fast = self._check_fast(fast)
    labels = self._check_condition(labels, condition, batch)
    sweeps = self._check_num(gibbs_sweeps, "gibbs_sweeps", minimum=0)
    shape = (num_samples, batch) + self.image_shape
    if noise is None:
      noise = self._uniform_noise(shape, seed)
    if isinstance(noise, dict):
      if sorted(noise) != ["noise"]:
        raise ValueError(f"noise of an autoregressive completion is uniform [S, B, H, W, C], "
                         f"or the dict {{'noise': that}}; got keys {sorted(noise)}.")
      noise = noise["noise"]
    noise = self._check_uniform(noise, shape)
    tile = lambda x: None if x is None else tf.tile(x, [num_samples] + [1] * (x.shape.rank - 1))
    flat = (num_samples * batch,) + self.image_shape
    keep, condition = tile(keep), tile(labels)
    if sweeps:
      cost = completion.gibbs_evaluations(keep, sweeps, self.num_levels)
      if cost > completion.MAX_GIBBS_IMAGE_EVALUATIONS:
        raise ValueError(
            f"gibbs_sweeps={sweeps} would evaluate {cost:,} image likelihoods (sweeps x "
            f"missing positions x {self.num_levels} levels x {flat[0]} completions), over "
            f"the bound of {completion.MAX_GIBBS_IMAGE_EVALUATIONS:,} per call: use fewer "
            "sweeps, completions or images per call.")
    fill = self._compiled("complete_fast" if fast else "complete_naive", lambda: tf.function(
        lambda x, k, u, c: self.complete_from_noise(x, k, {"noise": u}, c, fast=fast),
        reduce_retracing=True))
    completed = fill(tile(images), keep, tf.reshape(noise, flat), condition)  # [N, H, W, C]
    if sweeps:
      uniform = self._uniform_noise((sweeps, self.num_subpixels, flat[0]), seed, stream=1)
      refine = self._compiled("gibbs", lambda: tf.function(
          lambda x, k, c, u: completion.gibbs(self.log_prob_graph, x, k, c, u,
                                              self.num_levels), reduce_retracing=True))
      completed = refine(completed, keep, condition, uniform)
    return tf.reshape(completed, shape)

  def complete_from_noise(self, images, keep, noise, condition, builtin_only=False,
                          fast=None):
    """`complete` as a graph (the ancestral walk, no Gibbs sweeps).

    Args:
      images: int32 `[N, H, W, C]`, observed subpixels in place.
      keep: bool `[N, H, W, C]`, true where observed.
      noise: `{"noise": float32 [N, H, W, C]}`, uniform in [0, 1) (the dict of
        `completion_noise_specs`).
      condition: what the model conditions on, or None.
      builtin_only: TFLite builtin operators only (see `sample_from_noise`).
      fast: the cached sampler (default: where the model has one and, with
        `builtin_only`, it lowers to builtins).

    Returns:
      int32 `[N, H, W, C]`.
    """
    start, uniform = completion.clamped_start(images, keep, noise["noise"])
    return self._graph_fill(builtin_only, fast)(start, uniform, condition,
                                                completion.first_row_to_draw(keep),
                                                tf.constant(self.image_shape[0]))

  def conditional_log_prob(self, images, mask, labels=None, condition=None):
    """log p(x_missing | x_observed) of each image, in nats: exact for suffix masks.

      log p(x_missing | x_observed) = sum_{t missing} log p(x_t | x_<t)

    holds when every missing subpixel comes after every observed one in the generation
    order, and only then. Bits per missing dimension: `-result / (missing * ln 2)`.

    Args:
      images: integer `[B, H, W, C]` (or `[B, H, W]`) levels in `[0, K)`, complete.
      mask: as in `complete`; the missing subpixels of each image must be a suffix of
        the generation order.
      labels, condition: as in `log_prob`.

    Returns:
      float32 `[B]`.

    Raises:
      ValueError: for bad inputs, or a mask whose missing subpixels are not a suffix
        (its conditional likelihood has no exact form here).
    """
    images = self._check_images(images)
    keep = completion.keep_mask(mask, self.image_shape, images.shape[0])
    labels = self._check_condition(labels, condition, images.shape[0])
    suffix = completion.missing_is_suffix(keep)
    if not suffix.all():
      raise ValueError(
          f"The missing subpixels of image(s) {np.flatnonzero(~suffix)[:10].tolist()} are not "
          "a suffix of the generation order (raster, then channel): some observed "
          "subpixel comes after a missing one, and log p(missing | observed) then needs "
          "p(observed), a sum over the missing subpixels before it. Mask a suffix, e.g. "
          "the bottom rows.")
    terms = self._compiled("subpixel_log_probs", lambda: tf.function(
        lambda inputs: self.head.subpixel_log_probs(self(inputs), inputs["image"]),
        reduce_retracing=True))(self._inputs(images, labels))  # [B, H, W, C]
    return tf.reduce_sum(tf.where(keep, 0.0, terms), axis=[1, 2, 3])

  # ---- export (used by export/export_lib.py) ----------------------------------------

  def export_noise_specs(self, batch):
    """The randomness an exported sampler takes: uniform noise of the image's shape."""
    return {"noise": tf.TensorSpec((batch,) + self.image_shape, tf.float32)}

  def completion_noise_specs(self, batch):
    """The randomness an exported completion takes: the same uniform noise."""
    return self.export_noise_specs(batch)

  # Whether the cached sampler lowers to TFLite builtin operators (no TensorList ops).
  fast_sampler_is_builtin = True

  def sample_from_noise(self, noise, condition, builtin_only=False):
    """`sample` as a graph: noise dict -> int32 levels.

    The cached sampler where the model has one, so an exported loop costs what
    `model.sample` costs; with `builtin_only` (a TFLite sampler) the naive one where
    the cached sampler needs operators TFLite lacks. Both give the same images.
    """
    uniform = noise["noise"]  # [B, H, W, C]
    return self._graph_fill(builtin_only)(tf.zeros_like(uniform, tf.int32), uniform, condition,
                                          tf.constant(0), tf.constant(self.image_shape[0]))

  def log_prob_graph(self, images, condition):
    """log p(x | y) in nats `[B]` of int32 images, inside a traced function."""
    return self.distribution(self._inputs(images, condition)).log_prob(images)

  # ---- training ---------------------------------------------------------------------

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    """Mean negative log-likelihood in nats per image.

    Returned as sum / global batch size (`tf.nn.compute_average_loss`): under a
    distribution strategy each replica's gradients are summed, so dividing by the
    local batch would scale the update by the number of replicas.
    """
    del y
    self._refuse_sample_weight(sample_weight)
    images, _ = unpack_inputs(x)
    nll = -self.head.image_distribution(y_pred).log_prob(tf.cast(images, tf.int32))  # [B]
    self.nll_tracker.update_state(nll)
    self.bits_per_dim_tracker.update_state(
        distributions.bits_per_dim(nll, self.num_subpixels))
    loss = tf.nn.compute_average_loss(nll)
    if self.losses:
      loss += tf.nn.scale_regularization_loss(tf.add_n(self.losses))
    return loss
