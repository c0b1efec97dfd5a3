"""Trains a tfgen model: `python train_main.py --model=pixelcnn`.

A thin shell over `tfgen.train_lib.train_and_evaluate`: this file only parses flags.
"""

import os
import sys

from absl import app
from absl import flags

from tfgen import cli
from tfgen import config as config_lib

# One flag per field of tfgen.config.TrainConfig, with its help; --model_dir is where
# the run lives, not part of it.
config_lib.define_flags(flags.FLAGS, module_name=sys.argv[0] if __name__ == "__main__"
                        else __name__)
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Output directory (default runs/MODEL-DATASET). An existing run "
    "there is resumed.")


def _models_help():
  """The models and their hyper-parameters with defaults, for --help."""
  from tfgen import models  # pylint: disable=g-import-not-at-top
  lines = ["models (--model) and their hyper-parameters (--hparams, with defaults):"]
  for name in models.available():
    hparams = ", ".join(f"{k}={v}" for k, v in models.default_hparams(name).items())
    lines.append(f"  {name}: {hparams}")
  return "\n".join(lines)


def _outputs(model_dir):
  """The run's output files that exist, for the closing line."""
  names = ("samples.png", "samples_by_class.png", "reconstructions.png", "traversal.png",
           "latent_scatter.png", "manifold.png", "model.keras", "metrics.json")
  return [f"{model_dir}/{n}" for n in names if os.path.exists(os.path.join(model_dir, n))]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfgen import train_lib  # Imported after flag parsing: TensorFlow is slow.
  try:
    config = config_lib.from_flags(flags.FLAGS)
    model_dir = _MODEL_DIR.value or os.path.join(
        "runs", f"{config.model.name}-"
        f"{config.data.dataset.replace(':', '_').replace('/', '_')}")
    metrics = train_lib.train_and_evaluate(config, model_dir)
  except (ValueError, train_lib.NonFiniteLossError) as e:  # Incl. DatasetUnavailableError.
    print(f"\nError: {e}", file=sys.stderr)
    return 1
  except tf.errors.InvalidArgumentError as e:  # The input checks of a training step.
    print(f"\nError: {cli.first_line(e)} Checkpoints written before this step are kept.",
          file=sys.stderr)
    return 1
  except OSError as e:
    print(f"\nError: cannot read or write {e.filename or 'a file'} ({e.strerror or e}). "
          "Check that --model_dir (and --data_dir) are writable paths.", file=sys.stderr)
    return 1
  written = _outputs(model_dir) + ([config.outputs.export_dir] if config.outputs.export_dir
                                   else [])
  print(f"\nWrote {', '.join(written)}:")
  for key, value in metrics.items():
    print(f"  {key}: {value}")
  return 0


if __name__ == "__main__":
  cli.run(main, extra_help=_models_help)
