"""A finished `train_main.py` run directory: its trained model and its data.

The tools that work on a trained model (`python -m export`, `score_main.py`) open runs
here, so a missing, unfinished or damaged run directory is reported the same way
everywhere.

Layout read (written by `tfgen.train_lib.train_and_evaluate`):
  MODEL_DIR/model.keras     the trained Keras model
  MODEL_DIR/config.json     the `tfgen.config.TrainConfig` of the run

Wherever a run directory is accepted, "zoo:NAME" names a trained model that ships with
tfgen (`tfgen.zoo`).
"""

import os

from tfgen import config as config_lib
from tfgen import files


class RunError(ValueError):
  """A run directory that cannot be used; the message says why and what to do."""


def resolve(model_dir):
  """The directory of `model_dir`, a path or "zoo:NAME" (`tfgen.zoo`).

  Raises:
    RunError: for a zoo name that is not installed (the message lists those that are).
  """
  from tfgen import zoo  # pylint: disable=g-import-not-at-top
  try:
    return zoo.resolve(model_dir)
  except zoo.ZooError as e:
    raise RunError(str(e)) from e


def load_model(model_dir):
  """Loads `model_dir/model.keras` and `config.json` (an empty dict when absent).

  Args:
    model_dir: a finished run's directory, or "zoo:NAME" (`tfgen.zoo`).

  Returns:
    `(model, config dict)`; the model compiled (a zoo entry's file holds no optimizer).

  Raises:
    RunError: for a missing directory or model file, or a file Keras cannot load.
  """
  import keras  # pylint: disable=g-import-not-at-top
  import tfgen.models  # noqa: F401  Registers the model classes for deserialization.
  model_dir = resolve(model_dir)
  if not model_dir or not os.path.isdir(model_dir):
    raise RunError(
        f"--model_dir {model_dir!r} is not a directory. Pass the --model_dir of a finished "
        "train_main.py run (it holds model.keras).")
  path = os.path.join(model_dir, "model.keras")
  if not os.path.isfile(path):
    raise RunError(
        f"{model_dir} has no model.keras: training did not finish there, or this is not a "
        "train_main.py run directory. Train to the end (or resume the run) first.")
  try:
    model = keras.models.load_model(path)
  except Exception as e:  # Keras raises many kinds for a damaged archive.
    raise RunError(
        f"{path} cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
        "The file is damaged or was written by an incompatible version; re-run training "
        "or restore the file.") from e
  if not model.compiled:  # Saved without its optimizer: evaluation still needs compile().
    model.compile()
  config = {}
  config_path = os.path.join(model_dir, "config.json")
  if os.path.isfile(config_path):
    try:
      config = files.read_json(config_path, "run's configuration")
    except (OSError, ValueError) as e:
      raise RunError(str(e)) from e
  return model, config


def train_config(config, **changes):
  """The run's `tfgen.config.TrainConfig` (from config.json contents) with `changes`.

  Offline by default (`download=False`): a tool on a trained model should not start
  downloading a dataset. Both the nested config.json and the older flat one load.

  Raises:
    RunError: for a config.json that is not a configuration of this version.
  """
  try:
    return config_lib.TrainConfig.from_json(config, **dict({"download": False}, **changes))
  except (TypeError, ValueError) as e:
    raise RunError(f"config.json does not describe a training run ({e}).") from e


def load_data(config, **changes):
  """The run's data, preprocessed as in training (`changes` e.g. dataset=another spec).

  Raises:
    ValueError, tfgen.data.DatasetUnavailableError: as `tfgen.data.load`.
  """
  from tfgen import data as data_lib  # pylint: disable=g-import-not-at-top  # TensorFlow.
  return data_lib.load_config(train_config(config, **changes).data)


def load_data_like(model, config, dataset):
  """Another dataset, preprocessed so its images match what `model` takes.

  Starts from the run's preprocessing; where the images still differ from the model's
  `(H, W)` or levels, resizes them (`image_size`) and reduces their levels
  (`reduce_levels`, when the source has more levels than the model and the run did not
  binarize). Channels are never converted: a colour set against a grayscale model is
  an error of `tfgen.scoring.score_sets`.

  Returns:
    `(ImageData, changes)`: the data and the preprocessing it took beyond the run's
    (a dict, empty when none was needed).
  """
  data = load_data(config, dataset=dataset)
  changes = {}
  info = data.info
  if tuple(info.image_shape[:2]) != tuple(model.image_shape[:2]):
    changes["image_size"] = tuple(model.image_shape[:2])
  if info.num_levels > model.num_levels and train_config(config).data.binarize == "none":
    changes["reduce_levels"] = model.num_levels
  if changes:
    data = load_data(config, dataset=dataset, **changes)
  return data, changes
