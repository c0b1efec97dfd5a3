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
import time

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


def _arrays(data, split):
  """Images `[N, H*W*C]` scaled to [0, 1] and labels `[N]` of one split."""
  import numpy as np
  images, labels = [], []
  for element in data.dataset(split, 1000):
    images.append(element["image"].numpy())
    labels.append(element["label"].numpy())
  images = np.concatenate(images)
  scale = 1.0 / (data.info.num_levels - 1)
  return images.reshape(len(images), -1) * scale, np.concatenate(labels)


def main(argv):
  del argv
  import keras
  import numpy as np
  from sklearn import linear_model
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
  train_x, train_y = _arrays(data, "train")
  test_x, test_y = _arrays(data, "test")
  start = time.process_time()
  classifier = linear_model.LogisticRegression(max_iter=300, C=0.1)
  classifier.fit(train_x, train_y)
  classifier_seconds = time.process_time() - start
  test_accuracy = float((classifier.predict(test_x) == test_y).mean())

  num_classes = model.num_classes
  labels = np.repeat(np.arange(num_classes), _PER_CLASS.value)
  start = time.perf_counter()
  samples = model.sample(len(labels), seed=_SEED.value + 1, labels=labels).numpy()
  sample_seconds = time.perf_counter() - start
  scale = 1.0 / (model.num_levels - 1)
  predicted = classifier.predict(samples.reshape(len(samples), -1) * scale)
  hits = predicted == labels

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
      "classifier": "logistic regression on pixels (C=0.1)",
      "classifier_test_accuracy": round(test_accuracy, 4),
      "classifier_cpu_seconds": round(classifier_seconds, 1),
      "per_class": _PER_CLASS.value,
      "sample_seconds": round(sample_seconds, 2),
      "sample_accuracy": round(float(hits.mean()), 4),
      "chance": round(1.0 / num_classes, 4),
      "sample_accuracy_per_class": [round(float(hits[labels == k].mean()), 2)
                                    for k in range(num_classes)],
      "sample_predictions": np.bincount(predicted, minlength=num_classes).tolist(),
      "seed": _SEED.value,
      "workdir": workdir,
      "cpu_count": os.cpu_count(),
  }
  bench_data.report(result, _OUT.value)


if __name__ == "__main__":
  app.run(main)
