"""Any tfgen model on real data: throughput, test NLL after a budget, sampling time.

  python bench/likelihood_bench.py                          # PixelCNN, one epoch, batch 64
  python bench/likelihood_bench.py --model=gated_pixelcnn --cpu_seconds=600
  python bench/likelihood_bench.py --dataset=mnist_8bit --cpu_seconds=600

Datasets (from `../shared/data/`):
  binarized_mnist  the fixed binarization, 50,000 train / 10,000 test images.
  mnist_8bit       the 8-bit MNIST test set (256 levels), split 9,000 train / 1,000 test
                   with the loader's fixed split seed; it has labels (--conditional).

Trains the model (default hyper-parameters, or --hparams) with `tfgen.train_lib`,
evaluates on the whole test split, and prints one JSON object:
  pipeline_images_per_second  the tf.data input pipeline alone (must be far above
                              training throughput: input is never the bottleneck)
  train_images_per_second     training throughput (validation excluded)
  precision                   the training policy (--mixed_precision resolved)
  train_seconds, train_cpu_seconds, train_steps
                              the budget actually used (a --cpu_seconds budget counts
                              this process's CPU time: fair on a shared machine)
  test_nll_nats, test_bits_per_dim
  sample_seconds              time to sample --sample_batch images (graph already traced)
  sample_trace_seconds        the first call, including tracing the sampling graph
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
# name -> (file, TrainConfig fields)
DATASETS = {
    "binarized_mnist": ("binarized_mnist.npz", {}),
    "mnist_8bit": ("mnist_test.npz", {"split_fractions": (0.9, 0.0, 0.1)}),
}
_DATASET = flags.DEFINE_enum("dataset", "binarized_mnist", sorted(DATASETS), "Benchmark data.")
_DATA_DIR = flags.DEFINE_string("data_dir", _SHARED, "Directory holding the .npz files.")
_MODEL = flags.DEFINE_string("model", "pixelcnn", "Model name.")
_CONDITIONAL = flags.DEFINE_bool("conditional", False, "Class-conditional (mnist_8bit).")
_HPARAMS = flags.DEFINE_string("hparams", "", "Model hyper-parameters, key=value,...")
_EPOCHS = flags.DEFINE_float(
    "epochs", None, "Epochs (default: 1, or until the --cpu_seconds/--max_train_seconds "
    "budget runs out).")
_MAX_SECONDS = flags.DEFINE_float("max_train_seconds", 0.0, "Wall-clock training budget.")
_CPU_SECONDS = flags.DEFINE_float("cpu_seconds", 0.0,
                                  "Training budget in CPU seconds of this process.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Global batch size.")
_LR = flags.DEFINE_float("learning_rate", 2e-3, "Peak learning rate.")
_BETA2 = flags.DEFINE_float("adam_beta2", None, "Adam's beta_2 (default: train_main's).")
_SCHEDULE = flags.DEFINE_string("lr_schedule", "cosine", "cosine or constant.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of initialization and data order.")
_PRECISION = flags.DEFINE_enum("mixed_precision", "none",
                               ["auto", "none", "mixed_float16", "mixed_bfloat16"],
                               "Training precision (train_main.py's flag).")
_SAMPLE_BATCH = flags.DEFINE_integer("sample_batch", 16, "Images sampled for timing (0: skip).")
_PIPELINE_BATCHES = flags.DEFINE_integer("pipeline_batches", 300,
                                         "Batches drawn to time the input pipeline.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: a temp dir).")
_OUT = bench_data.define_out_flag()
_TEST_IMAGES = flags.DEFINE_integer(
    "test_images", None, "binarized_mnist: evaluate on this many test images drawn at random "
    "(seed 0; the split is sorted by class) and skip the validation split, so a short "
    "budget is not dwarfed by evaluating 20,000 images. Default: the whole test split.")



def main(argv):
  del argv
  import keras
  from tfgen import hparams_parser
  from tfgen import config as config_lib
  from tfgen import data as data_lib
  from tfgen import train_lib

  if _MAX_SECONDS.value and _CPU_SECONDS.value:
    raise app.UsageError("Give --max_train_seconds or --cpu_seconds, not both.")
  budgeted = bool(_MAX_SECONDS.value or _CPU_SECONDS.value)
  until_budget = budgeted and _EPOCHS.value is None
  epochs = 1e6 if until_budget else (_EPOCHS.value or 1.0)
  # A time budget has no planned length for cosine decay to span: use a constant rate.
  schedule = "constant" if until_budget else _SCHEDULE.value
  file_name, dataset_fields = DATASETS[_DATASET.value]
  data_path = os.path.join(_DATA_DIR.value, file_name)
  if _TEST_IMAGES.value:
    if _DATASET.value != "binarized_mnist":
      raise app.UsageError("--test_images applies to binarized_mnist only.")
    data_path = bench_data.subset_npz(data_path, _TEST_IMAGES.value)
  config = config_lib.TrainConfig.from_flat(
      model=_MODEL.value, hparams=hparams_parser.parse(_HPARAMS.value),
      dataset=f"npz:{data_path}",
      conditional=_CONDITIONAL.value, batch_size=_BATCH.value, epochs=epochs,
      learning_rate=_LR.value, lr_schedule=schedule,
      **({} if _BETA2.value is None else {"adam_beta2": _BETA2.value}),
      max_train_seconds=_CPU_SECONDS.value or _MAX_SECONDS.value,
      budget_clock="cpu" if _CPU_SECONDS.value else "wall",
      num_samples=0, verbose=2, seed=_SEED.value, checkpoint_every=500,
      mixed_precision=_PRECISION.value, **dataset_fields)
  data = data_lib.load_config(config.data)
  stream = iter(data.dataset("train", config.optim.batch_size, training=True))
  next(stream)
  start = time.perf_counter()
  for _ in range(_PIPELINE_BATCHES.value):
    next(stream)
  pipeline_rate = (_PIPELINE_BATCHES.value * config.optim.batch_size
                   / (time.perf_counter() - start))

  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="tfgen_bench_")
  metrics = train_lib.train_and_evaluate(config, workdir)
  sample_seconds = trace_seconds = None
  if _SAMPLE_BATCH.value:
    model = keras.models.load_model(os.path.join(workdir, "model.keras"))
    start = time.perf_counter()
    labels = train_lib.sample_labels(_SAMPLE_BATCH.value, model.num_classes)
    model.sample(_SAMPLE_BATCH.value, seed=0, labels=labels)
    trace_seconds = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    model.sample(_SAMPLE_BATCH.value, seed=1, labels=labels)
    sample_seconds = round(time.perf_counter() - start, 2)

  result = {
      "benchmark": "likelihood",
      "dataset": _DATASET.value,
      "test_images": _TEST_IMAGES.value or "all",
      "model": config.model.name,
      "conditional": config.model.conditional,
      "hparams": dict(config.model.hparams) or "defaults",
      "num_params": metrics["num_params"],
      "batch_size": config.optim.batch_size,
      "epochs": None if until_budget else epochs,
      "max_train_seconds": _MAX_SECONDS.value,
      "cpu_seconds": _CPU_SECONDS.value,
      "learning_rate": config.optim.learning_rate,
      "lr_schedule": config.optim.lr_schedule,
      "adam_beta2": config.optim.adam_beta2,
      "seed": config.runtime.seed,
      "precision": metrics["precision"],
      "pipeline_images_per_second": round(pipeline_rate, 1),
      "train_images_per_second": round(metrics["train_images_per_second"], 1),
      "train_seconds": round(metrics["train_seconds"], 1),
      "train_cpu_seconds": round(metrics["train_cpu_seconds"], 1),
      "train_steps": metrics["train_steps"],
      "test_nll_nats": round(metrics["test_nll_nats"], 3),
      "test_bits_per_dim": round(metrics["test_bits_per_dim"], 5),
      "sample_batch": _SAMPLE_BATCH.value,
      "sample_seconds": sample_seconds,
      "sample_trace_seconds": trace_seconds,
      "cpu_count": os.cpu_count(),
      "tf_intra_op_threads": os.environ.get("TF_NUM_INTRAOP_THREADS", "default"),
  }
  bench_data.report(result, _OUT.value)


if __name__ == "__main__":
  app.run(main)
