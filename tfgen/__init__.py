"""tfgen: likelihood-based generative image models in TensorFlow and Keras 3."""

import os as _os

# tfgen is a Keras 3 library on the TensorFlow backend.
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
