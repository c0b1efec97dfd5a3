"""Trains the models of `tfgen.zoo`, and installs them into the package.

  python3 bench/zoo_train.py --name=pixelcnn-binarized_mnist            # train, or resume
  python3 bench/zoo_train.py --name=pixelcnn-binarized_mnist --install  # measure and ship
  python3 bench/zoo_train.py --name=vae-digits --remeasure_subset  # the zoo test's figure
  python3 bench/zoo_train.py --list                                     # the recipes
  python3 bench/zoo_train.py --gallery   # docs/zoo_gallery.png, and the README's table

Each entry is one `train_main.py` run (its recipe below), in --workdir/NAME: config,
checkpoints, TensorBoard, metrics, samples. Stopped (Ctrl-C, a kill, a reboot), the same
command resumes it from its last checkpoint. Train one entry at a time: a second
TensorFlow process on a 2-core machine slows both several times over.

--install, on a finished run: measures the entry's card (test NLL on the whole test
split; for VAEs the importance-weighted bound with k=5000 on 1,000 random test images,
and the ELBO; the NLL on the zoo test's fixed subset), then copies model.keras, config.json,
metrics.json and the sample grid into tfgen/zoo/entries/NAME/ with card.json. Prints the
card as JSON (and appends it to --out).
"""

import json
import os
import shutil
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import bench_data  # noqa: E402  (beside this file)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BINARIZED_MNIST = "npz:../shared/data/binarized_mnist.npz"
MNIST_8BIT = "npz:../shared/data/mnist_test.npz"

# name -> train_main.py flags (run from the repository root; everything else is the
# default: 30 epochs). Binarized MNIST is the fixed split of ../shared/data (50,000 / 10,000 /
# 10,000); the 8-bit MNIST images are the official test set with its labels, split
# 80/10/10 by the loader's fixed seed. The digits entries are the quick start's runs
# (PixelCNN++ with dropout).
RECIPES = {
    # PixelCNN: 15 epochs at beta_2 0.98, which fit in one working session. The 30-epoch
    # run at the defaults stood at 81.68 nats on the validation split after 22 epochs
    # (2026-12-07) when its machine was replaced and the checkpoints with it.
    "pixelcnn-binarized_mnist": ["--model=pixelcnn", f"--dataset={BINARIZED_MNIST}",
                                 "--epochs=15", "--adam_beta2=0.98"],
    "gated_pixelcnn-binarized_mnist": ["--model=gated_pixelcnn",
                                       f"--dataset={BINARIZED_MNIST}", "--epochs=8",
                                       "--adam_beta2=0.98"],
    "pixelcnn_pp-binarized_mnist": ["--model=pixelcnn_pp", f"--dataset={BINARIZED_MNIST}",
                                    "--epochs=6"],
    # The VAEs at the VAE benches' rate and precision: with train_main's defaults (2e-3,
    # bfloat16) the VAE's validation -ELBO stood at 103.8 nats after 59 of 100 epochs
    # (2026-12-07); at 1e-3 in float32 it was 98.2 after 59 and 97.0 after 100. Keras's
    # epoch lines gave mostly 12-13 ms per step in both precisions (the two runs one
    # after the other, alone): bfloat16 did not make its small dense layers faster.
    "vae-binarized_mnist": ["--model=vae", f"--dataset={BINARIZED_MNIST}", "--epochs=100",
                            "--learning_rate=1e-3", "--mixed_precision=none"],
    "conv_vae-binarized_mnist": ["--model=conv_vae", f"--dataset={BINARIZED_MNIST}",
                                 "--epochs=30", "--learning_rate=1e-3",
                                 "--mixed_precision=none"],
    # beta_2 0.98 as for the binarized PixelCNN and Gated PixelCNN: in one-epoch PixelCNN
    # runs at the default 0.999 the same command ended at 90.5 and 116.7 nats, at 0.98
    # at 88.5 and 87.2 (bench/results/likelihood_epoch_beta2_2026-12-07.jsonl).
    "gated_pixelcnn-mnist_conditional": ["--model=gated_pixelcnn", f"--dataset={MNIST_8BIT}",
                                         "--conditional", "--epochs=40",
                                         "--adam_beta2=0.98"],
    # The PixelRNNs: where the time allows (the Diagonal BiLSTM trains at a third of
    # the Row LSTM's speed).
    "row_lstm-binarized_mnist": ["--model=row_lstm", f"--dataset={BINARIZED_MNIST}",
                                 "--epochs=8"],
    "diagonal_bilstm-binarized_mnist": ["--model=diagonal_bilstm",
                                        f"--dataset={BINARIZED_MNIST}", "--epochs=3"],
}
RECIPES.update({f"{family}-digits": [f"--model={family}"] for family in (
    "pixelcnn", "gated_pixelcnn", "row_lstm", "diagonal_bilstm", "vae", "conv_vae",
    "autoencoder", "conv_autoencoder")})
# With the default (no dropout) PixelCNN++ overfits the 1,437 digits: its validation NLL
# rose from 79.6 nats at epoch 11 to 102.1 at epoch 30 (2026-12-07). The paper's 0.5.
RECIPES["pixelcnn_pp-digits"] = ["--model=pixelcnn_pp", "--hparams=dropout=0.5"]

# The papers' test NLL on binarized MNIST (nats), for the cards.
PAPERS = {
    "pixelcnn-binarized_mnist": (81.30, "van den Oord et al. 2016, Pixel Recurrent Neural "
                                 "Networks, Table 4"),
    "vae-binarized_mnist": (86.76, "Burda et al. 2016, Importance Weighted Autoencoders, "
                            "Table 1 (dynamic binarization; about 2 nats worse on this "
                            "fixed one)"),
    "row_lstm-binarized_mnist": (80.54, "van den Oord et al. 2016, Table 4"),
    "diagonal_bilstm-binarized_mnist": (79.20, "van den Oord et al. 2016, Table 4"),
}
# What the Gated PixelCNN and PixelCNN++ papers report is CIFAR-10 and ImageNet, not
# binarized MNIST; the conv VAE has no paper figure of its own.
DATASET_NAMES = {BINARIZED_MNIST: "binarized_mnist", MNIST_8BIT: "mnist_8bit"}
# k of the VAE cards' importance-weighted bound, on that many random test images.
CARD_IMPORTANCE_SAMPLES = 5000
CARD_IMPORTANCE_IMAGES = 1000
# Samples per class that a conditional entry's card classifies: 1,000 in all, so the
# rate's standard error is about 1.3 points (with 10 per class it was 4).
CARD_SAMPLES_PER_CLASS = 100

_NAME = flags.DEFINE_enum("name", None, sorted(RECIPES), "The zoo entry to train or install.")
_WORKDIR = flags.DEFINE_string(
    "workdir", os.path.join(os.path.dirname(_REPO), "zoo_runs"),
    "Where the runs live (outside the repository: checkpoints are large).")
_INSTALL = flags.DEFINE_bool("install", False, "Measure the finished run and copy it into "
                             "tfgen/zoo/entries/NAME.")
_REMEASURE_SUBSET = flags.DEFINE_bool(
    "remeasure_subset", False, "Measure the installed entry NAME on the zoo test's subset "
    "again (tfgen.zoo.subset_metrics, e.g. after SUBSET_IMPORTANCE_SAMPLES changed) and "
    "rewrite that part of its card; the run itself is not needed.")
_LIST = flags.DEFINE_bool("list", False, "Print the recipes and exit.")
_GALLERY = flags.DEFINE_bool(
    "gallery", False, "Draw docs/zoo_gallery.png (samples of every installed entry) and print "
    "the README's table of the entries' cards (tfgen.zoo.table()).")
GALLERY_PATH = os.path.join(_REPO, "docs", "zoo_gallery.png")
GALLERY_SAMPLES = 10  # Per entry, one row.
GALLERY_SIDE = 56  # Pixels of one enlarged sample.
_OUT = bench_data.define_out_flag()


def command(name):
  """The command line that trains entry `name` (what its card quotes)."""
  return f"python3 bench/zoo_train.py --name={name}"


def train(name, workdir):
  """Runs (or resumes) entry `name`'s training; returns train_main.py's exit status."""
  args = [sys.executable, "train_main.py", *RECIPES[name], "--verbose=2",
          f"--model_dir={os.path.join(workdir, name)}"]
  print(" ".join(args[1:]), flush=True)
  return subprocess.call(args, cwd=_REPO)


def _dataset_name(name):
  flag = next((f for f in RECIPES[name] if f.startswith("--dataset=")), "--dataset=digits")
  return DATASET_NAMES.get(flag.split("=", 1)[1], flag.split("=", 1)[1])


def install(name, run_dir):
  """Measures the finished run `run_dir` of entry `name` and copies it into the package.

  Returns:
    The card written to tfgen/zoo/entries/NAME/card.json.
  """
  import keras  # pylint: disable=g-import-not-at-top  # TensorFlow is slow.
  from tfgen import files  # pylint: disable=g-import-not-at-top
  from tfgen import runs  # pylint: disable=g-import-not-at-top
  from tfgen import zoo  # pylint: disable=g-import-not-at-top
  from tfgen.models import api  # pylint: disable=g-import-not-at-top
  os.chdir(_REPO)  # The recipes' data paths are relative to the repository.
  model, config = runs.load_model(run_dir)
  metrics = files.read_json(os.path.join(run_dir, "metrics.json"), "run's metrics")
  data = runs.load_data(config)
  card = {
      "name": name,
      "family": config["model"]["name"],
      "dataset": _dataset_name(name),
      "image_shape": metrics["image_shape"],
      "num_levels": metrics["num_levels"],
      "num_classes": getattr(model, "num_classes", None),
      "parameters": int(model.count_params()),
      "test": {k[len("test_"):]: v for k, v in metrics.items() if k.startswith("test_")},
      "test_images": data.info.split_sizes["test"],
      "subset": zoo.subset_metrics(model, data),
      "training": {k: metrics[k] for k in ("train_steps", "train_seconds", "train_cpu_seconds",
                                           "train_images_per_second", "precision",
                                           "resumed_from_step")},
      "command": command(name),
      "train_main_flags": RECIPES[name],
      "paper": dict(zip(("nll_nats", "source"), PAPERS[name])) if name in PAPERS else None,
      "machine": bench_data.machine(),
  }
  card["test_nll_nats"] = card["test"].get("nll_nats")
  if api.implements(model, api.VariationalModel):
    # The bound of the papers' tables: k = 5000 on random test images, with the ELBO.
    iwae = zoo.subset_metrics(model, data, size=CARD_IMPORTANCE_IMAGES,
                              num_importance_samples=CARD_IMPORTANCE_SAMPLES)
    card["importance_weighted"] = iwae
    card["test_nll_nats"] = iwae["nll_nats"]
  if getattr(model, "num_classes", None) and config["model"].get("conditional"):
    card["class_accuracy"] = bench_data.class_accuracy(
        model, data, per_class=CARD_SAMPLES_PER_CLASS, seed=1)
  out = os.path.join(zoo.ENTRIES_DIR, name)
  os.makedirs(out, exist_ok=True)
  # Without the optimizer's state: a third of the size, and what a user needs.
  bare = keras.models.load_model(os.path.join(run_dir, "model.keras"), compile=False)
  with files.atomic_path(os.path.join(out, "model.keras")) as partial:
    bare.save(partial)
  for file_name in ("config.json", "metrics.json") + zoo.SAMPLE_GRIDS:
    if os.path.isfile(os.path.join(run_dir, file_name)):
      shutil.copyfile(os.path.join(run_dir, file_name), os.path.join(out, file_name))
  files.atomic_write(os.path.join(out, "card.json"), json.dumps(card, indent=2) + "\n")
  return card


def remeasure_subset(name):
  """Rewrites the "subset" of installed entry `name`'s card; returns the card."""
  from tfgen import files  # pylint: disable=g-import-not-at-top
  from tfgen import runs  # pylint: disable=g-import-not-at-top
  from tfgen import zoo  # pylint: disable=g-import-not-at-top
  os.chdir(_REPO)  # The recipes' data paths are relative to the repository.
  entry = zoo.entry(name)
  model, config = runs.load_model(zoo.PREFIX + name)
  card = dict(entry.card, subset=zoo.subset_metrics(model, runs.load_data(config)),
              subset_machine=bench_data.machine())
  files.atomic_write(os.path.join(zoo.ENTRIES_DIR, name, "card.json"),
                     json.dumps(card, indent=2) + "\n")
  return card


def gallery():
  """Samples of every installed entry, one row each, into GALLERY_PATH; prints the table."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from PIL import ImageDraw  # pylint: disable=g-import-not-at-top
  from tfgen import images as images_lib  # pylint: disable=g-import-not-at-top
  from tfgen import zoo  # pylint: disable=g-import-not-at-top
  from tfgen.models import api  # pylint: disable=g-import-not-at-top
  label_width, rows = 200, []
  for entry in zoo.available():
    model = zoo.load(entry.name)
    if not api.implements(model, api.Sampler):
      continue
    labels = (np.arange(GALLERY_SAMPLES) % model.num_classes if model.num_classes else None)
    levels = model.sample(GALLERY_SAMPLES, seed=0, labels=labels).numpy()
    picture = images_lib.grid(levels, model.num_levels, columns=GALLERY_SAMPLES, padding=1)
    height, width = model.image_shape[:2]
    row = Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).convert(
        "RGB").resize((GALLERY_SAMPLES * GALLERY_SIDE, GALLERY_SIDE * height // width),
                      Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (label_width + row.width, row.height + 4), "white")
    canvas.paste(row, (label_width, 2))
    ImageDraw.Draw(canvas).text((6, row.height // 2 - 6), entry.name, fill="black")
    rows.append(canvas)
  out = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
  top = 0
  for row in rows:
    out.paste(row, (0, top))
    top += row.height
  out.save(GALLERY_PATH)
  print(f"Wrote {GALLERY_PATH}\n")
  print(zoo.table())


def main(argv):
  del argv
  if _GALLERY.value:
    gallery()
    return 0
  if _LIST.value:
    for name, recipe in RECIPES.items():
      print(f"{name}: python3 train_main.py {' '.join(recipe)}")
    return 0
  if not _NAME.value:
    raise app.UsageError("Pass --name (one of --list) or --list.")
  if not (_INSTALL.value or _REMEASURE_SUBSET.value):
    return train(_NAME.value, _WORKDIR.value)
  try:
    if _INSTALL.value:
      card = install(_NAME.value, os.path.join(_WORKDIR.value, _NAME.value))
    else:
      card = remeasure_subset(_NAME.value)
  except ValueError as e:  # RunError, ZooError: no finished run, or no installed entry.
    print(f"Error: {e}", file=sys.stderr)
    return 1
  bench_data.report(card, _OUT.value, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(app.run(main))
