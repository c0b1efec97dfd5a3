"""The cost of a PixelRNN training step as the image grows, against PixelCNN.

  python bench/pixelrnn_bench.py
  python bench/pixelrnn_bench.py --sides=8,16 --repeats=3

For every image side N in --sides (square binary images, N x N x 1) and every model in
--models (default hyper-parameters; PixelCNN with --pixelcnn_hparams, by default the
size whose parameter count matches the Diagonal BiLSTM's), it builds the model, runs
--warmup training steps on a batch of --batch_size random images (tracing), then times
--repeats more and prints one JSON object:

  results: a list of {model, side, num_params, sequential_steps, step_seconds,
           step_cpu_seconds, seconds_per_sequential_step}
    sequential_steps         the length of each LSTM layer's recurrence: N for the
                             Row LSTM (one step per row), 2N - 1 for the Diagonal
                             BiLSTM (one per diagonal); null for PixelCNN
    step_seconds             median wall-clock seconds of one training step
    step_cpu_seconds         median CPU seconds of this process per step (fair when
                             other processes share the machine)
    seconds_per_sequential_step  step_seconds / sequential_steps

The whole forward and backward pass of a step runs in one compiled graph; the
recurrences are `tf.scan`s inside it.
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

_SIDES = flags.DEFINE_list("sides", ["8", "16", "28", "32"], "Image sides N.")
_MODELS = flags.DEFINE_list("models", ["row_lstm", "diagonal_bilstm", "pixelcnn"], "Models.")
_PIXELCNN_HPARAMS = flags.DEFINE_string(
    "pixelcnn_hparams", "hidden_dim=14,num_blocks=6",
    "PixelCNN hyper-parameters (default: 66K parameters, the Diagonal BiLSTM's 66K).")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Images per training step.")
_OUT = bench_data.define_out_flag()
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first (tracing).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps; the median is reported.")


def _time_steps(model, images, warmup, repeats):
  for _ in range(warmup):
    model.train_on_batch(images)
  wall, cpu = [], []
  for _ in range(repeats):
    start, start_cpu = time.perf_counter(), time.process_time()
    model.train_on_batch(images)
    wall.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
  return sorted(wall)[len(wall) // 2], sorted(cpu)[len(cpu) // 2]


def main(argv):
  del argv
  import keras
  import numpy as np
  from tfgen import hparams_parser
  from tfgen import models

  results = []
  for side in (int(s) for s in _SIDES.value):
    images = np.random.default_rng(0).integers(0, 2, (_BATCH.value, side, side, 1))
    for name in _MODELS.value:
      hparams = hparams_parser.parse(_PIXELCNN_HPARAMS.value) if name == "pixelcnn" else {}
      keras.utils.set_random_seed(0)
      model = models.build(name, (side, side, 1), 2, **hparams)
      model.compile(optimizer=keras.optimizers.Adam(1e-3))
      wall, cpu = _time_steps(model, images.astype(np.uint8), _WARMUP.value, _REPEATS.value)
      steps = getattr(model, "sequential_steps", None)
      results.append({
          "model": name, "side": side, "hparams": dict(model.hparams),
          "num_params": int(model.count_params()), "sequential_steps": steps,
          "step_seconds": round(wall, 4), "step_cpu_seconds": round(cpu, 4),
          "seconds_per_sequential_step": round(wall / steps, 5) if steps else None,
      })
      print(json.dumps(results[-1]), file=sys.stderr)
  report = {"benchmark": "pixelrnn_step_cost", "batch_size": _BATCH.value,
            "warmup": _WARMUP.value, "repeats": _REPEATS.value,
            "cpu_count": os.cpu_count(), "results": results}
  bench_data.report(report, _OUT.value)


if __name__ == "__main__":
  app.run(main)
