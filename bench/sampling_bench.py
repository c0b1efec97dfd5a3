"""Sampling speed: cached incremental sampler against naive full recomputation.

  python bench/sampling_bench.py            # all three parts
  python bench/sampling_bench.py --out=bench/results/sampling_DATE.jsonl
  python bench/sampling_bench.py --parts=speedup
  python bench/sampling_bench.py --model=gated_pixelcnn --parts=speedup,growth

Prints one JSON object per part (weights are random: cost does not depend on them):
  speedup       --model (default PixelCNN) with default hyper-parameters, 28x28 binary,
                batch 16: seconds for the fast and the naive sampler in the same run,
                their ratio, and the fast sampler's cost in units of one `log_prob`
                call on the same batch (naive ~ H*W*C calls)
  growth        seconds per batch for image sides 8, 16, 28, 32, fast and naive
  tfp           seconds per image of `tfd.PixelCNN.sample` for a model of similar size,
                against the fast sampler per image (of PixelCNN, whatever --model)
Times are medians over --repeats runs after one warm-up (tracing) run.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import bench_data  # noqa: E402  (beside this file)

_PARTS = flags.DEFINE_list("parts", ["speedup", "growth", "tfp"], "Parts to run.")
_MODEL = flags.DEFINE_string("model", "pixelcnn",
                             "Model of speedup and growth, with default hyper-parameters.")
_BATCH = flags.DEFINE_integer("batch", 16, "Images per sampled batch.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per measurement.")
_SIDES = flags.DEFINE_list("sides", ["8", "16", "28", "32"], "Image sides for growth.")
_OUT = bench_data.define_out_flag()
_NAIVE_MAX_SIDE = flags.DEFINE_integer(
    "naive_max_side", 32, "Skip the naive sampler above this side (it is quadratic).")


def _median_seconds(fn, repeats, with_result=False):
  """Median seconds of `fn()` over `repeats` runs after a warm-up (tracing) run."""
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
  median = sorted(times)[len(times) // 2]
  return (median, result) if with_result else median


def _speedup(name, batch, repeats):
  import numpy as np
  from tfgen import models
  model = models.build(name, (28, 28, 1), 2)
  images = np.random.default_rng(0).integers(0, 2, (batch, 28, 28, 1))
  log_prob = _median_seconds(lambda: model.log_prob(images), max(repeats, 10))
  fast, fast_images = _median_seconds(lambda: model.sample(batch, seed=0, fast=True),
                                      repeats, with_result=True)
  # One timed naive run: it is the slow one (the warm-up is a whole run too).
  naive, naive_images = _median_seconds(lambda: model.sample(batch, seed=0, fast=False), 1,
                                        with_result=True)
  same = bool(np.array_equal(fast_images, naive_images))
  return {"image_shape": [28, 28, 1], "batch": batch, "num_params": model.count_params(),
          "hparams": dict(model.hparams), "fast_seconds": round(fast, 3),
          "naive_seconds": round(naive, 3), "speedup": round(naive / fast, 1),
          "log_prob_seconds": round(log_prob, 4),
          "fast_cost_in_log_prob_calls": round(fast / log_prob, 1),
          "naive_cost_in_log_prob_calls": round(naive / log_prob, 1),
          "identical_images": same}


def _growth(name, batch, repeats, sides, naive_max_side):
  from tfgen import models
  rows = []
  for side in sides:
    model = models.build(name, (side, side, 1), 2)
    row = {"side": side, "pixels": side * side,
           "fast_seconds": round(_median_seconds(
               lambda: model.sample(batch, seed=0, fast=True), repeats), 3)}
    if side <= naive_max_side:
      row["naive_seconds"] = round(_median_seconds(
          lambda: model.sample(batch, seed=0, fast=False), 1), 3)
    rows.append(row)
  return rows


def _tfp(batch, repeats):
  import numpy as np
  import tensorflow as tf
  import tensorflow_probability as tfp
  from tfgen import models
  ours = models.build("pixelcnn", (28, 28, 1), 2)
  # TFP's PixelCNN (a PixelCNN++: gated resnets, logistic mixture) sized near ours.
  dist = tfp.distributions.PixelCNN(image_shape=(28, 28, 1), num_resnet=1,
                                    num_hierarchies=2, num_filters=32, num_logistic_mix=2,
                                    dropout_p=0.0, high=1, low=0, use_data_init=False)
  num = 4  # TFP reruns its whole network per pixel: keep the count small.
  dist.log_prob(tf.zeros((1, 28, 28, 1)))  # Builds its variables.
  tfp_params = int(sum(np.prod(v.shape) for v in dist.network.weights))
  sample = tf.function(lambda: dist.sample(num, seed=1))
  tfp_seconds = _median_seconds(sample, 1)
  fast = _median_seconds(lambda: ours.sample(batch, seed=0), repeats)
  return {"tfp_num_params": tfp_params, "tfgen_num_params": ours.count_params(),
          "tfp_seconds_per_image": round(tfp_seconds / num, 3),
          "tfgen_fast_seconds_per_image": round(fast / batch, 4),
          "ratio": round((tfp_seconds / num) / (fast / batch), 1)}


def main(argv):
  del argv
  parts = {
      "speedup": lambda: _speedup(_MODEL.value, _BATCH.value, _REPEATS.value),
      "growth": lambda: _growth(_MODEL.value, _BATCH.value, _REPEATS.value,
                                [int(s) for s in _SIDES.value], _NAIVE_MAX_SIDE.value),
      "tfp": lambda: _tfp(_BATCH.value, _REPEATS.value),
  }
  for name in _PARTS.value:  # One JSON line per part, printed as soon as it is measured.
    model = "pixelcnn" if name == "tfp" else _MODEL.value
    result = {"benchmark": f"{model}_sampling", "part": name, "cpu_count": os.cpu_count(),
              name: parts[name]()}
    bench_data.report(result, _OUT.value)


if __name__ == "__main__":
  app.run(main)
