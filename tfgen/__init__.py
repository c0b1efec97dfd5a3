"""tfgen: likelihood-based generative image models in TensorFlow and Keras 3.

`import tfgen` is cheap: the submodules (`tfgen.models`, `tfgen.data`, ...) load, with
TensorFlow, on first use, so `tfgen.models.build(...)` works after a bare
`import tfgen`.
"""

import importlib as _importlib
import os as _os

# tfgen is a Keras 3 library on the TensorFlow backend.
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

_SUBMODULES = ("cli", "config", "data", "distributions", "files", "hparams_parser", "images",
               "incremental", "latents", "layers", "models", "precision", "runs", "sampling",
               "scoring", "train_lib", "zoo")


def __getattr__(name):
  if name in _SUBMODULES:
    return _importlib.import_module(f"tfgen.{name}")
  raise AttributeError(f"module 'tfgen' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_SUBMODULES))


__all__ = list(_SUBMODULES)
