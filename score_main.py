"""Scores images by likelihood for outlier detection: `python score_main.py --model_dir=DIR`.

  python score_main.py --model_dir=runs/pixelcnn-digits                  # its test split
  python score_main.py --model_dir=runs/vae-bmnist --dataset=folder:~/letters --outliers=

Writes a CSV (set, index, label, log_prob_nats, bits_per_dim) of every image of the run's
test split, of synthetic outliers made from it (--outliers) and of --outlier_dataset,
and prints per set the mean bits/dim and the AUROC of bits/dim against the test split.
Images are preprocessed as in training (the run's config.json).

A thin shell over `tfgen.scoring`: this file only parses flags.
"""

import json
import os
import sys

from absl import app
from absl import flags

from tfgen import cli

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "A finished train_main.py run directory, or zoo:NAME (a trained model "
    "that ships with tfgen; tfgen.zoo.available() lists them).")
_DATASET = flags.DEFINE_string(
    "dataset", None, "Images to score, a tfgen.data spec (digits, npz:PATH, folder:PATH, a "
    "TFDS name); default: the run's dataset.")
_SPLIT = flags.DEFINE_string("split", "test", "Split of --dataset to score.")
_OUTLIERS = flags.DEFINE_list(
    "outliers", ["noise", "flip"], "Synthetic outlier sets made from the scored split: "
    "noise, flip, rotate, invert (empty for none).")
_OUTLIER_DATASET = flags.DEFINE_string(
    "outlier_dataset", None, "A dataset spec of real outliers, every split of it scored, "
    "preprocessed like the run's data (and resized / reduced to the model's levels where "
    "they still differ).")
_OUT = flags.DEFINE_string("out", None, "CSV to write (default MODEL_DIR/scores.csv; for "
                           "zoo:NAME, scores-NAME.csv in the working directory).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Images per batch.")
_MAX_IMAGES = flags.DEFINE_integer(
    "max_images", None, "Score a random subset (drawn with --seed) of this many images per "
    "set; default all.")
_IMPORTANCE_SAMPLES = flags.DEFINE_integer(
    "eval_importance_samples", 250, "k of a VAE's importance-weighted log p(x).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of subsets, synthetic noise and importance "
                             "samples.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _MODEL_DIR.value:
    print("\nError: pass --model_dir, the directory of a finished train_main.py run.",
          file=sys.stderr)
    return 1
  from tfgen import runs  # Imported after flag parsing: TensorFlow is slow.
  from tfgen import scoring
  from tfgen import zoo
  try:
    if _BATCH_SIZE.value < 1 or (_MAX_IMAGES.value is not None and _MAX_IMAGES.value < 1):
      raise ValueError("--batch_size and --max_images must be positive.")
    bad = [k for k in _OUTLIERS.value if k not in scoring.OUTLIER_KINDS]
    if bad:
      raise ValueError(f"Unknown --outliers {bad}; choose from "
                       f"{', '.join(scoring.OUTLIER_KINDS)}.")
    model, config = runs.load_model(_MODEL_DIR.value)
    changes = {"dataset": _DATASET.value} if _DATASET.value else {}
    data = runs.load_data(config, **changes)
    outlier_data, adapted = None, {}
    if _OUTLIER_DATASET.value:
      outlier_data, adapted = runs.load_data_like(model, config, _OUTLIER_DATASET.value)
    sets = [_SPLIT.value] + list(_OUTLIERS.value) + (
        [_OUTLIER_DATASET.value] if _OUTLIER_DATASET.value else [])
    print(f"Scoring {', '.join(sets)} with {model.name} ...", file=sys.stderr, flush=True)
    scores, summary = scoring.score_sets(
        model, data, _SPLIT.value, _OUTLIERS.value, outlier_data,
        batch_size=_BATCH_SIZE.value, num_importance_samples=_IMPORTANCE_SAMPLES.value,
        max_images=_MAX_IMAGES.value, seed=_SEED.value)
    out = _OUT.value or (
        f"scores-{zoo.entry(_MODEL_DIR.value).name}.csv"
        if _MODEL_DIR.value.startswith(zoo.PREFIX)
        else os.path.join(_MODEL_DIR.value, "scores.csv"))  # Never into the package.
    scoring.write_csv(out, scores)
  except ValueError as e:  # Incl. RunError and DatasetUnavailableError.
    print(f"\nError: {e}", file=sys.stderr)
    return 1
  except OSError as e:
    print(f"\nError: cannot read or write {e.filename or 'a file'} ({e.strerror or e}).",
          file=sys.stderr)
    return 1
  report = {"csv": out, "sets": summary}
  if adapted:
    report["outlier_preprocessing"] = {k: list(v) if isinstance(v, tuple) else v
                                       for k, v in adapted.items()}
  print(json.dumps(report, indent=2))
  return 0


if __name__ == "__main__":
  cli.run(main)
