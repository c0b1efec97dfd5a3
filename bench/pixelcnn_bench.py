"""PixelCNN on binarized MNIST: throughput, test NLL after a budget, sampling time.

  python bench/pixelcnn_bench.py                       # one epoch, batch 64
  python bench/pixelcnn_bench.py --epochs=0 --max_train_seconds=600

Trains the default PixelCNN (or --hparams) with `tfgen.train_lib` on the train split of
`../shared/data/binarized_mnist.npz`, evaluates on the whole test split, and prints one
JSON object:
  pipeline_images_per_second  the tf.data input pipeline alone (must be far above
                              training throughput: input is never the bottleneck)
  train_images_per_second     training throughput (validation excluded)
  train_seconds, train_steps  the budget actually used
  test_nll_nats, test_bits_per_dim
  sample_seconds              time to sample --sample_batch images (graph already traced)
  sample_trace_seconds        the first call, including tracing the sampling graph
"""

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DATA = flags.DEFINE_string(
    "data", os.path.join(os.path.dirname(_REPO), "shared", "data", "binarized_mnist.npz"),
    "The binarized MNIST .npz (train/valid/test).")
_MODEL = flags.DEFINE_string("model", "pixelcnn", "Model name.")
_HPARAMS = flags.DEFINE_string("hparams", "", "Model hyper-parameters, key=value,...")
_EPOCHS = flags.DEFINE_float("epochs", 1.0, "Epochs (0 with --max_train_seconds).")
_MAX_SECONDS = flags.DEFINE_float("max_train_seconds", 0.0, "Wall-clock training budget.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Global batch size.")
_LR = flags.DEFINE_float("learning_rate", 2e-3, "Peak learning rate.")
_SCHEDULE = flags.DEFINE_string("lr_schedule", "cosine", "cosine or constant.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of initialization and data order.")
_SAMPLE_BATCH = flags.DEFINE_integer("sample_batch", 16, "Images sampled for timing.")
_PIPELINE_BATCHES = flags.DEFINE_integer("pipeline_batches", 300,
                                         "Batches drawn to time the input pipeline.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: a temp dir).")


def main(argv):
  del argv
  import keras
  from tfgen import hparams_parser
  from tfgen import train_lib

  epochs = _EPOCHS.value if _EPOCHS.value > 0 else 1e6
  # A time budget has no planned length for cosine decay to span: use a constant rate.
  schedule = _SCHEDULE.value if _EPOCHS.value > 0 else "constant"
  config = train_lib.TrainConfig(
      model=_MODEL.value, hparams=hparams_parser.parse(_HPARAMS.value),
      dataset=f"npz:{_DATA.value}", batch_size=_BATCH.value, epochs=epochs,
      learning_rate=_LR.value, lr_schedule=schedule,
      max_train_seconds=_MAX_SECONDS.value, num_samples=0, verbose=2, seed=_SEED.value,
      checkpoint_every=500)
  data = train_lib.load_data(config)
  stream = iter(data.dataset("train", config.batch_size, training=True))
  next(stream)
  start = time.perf_counter()
  for _ in range(_PIPELINE_BATCHES.value):
    next(stream)
  pipeline_rate = _PIPELINE_BATCHES.value * config.batch_size / (time.perf_counter() - start)

  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="tfgen_bench_")
  metrics = train_lib.train_and_evaluate(config, workdir)
  model = keras.models.load_model(os.path.join(workdir, "model.keras"))
  start = time.perf_counter()
  model.sample(_SAMPLE_BATCH.value, seed=0)
  trace_seconds = time.perf_counter() - start
  start = time.perf_counter()
  model.sample(_SAMPLE_BATCH.value, seed=1)
  sample_seconds = time.perf_counter() - start

  result = {
      "benchmark": "pixelcnn_binarized_mnist",
      "model": config.model,
      "hparams": dict(model.hparams),
      "num_params": metrics["num_params"],
      "batch_size": config.batch_size,
      "epochs": _EPOCHS.value,
      "max_train_seconds": _MAX_SECONDS.value,
      "learning_rate": config.learning_rate,
      "lr_schedule": config.lr_schedule,
      "seed": config.seed,
      "pipeline_images_per_second": round(pipeline_rate, 1),
      "train_images_per_second": round(metrics["train_images_per_second"], 1),
      "train_seconds": round(metrics["train_seconds"], 1),
      "train_steps": metrics["train_steps"],
      "test_nll_nats": round(metrics["test_nll_nats"], 3),
      "test_bits_per_dim": round(metrics["test_bits_per_dim"], 5),
      "sample_batch": _SAMPLE_BATCH.value,
      "sample_seconds": round(sample_seconds, 2),
      "sample_trace_seconds": round(trace_seconds, 2),
      "cpu_count": os.cpu_count(),
  }
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
