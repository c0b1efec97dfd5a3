"""What a tfgen model can do, declared once: the capabilities tools ask for.

Every model is a `tfgen.models.base.ImageModel` (images `[B, H, W, C]` of integer
levels in `[0, K)`, optionally conditioned on labels or a vector) and declares, by
inheriting from the classes below, which of these it implements:

  LikelihoodModel   log p(x | y): scoring, bits/dim, exported `log_prob`
  Sampler           x ~ p(x | y) from explicit noise: sample grids, exported samplers
  Completer         x_missing ~ p(x_missing | x_observed): completions, exported
                    `complete`
  LatentModel       a code z per image: encode, decode, latent figures
  VariationalModel  a LatentModel whose encoder is a posterior q(z | x) and whose
                    codes have a prior p(z)

The driver (`tfgen.train_lib`), the scorer (`tfgen.scoring`), the latent tools
(`tfgen.latents`) and the exporter (`export/export_lib.py`) decide what to do with a
model by `isinstance(model, api.Sampler)` and the like, never by probing for
attributes, so a new family gets every tool that fits its capabilities by declaring
them, and a missing method is an error when the class is instantiated (these are
abstract base classes), not deep inside an export.

Naming: `condition` is what a model conditions on, whatever it is: int32 class labels
`[B]` for a model built with `num_classes`, float32 `[B, D]` for one built with
`condition_dim`, or None. The public methods keep `labels=` and `condition=` apart
(to check each against the model); the graph-level methods below take the checked
value as `condition`.

Glossary of tensor shapes:
  B: batch.  H, W, C: image height, width, channels.  D: code (latent) size.
"""

import abc


class LikelihoodModel(abc.ABC):
  """A density model: log p(x | y) of images, exact or estimated.

  Attributes:
    LOG_PROB_IS_EXACT: True when `log_prob` is the exact log-likelihood (autoregressive
      models); False for an estimate (a VAE's importance-weighted bound), in which case
      `likelihood_options` passes the estimator's settings and the exported `log_prob`
      uses `EXPORT_IMPORTANCE_SAMPLES` samples.
  """

  LOG_PROB_IS_EXACT = True
  EXPORT_IMPORTANCE_SAMPLES = None

  @abc.abstractmethod
  def log_prob(self, images, labels=None, **options):
    """log p(x) (or log p(x | y)) of each image in nats, float32 `[B]`."""

  def likelihood_options(self, num_importance_samples, seed):
    """The keyword arguments of `log_prob` for an estimator with these settings.

    An exact likelihood takes none; an estimate takes its number of samples and seed.
    Tools that score with any model (`tfgen.scoring`) pass these through.
    """
    if self.LOG_PROB_IS_EXACT:
      return {}
    return {"num_importance_samples": int(num_importance_samples), "seed": int(seed)}

  @abc.abstractmethod
  def log_prob_graph(self, images, condition):
    """log p(x | y) in nats `[B]` of checked int32 images, inside a traced function."""

  @abc.abstractmethod
  def test_metrics(self, dataset, **options):
    """Test-set metrics, a dict of floats named with their units (e.g. "nll_nats")."""


class Sampler(abc.ABC):
  """A model that draws images by inverse-CDF sampling from explicit noise.

  Attributes:
    SAMPLE_REPORTS_PROGRESS: whether `sample` takes `progress=` (samplers slow enough
      to report it: the autoregressive ones).
  """

  SAMPLE_REPORTS_PROGRESS = False

  @abc.abstractmethod
  def sample(self, num, seed=None, labels=None, noise=None, **options):
    """Draws `num` images, int32 `[num, H, W, C]`; the same seed or noise, the same images."""

  @abc.abstractmethod
  def export_noise_specs(self, batch):
    """{name: TensorSpec} of the randomness `sample_from_noise` takes (batch may be None)."""

  @abc.abstractmethod
  def sample_from_noise(self, noise, condition, builtin_only=False):
    """`sample` as a graph: the noise dict -> int32 levels `[B, H, W, C]`.

    With `builtin_only`, only operators that TFLite has as builtins (the exported
    TFLite sampler); the images are the same either way.
    """

  def export_extras(self, batch):
    """Family-specific exported signatures, {name: (fn, [TensorSpec])}; none by default."""
    del batch
    return {}


class Completer(abc.ABC):
  """A model that completes images: missing subpixels drawn given the observed ones.

  A mask marks the observed subpixels (true = kept); see `tfgen.completion` for when a
  completion is an exact sample of p(x_missing | x_observed).
  """

  @abc.abstractmethod
  def complete(self, images, mask, num_samples=1, seed=None, noise=None, labels=None,
               **options):
    """`num_samples` completions of each image, int32 `[S, B, H, W, C]`."""

  @abc.abstractmethod
  def complete_from_noise(self, images, keep, noise, condition, builtin_only=False):
    """`complete` as a graph: int32 images and bool keep `[N, H, W, C]`, and the noise
    dict of `completion_noise_specs` -> int32 completions `[N, H, W, C]`; with
    `builtin_only`, TFLite builtin operators only, the same images. The exported
    `complete` signature and TFLite completer run it."""

  @abc.abstractmethod
  def completion_noise_specs(self, batch):
    """`{name: tf.TensorSpec}` of the randomness `complete_from_noise` takes."""


class LatentModel(abc.ABC):
  """A model with a code z `[B, D]` per image: autoencoders and VAEs."""

  @property
  @abc.abstractmethod
  def latent_dim(self):
    """D, the size of a code."""

  @abc.abstractmethod
  def encode(self, images, labels=None):
    """The code of each image (`[B, D]`), or for a VariationalModel q(z | x)."""

  @abc.abstractmethod
  def decode(self, z, labels=None):
    """What the decoder makes of codes `z` `[B, D]`: p(x | z) for a VariationalModel, the
    mean image for an autoencoder."""

  @abc.abstractmethod
  def features(self, images, labels=None):
    """A deterministic code per image for downstream models, float32 `[B, D]`."""

  @abc.abstractmethod
  def decode_mean(self, z, labels=None):
    """The decoder's mean image of codes `z` `[B, D]`, float levels `[B, H, W, C]`."""

  def reconstruct(self, images, labels=None):
    """Encodes and decodes: the mean image of each image's code (float levels)."""
    return self.decode_mean(self.features(images, labels), labels)


class VariationalModel(LatentModel, LikelihoodModel, Sampler):
  """A latent-variable density p(x) = E_p(z)[p(x | z)] with an encoder q(z | x).

  `encode` returns the posterior q(z | x) as a TFP distribution with batch `[B]`. Two
  properties tell the latent tools how to read the codes: with the standard normal
  prior, traversals run around its mean (-3 .. 3); where moreover q is a diagonal
  Gaussian, the KL splits over dimensions (`dimension_kl`) and ranks them by use.
  Otherwise tools rank dimensions by the variance of `features`, as for an autoencoder.
  """

  LOG_PROB_IS_EXACT = False

  @property
  def prior_is_standard_normal(self):
    """Whether p(z) = N(0, I)."""
    return True

  @property
  def posterior_is_diagonal_gaussian(self):
    """Whether q(z | x) = N(mu(x), diag sigma(x)^2)."""
    return True

  @abc.abstractmethod
  def dimension_kl(self, posterior):
    """KL(q(z_d | x) || N(0, 1)) per image and dimension, nats `[B, D]`, of a posterior
    `encode` returned; only where both properties above hold (ValueError otherwise)."""


def implements(model, capability):
  """Whether `model` (an instance or a class) declares `capability`."""
  cls = model if isinstance(model, type) else type(model)
  return issubclass(cls, capability)


def capabilities(model):
  """The names of the capabilities `model` (an instance or a class) declares."""
  return [c.__name__ for c in (LikelihoodModel, Sampler, Completer, LatentModel,
                               VariationalModel) if implements(model, c)]


__all__ = ["Completer", "LatentModel", "LikelihoodModel", "Sampler", "VariationalModel",
           "capabilities", "implements"]
