"""The model registry: `tfgen.models.build(name, ...)` is how every model is made."""

from tfgen.models import api
from tfgen.models import base
from tfgen.models.gated_pixelcnn import GatedPixelCNN
from tfgen.models.pixelcnn import PixelCNN
from tfgen.models.pixelcnn_pp import PixelCNNPP
from tfgen.models.pixelrnn import DiagonalBiLSTM
from tfgen.models.pixelrnn import RowLSTM
from tfgen.models.vae import VAE
from tfgen.models.vae import Autoencoder
from tfgen.models.vae import ConvAutoencoder
from tfgen.models.vae import ConvVAE

_REGISTRY = {cls.MODEL_NAME: cls for cls in (PixelCNN, GatedPixelCNN, PixelCNNPP, RowLSTM,
                                             DiagonalBiLSTM, Autoencoder,
                                             ConvAutoencoder, VAE, ConvVAE)}


def register(cls):
  """Adds a model class to the registry under its `MODEL_NAME`; returns the class.

  For families defined outside tfgen (tfgen's own are listed in `_REGISTRY`). Usable
  as a class decorator, after `@keras.saving.register_keras_serializable(...)`.

  Raises:
    ValueError: for a class that is not a `base.ImageModel`, has no `MODEL_NAME`, or
      whose name another class already has.
  """
  if not (isinstance(cls, type) and issubclass(cls, base.ImageModel)) or not cls.MODEL_NAME:
    raise ValueError(f"{cls!r} is not a tfgen model class: subclass "
                     "tfgen.models.base.ImageModel (or AutoregressiveModel) and set MODEL_NAME.")
  if _REGISTRY.get(cls.MODEL_NAME, cls) is not cls:
    raise ValueError(f"Model name {cls.MODEL_NAME!r} is taken by "
                     f"{_REGISTRY[cls.MODEL_NAME].__name__}; choose another MODEL_NAME.")
  _REGISTRY[cls.MODEL_NAME] = cls
  return cls


def available():
  """Names of the models `build` accepts."""
  return sorted(_REGISTRY)


def model_class(name):
  """The class registered under `name`; ValueError listing the valid names otherwise."""
  if name not in _REGISTRY:
    raise ValueError(f"Unknown model {name!r}. Available models: {', '.join(available())}.")
  return _REGISTRY[name]


def default_hparams(name):
  """The hyper-parameters of model `name` with their default values."""
  return dict(model_class(name).HPARAMS)


def build(name, image_shape, num_levels, num_classes=None, **hparams):
  """Builds model `name` for images of `image_shape` with `num_levels` levels.

  Args:
    name: one of `available()`.
    image_shape: `(H, W, C)`.
    num_levels: `K`, levels per subpixel.
    num_classes: number of classes for a class-conditional model p(x | y), or None.
    **hparams: model hyper-parameters; see `default_hparams(name)`. The
      autoregressive models also take `condition_dim=D`: p(x | h) of a float vector
      h `[B, D]`, passed as `condition=` to `log_prob`/`sample` and under the key
      "condition" of a dataset's elements.

  Returns:
    A built `keras.Model` with `log_prob`, `sample`, and Keras `fit`/`evaluate`.

  Raises:
    ValueError: for an unknown model name or unknown or ill-typed hyper-parameters
      (the message lists the valid ones).
  """
  return model_class(name)(image_shape, num_levels, num_classes, **hparams)


__all__ = ["api", "available", "base", "build", "default_hparams", "model_class", "register",
           "Autoencoder", "ConvAutoencoder", "ConvVAE", "DiagonalBiLSTM", "GatedPixelCNN",
           "PixelCNN", "PixelCNNPP", "RowLSTM", "VAE"]
