"""Outlier detection by likelihood on binarized MNIST: AUROC of bits/dim per outlier set.

  python bench/outlier_bench.py                                  # PixelCNN and FC VAE
  python bench/outlier_bench.py --models=vae --cpu_seconds=300 --workdir=runs/outlier
  python bench/outlier_bench.py --model_dirs=zoo:pixelcnn-binarized_mnist,zoo:vae-binarized_mnist

Trains each model with `tfgen.train_lib` on the 50,000 training images of
`../shared/data/binarized_mnist.npz` for --cpu_seconds of process CPU time (or reuses a
finished run in --workdir/MODEL), then scores --images test images drawn at random
(the split is sorted by class; the run's test NLL is on the same images) and the same
number of outliers of each kind (`tfgen.scoring.OUTLIER_KINDS`): uniform noise,
left-right mirrored digits (letter-like shapes with the digits' own stroke statistics),
digits rotated 90 degrees, and inverted digits. With --model_dirs, scores finished runs
or zoo entries instead of training (their test NLL is then that of their own run).
Prints one JSON object with, per model, its test NLL, and per outlier set the mean
bits/dim and the AUROC (1 = every outlier scored above every digit, 0.5 =
chance, below 0.5 = the model finds the outliers *more* likely).
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import bench_data  # noqa: E402  (beside this file)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHARED = os.path.join(os.path.dirname(_REPO), "shared", "data")
_DATA_DIR = flags.DEFINE_string("data_dir", _SHARED, "Directory holding binarized_mnist.npz.")
_MODELS = flags.DEFINE_list("models", ["pixelcnn", "vae"], "Models to train and score.")
_CPU_SECONDS = flags.DEFINE_float("cpu_seconds", 300.0, "Training budget per model.")
_IMAGES = flags.DEFINE_integer("images", 1000, "Test images drawn at random (the split is "
                                "sorted by class), and outliers per set, scored.")
_IMPORTANCE = flags.DEFINE_integer("importance_samples", 250, "k of the VAE's estimate.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of training, the test subset and the noise.")
_MODEL_DIRS = flags.DEFINE_list(
    "model_dirs", [], "Score these finished train_main.py runs or zoo:NAME entries (trained "
    "on binarized MNIST) instead of training --models.")
_OUT = bench_data.define_out_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Keep runs in WORKDIR/MODEL (default: temp; "
                               "a finished run there is reused).")


def main(argv):
  del argv
  import tempfile
  from tfgen import runs
  from tfgen import scoring
  from tfgen import config as config_lib
  from tfgen import train_lib
  path = os.path.join(_DATA_DIR.value, "binarized_mnist.npz")
  if not os.path.isfile(path):
    print(f"Error: {path} not found; pass --data_dir with binarized_mnist.npz.", file=sys.stderr)
    return 1
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="outlier_bench_")
  # The training split and a random test subset, without validation: the budget goes
  # to training, and the test NLL and the scores are on the same random images.
  path = bench_data.subset_npz(path, _IMAGES.value, _SEED.value)
  report = {"dataset": "binarized_mnist", "images_per_set": _IMAGES.value,
            "cpu_seconds_budget": _CPU_SECONDS.value, "models": {}}
  trained = [(d, d) for d in _MODEL_DIRS.value] or [
      (name, os.path.join(workdir, name)) for name in _MODELS.value]
  for name, run in trained:
    if not _MODEL_DIRS.value and not os.path.isfile(os.path.join(run, "model.keras")):
      lr = 1e-3 if "vae" in name else 2e-3
      config = config_lib.TrainConfig.from_flat(
          model=name, dataset=f"npz:{path}", batch_size=64, epochs=1000.0,
          learning_rate=lr, lr_schedule="constant", max_train_seconds=_CPU_SECONDS.value,
          budget_clock="cpu", num_samples=0, verbose=0, seed=_SEED.value,
          eval_importance_samples=_IMPORTANCE.value)
      metrics = train_lib.train_and_evaluate(config, run)
    else:
      with open(os.path.join(runs.resolve(run), "metrics.json")) as f:
        metrics = json.load(f)
    model, config = runs.load_model(run)
    data = runs.load_data(config, dataset=f"npz:{path}")
    start = time.perf_counter()
    _, summary = scoring.score_sets(model, data, "test", scoring.OUTLIER_KINDS,
                                    num_importance_samples=_IMPORTANCE.value,
                                    seed=_SEED.value)
    report["models"][name] = {
        "parameters": int(model.count_params()),
        "train_cpu_seconds": metrics.get("train_cpu_seconds"),
        "train_steps": metrics.get("train_steps"),
        "test_nll_nats": metrics.get("test_nll_nats"),
        "score_seconds": round(time.perf_counter() - start, 1),
        "sets": {k: {kk: round(vv, 4) if isinstance(vv, float) else vv
                     for kk, vv in v.items()} for k, v in summary.items()}}
    print(json.dumps({name: report["models"][name]}), file=sys.stderr, flush=True)
  bench_data.report(report, _OUT.value, indent=2)
  return 0


if __name__ == "__main__":
  app.run(main)
