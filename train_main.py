"""Trains a tfgen model: `python train_main.py --model=pixelcnn`.

A thin shell over `tfgen.train_lib.train_and_evaluate`: this file only parses flags.
"""

import os
import sys

from absl import app
from absl import flags

from tfgen import cli
from tfgen import hparams_parser

_MODEL = flags.DEFINE_string("model", "pixelcnn", "Model name, e.g. pixelcnn.")
_HPARAMS = flags.DEFINE_string(
    "hparams", "", "Model hyper-parameters as comma-separated key=value pairs, e.g. "
    "'hidden_dim=64,num_blocks=8'; widths as dash-separated lists, e.g. "
    "'hidden_dims=500-500' or 'hidden_dims=128'. Every model's are listed at the end of "
    "--help; unknown keys list the valid ones.")
_DATASET = flags.DEFINE_string(
    "dataset", "digits", "digits (bundled, no download), npz:PATH, folder:PATH, or a "
    "TensorFlow Datasets name (mnist, binarized_mnist, fashion_mnist, cifar10, ...).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TensorFlow Datasets data directory.")
_DOWNLOAD = flags.DEFINE_bool("download", True, "Let TensorFlow Datasets download data.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Resize images to this side.")
_NUM_LEVELS = flags.DEFINE_integer(
    "num_levels", None, "Levels of the stored data (npz), where they cannot be inferred.")
_REDUCE_LEVELS = flags.DEFINE_integer(
    "reduce_levels", None, "Reduce the data to this many levels (e.g. 256 -> 8).")
_BINARIZE = flags.DEFINE_enum("binarize", "none", ["none", "threshold", "dynamic"],
                              "Binarize images at half range, or by sampling each epoch.")
_RANDOM_FLIP = flags.DEFINE_bool("random_flip", False, "Random horizontal flips.")
_CONDITIONAL = flags.DEFINE_bool("conditional", False,
                                 "Model p(x | y) with the dataset's class labels.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Global batch size.")
_EPOCHS = flags.DEFINE_float("epochs", 30.0, "Passes over the training split.")
_TRAIN_STEPS = flags.DEFINE_integer(
    "train_steps", 0, "Optimizer steps; overrides --epochs when positive.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 2e-3, "Adam (peak) learning rate.")
_LR_SCHEDULE = flags.DEFINE_enum("lr_schedule", "cosine", ["cosine", "constant", "exponential"],
                                 "cosine: decay to zero over the run; constant; exponential: "
                                 "lr * 0.999995^step (PixelCNN++).")
_MAX_TRAIN_SECONDS = flags.DEFINE_float(
    "max_train_seconds", 0.0, "Stop training after this many seconds (0: no limit).")
_BUDGET_CLOCK = flags.DEFINE_enum(
    "budget_clock", "wall", ["wall", "cpu"],
    "What --max_train_seconds counts: wall seconds, or CPU seconds of this process.")
_SPLIT_FRACTIONS = flags.DEFINE_list(
    "split_fractions", ["0.8", "0.1", "0.1"],
    "train,valid,test fractions for a dataset stored as one array (npz with 'images').")
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Output directory (default runs/MODEL-DATASET). An existing run "
    "there is resumed.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 64, "Images to sample at the end.")
_STRATEGY = flags.DEFINE_enum(
    "strategy", "mirrored", ["mirrored", "one_device", "multi_worker"],
    "mirrored: all local GPUs (the CPU when there are none); one_device: one device; "
    "multi_worker: several processes or machines (TF_CONFIG, or --worker_hosts and "
    "--task_index).")
_WORKER_HOSTS = flags.DEFINE_list(
    "worker_hosts", [], "multi_worker: host:port of every worker, the same on every worker.")
_TASK_INDEX = flags.DEFINE_integer(
    "task_index", None, "multi_worker: this worker's index in --worker_hosts (0: chief).")
_MIXED_PRECISION = flags.DEFINE_enum(
    "mixed_precision", "none", ["auto", "none", "mixed_float16", "mixed_bfloat16"],
    "Training precision. none: float32. auto: bfloat16 where the CPU (AVX512_BF16, AMX) or GPU "
    "(compute capability 8+) has it natively, float16 on GPUs with 7.x, else float32. "
    "The pixel distribution, evaluation and model.keras stay float32.")
_CHECKPOINT_EVERY = flags.DEFINE_integer("checkpoint_every", 200, "Steps between checkpoints.")
_EVAL_IMPORTANCE_SAMPLES = flags.DEFINE_integer(
    "eval_importance_samples", 250,
    "VAEs: importance samples k of the test estimate of -log p(x) (test_nll_nats).")
_VERBOSE = flags.DEFINE_integer("verbose", 1, "0 silent, 1 progress bars, 2 one line per epoch.")
_EMA_DECAY = flags.DEFINE_float(
    "ema_decay", 0.0, "Polyak averaging of the weights for evaluation, sampling and the "
    "saved model, e.g. 0.9995 (PixelCNN++); 0 turns it off.")
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "After training, export the model here (SavedModel and TFLite "
    "samplers, as `python -m export`).")
_EXPORT_BATCH_SIZE = flags.DEFINE_integer("export_batch_size", 16,
                                          "Fixed batch of the exported TFLite samplers.")


def _split_fractions():
  try:
    return tuple(float(f) for f in _SPLIT_FRACTIONS.value)
  except ValueError:
    raise ValueError(f"--split_fractions must be three numbers like 0.8,0.1,0.1, got "
                     f"{','.join(_SPLIT_FRACTIONS.value)}.") from None


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
    config = train_lib.TrainConfig(
        model=_MODEL.value, hparams=hparams_parser.parse(_HPARAMS.value),
        dataset=_DATASET.value, data_dir=_DATA_DIR.value, image_size=_IMAGE_SIZE.value,
        num_levels=_NUM_LEVELS.value, reduce_levels=_REDUCE_LEVELS.value,
        binarize=_BINARIZE.value, random_flip=_RANDOM_FLIP.value,
        conditional=_CONDITIONAL.value, download=_DOWNLOAD.value,
        batch_size=_BATCH_SIZE.value, epochs=_EPOCHS.value, train_steps=_TRAIN_STEPS.value,
        learning_rate=_LEARNING_RATE.value, lr_schedule=_LR_SCHEDULE.value,
        max_train_seconds=_MAX_TRAIN_SECONDS.value, budget_clock=_BUDGET_CLOCK.value,
        split_fractions=_split_fractions(), seed=_SEED.value,
        num_samples=_NUM_SAMPLES.value, strategy=_STRATEGY.value,
        worker_hosts=tuple(_WORKER_HOSTS.value), task_index=_TASK_INDEX.value,
        mixed_precision=_MIXED_PRECISION.value,
        checkpoint_every=_CHECKPOINT_EVERY.value,
        eval_importance_samples=_EVAL_IMPORTANCE_SAMPLES.value, verbose=_VERBOSE.value,
        ema_decay=_EMA_DECAY.value)
    model_dir = _MODEL_DIR.value or os.path.join(
        "runs", f"{config.model}-{config.dataset.replace(':', '_').replace('/', '_')}")
    if _EXPORT_DIR.value:  # Refused now, not after hours of training.
      from export import export_lib  # pylint: disable=g-import-not-at-top
      from tfgen import models  # pylint: disable=g-import-not-at-top
      export_lib.check_exportable(models.model_class(config.model))
    chief = []
    metrics = train_lib.train_and_evaluate(
        config, model_dir,
        on_trained=lambda m: chief.append(train_lib.is_chief(m.distribute_strategy)))
    if _EXPORT_DIR.value and all(chief):  # Only the chief wrote model.keras.
      from export import export_lib
      export_lib.export_run(model_dir, _EXPORT_DIR.value, batch_size=_EXPORT_BATCH_SIZE.value)
      print(f"\nExported to {_EXPORT_DIR.value} (see its README.md).")
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
  print(f"\nWrote {', '.join(_outputs(model_dir))}:")
  for key, value in metrics.items():
    print(f"  {key}: {value}")
  return 0


if __name__ == "__main__":
  cli.run(main, extra_help=_models_help)
