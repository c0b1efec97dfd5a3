"""Does a class-conditional model draw the class it is asked for?

  python bench/conditional_bench.py                       # Gated PixelCNN, 8-bit MNIST
  python bench/conditional_bench.py --cpu_seconds=300 --reduce_levels=4

Trains a class-conditional model p(x | y) on the 8-bit MNIST test images (split
9,000 / 1,000 with the loader's fixed seed, as `bench/likelihood_bench.py` does) under
a CPU budget, trains a classifier (multinomial logistic regression on the pixels) on
the same real labelled training images, then samples --per_class images of every
class and classifies them. A model that ignores the label scores chance (10%).
Prints one JSON object:
  sample_accuracy          fraction of samples classified as the class they were
                           drawn for
  sample_accuracy_per_class
  sample_predictions       how many samples the classifier put in each class (a
                           model that draws one digit for every label scores 10%)
  classifier_test_accuracy the classifier on the 1,000 real test images
  test_nll_nats, test_bits_per_dim, train_cpu_seconds, ...  of the generative model
The run's directory (--workdir) keeps model.keras and samples_by_class.png (one row
per class).
"""

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import bench_data  # noqa: E402  (beside this file)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHARED = os.path.join(os.path.dirname(_REPO), "shared", "data")

_DATA = flags.DEFINE_string("data", os.path.join(_SHARED, "mnist_test.npz"),
                            "npz file with `images` and `labels`.")
_MODEL = flags.DEFINE_string("model", "gated_pixelcnn", "A class-conditional model.")
_HPARAMS = flags.DEFINE_string("hparams", "", "Model hyper-parameters, key=value,...")
# ~15 minutes of wall clock on a shared 2-core machine, training included.
_CPU_SECONDS = flags.DEFINE_float("cpu_seconds", 450.0,
                                  "Training budget in CPU seconds of this process.")
_REDUCE_LEVELS = flags.DEFINE_integer(
    "reduce_levels", None, "Quantize the 256 levels to this many (default: keep 8 bits).")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Global batch size.")
_LR = flags.DEFINE_float("learning_rate", 2e-3, "Learning rate (constant).")
_PER_CLASS = flags.DEFINE_integer("per_class", 10, "Samples drawn per class.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of initialization, data order, sampling.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: a temp dir).")
_OUT = bench_data.define_out_flag()


def main(argv):
  del argv
  import keras
  from tfgen import hparams_parser
  from tfgen import config as config_lib
  from tfgen import data as data_lib
  from tfgen import train_lib

  config = config_lib.TrainConfig.from_flat(
      model=_MODEL.value, hparams=hparams_parser.parse(_HPARAMS.value),
      dataset=f"npz:{_DATA.value}", reduce_levels=_REDUCE_LEVELS.value, conditional=True,
      split_fractions=(0.9, 0.0, 0.1), batch_size=_BATCH.value, epochs=1e6,
      learning_rate=_LR.value, lr_schedule="constant", max_train_seconds=_CPU_SECONDS.value,
      budget_clock="cpu", num_samples=20, verbose=2, seed=_SEED.value,  # 2 per digit
      checkpoint_every=500)
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="tfgen_conditional_")
  metrics = train_lib.train_and_evaluate(config, workdir)
  model = keras.models.load_model(os.path.join(workdir, "model.keras"))

  data = data_lib.load_config(config.data)
  accuracy = bench_data.class_accuracy(model, data, _PER_CLASS.value, seed=_SEED.value + 1)
  result = {
      "benchmark": "conditional",
      "model": config.model.name,
      "hparams": dict(model.hparams),
      "num_params": metrics["num_params"],
      "num_levels": model.num_levels,
      "cpu_seconds": _CPU_SECONDS.value,
      "train_cpu_seconds": round(metrics["train_cpu_seconds"], 1),
      "train_seconds": round(metrics["train_seconds"], 1),
      "train_steps": metrics["train_steps"],
      "test_nll_nats": round(metrics["test_nll_nats"], 3),
      "test_bits_per_dim": round(metrics["test_bits_per_dim"], 5),
      **accuracy,
      "seed": _SEED.value,
      "workdir": workdir,
      "cpu_count": os.cpu_count(),
  }
  bench_data.report(result, _OUT.value)


if __name__ == "__main__":
  app.run(main)
