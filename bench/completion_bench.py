"""Completion with a trained model: p(bottom half | top half) and the time it takes.

  python bench/likelihood_bench.py --workdir=/tmp/pixelcnn_epoch     # train one epoch
  python bench/completion_bench.py --model_dir=/tmp/pixelcnn_epoch

Loads `model_dir/model.keras` (any autoregressive run: `train_main.py` or
`likelihood_bench.py --workdir`) and, on the whole test split of binarized MNIST (or
`--dataset`, any `tfgen.data` spec), prints one JSON object:
  bottom_half_nats            mean -log p(x_bottom | x_top) per image, exact: the
                              bottom half is a suffix of the generation order
  bottom_half_bits_per_dim    the same per missing subpixel
  test_nll_nats               mean -log p(x) of the same images, for comparison
  complete_seconds            time to complete the bottom halves of `--num` test images
                              (cached sampler, graph already traced)
  sample_seconds              time to sample `--num` whole images the same way
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import bench_data  # noqa: E402  (beside this file)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DEFAULT_DATA = "npz:" + os.path.join(os.path.dirname(_REPO), "shared", "data",
                                      "binarized_mnist.npz")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "A finished run's directory.",
                                 required=True)
_DATASET = flags.DEFINE_string("dataset", _DEFAULT_DATA, "Data spec (tfgen.data.load).")
_NUM = flags.DEFINE_integer("num", 16, "Images completed (and sampled) for timing.")
_BATCH = flags.DEFINE_integer("batch_size", 500, "Scoring batch.")
_OUT = bench_data.define_out_flag()


def main(argv):
  del argv
  import keras
  import numpy as np
  from tfgen import completion
  from tfgen import data as data_lib
  from tfgen.models import base

  model = keras.models.load_model(os.path.join(_MODEL_DIR.value, "model.keras"))
  data = data_lib.load(_DATASET.value)
  height = model.image_shape[0]
  conditional, joint, num_images = [], [], 0
  for element in data.dataset("test", _BATCH.value):
    images, labels = base.unpack_inputs(element)
    labels = labels if model.num_classes else None
    keep = completion.bottom_half_missing(images.shape)
    conditional.append(model.conditional_log_prob(images, keep, labels).numpy())
    joint.append(model.log_prob(images, labels).numpy())
    num_images += len(images)
  conditional, joint = np.concatenate(conditional), np.concatenate(joint)
  missing = (height - height // 2) * int(np.prod(model.image_shape[1:]))

  images, labels = base.unpack_inputs(next(iter(data.dataset("test", _NUM.value))))
  labels = labels if model.num_classes else None
  keep = completion.bottom_half_missing(images.shape)
  timed = {}
  for name, run in (("complete", lambda s: model.complete(images, keep, seed=s, labels=labels)),
                    ("sample", lambda s: model.sample(_NUM.value, seed=s, labels=labels))):
    run(0)  # Traces the graph.
    start = time.perf_counter()
    run(1)
    timed[name] = round(time.perf_counter() - start, 2)

  result = {
      "benchmark": "completion",
      "model_dir": _MODEL_DIR.value,
      "model": model.name,
      "dataset": _DATASET.value,
      "test_images": num_images,
      "mask": "bottom half missing",
      "missing_subpixels": missing,
      "bottom_half_nats": round(float(-conditional.mean()), 3),
      "bottom_half_bits_per_dim": round(float(-conditional.mean() / (missing * np.log(2))), 5),
      "test_nll_nats": round(float(-joint.mean()), 3),
      "num": _NUM.value,
      "complete_seconds": timed["complete"],
      "sample_seconds": timed["sample"],
      "cpu_count": os.cpu_count(),
  }
  bench_data.report(result, _OUT.value)


if __name__ == "__main__":
  app.run(main)
