"""Exported samplers: .tflite sizes, and sampling time in LiteRT, SavedModel and Keras.

  python bench/export_bench.py                        # default PixelCNN and FC VAE, 28x28 binary
  python bench/export_bench.py --pixelcnn_dir=runs/outlier_bench/pixelcnn --vae_dir=runs/outlier_bench/vae

For the default PixelCNN and the fully connected VAE on 28x28 binary images (trained
runs when --pixelcnn_dir / --vae_dir name them, else freshly initialized: the cost of
sampling does not depend on the weights), exports with `export.export_lib.export` at
batch --batch_size and prints one JSON object with, per model:
  tflite_bytes                 size of each .tflite file (float32, float16, int8)
  sample_seconds               one batch: Keras `model.sample` (cached sampler for
                               PixelCNN), the SavedModel's `sample` signature, and each
                               .tflite file in the LiteRT interpreter (median of
                               --repeats calls after one warm-up call)
  pixels_equal_to_keras        fraction of pixels each sampler draws exactly as Keras
                               does from the same noise
  sample_nll_nats              mean -log p(x) under the float Keras model of each
                               sampler's images (the quantized samplers' should be close
                               to the float one's)
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

import bench_data  # noqa: E402  (beside this file)

_PIXELCNN_DIR = flags.DEFINE_string("pixelcnn_dir", None, "A trained PixelCNN run directory.")
_VAE_DIR = flags.DEFINE_string("vae_dir", None, "A trained VAE run directory.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Images per sampled batch.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per sampler (median).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the noise.")
_OUT = bench_data.define_out_flag()


def _median_seconds(fn, repeats):
  fn()  # Warm-up: tracing, interpreter allocation.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return round(sorted(times)[len(times) // 2], 4)


def _measure(model, batch, repeats, seed):
  import numpy as np
  import tensorflow as tf
  from ai_edge_litert import interpreter as litert
  from export import export_lib
  rng = np.random.default_rng(seed)
  inputs = {name: (rng.standard_normal((batch,) + tuple(spec.shape[1:])) if name == "z"
                   else rng.uniform(size=(batch,) + tuple(spec.shape[1:]))).astype(np.float32)
            for name, spec in model.export_noise_specs(None).items()}
  out = tempfile.mkdtemp(prefix="export_bench_")
  start = time.perf_counter()
  meta = export_lib.export(model, out, batch_size=batch)
  result = {"parameters": int(model.count_params()),
            "export_seconds": round(time.perf_counter() - start, 1),
            "tflite_bytes": {q: info["bytes"] for q, info in meta["tflite"].items()},
            "sample_seconds": {}, "pixels_equal_to_keras": {}, "sample_nll_nats": {}}
  keras_kwargs = dict(inputs)
  keras_call = lambda: model.sample(batch, **keras_kwargs).numpy()
  reference = keras_call()
  result["sample_seconds"]["keras"] = _median_seconds(keras_call, repeats)
  nll = lambda levels: round(float(-np.mean(model.log_prob(levels).numpy())), 3)
  result["sample_nll_nats"]["keras"] = nll(reference)
  saved = tf.saved_model.load(os.path.join(out, "saved_model")).signatures["sample"]
  tensors = {k: tf.constant(v) for k, v in inputs.items()}
  saved_call = lambda: saved(**tensors)["levels"].numpy()
  result["sample_seconds"]["saved_model"] = _median_seconds(saved_call, repeats)
  result["pixels_equal_to_keras"]["saved_model"] = float((saved_call() == reference).mean())
  for q, info in meta["tflite"].items():
    runner = litert.Interpreter(model_path=os.path.join(out, info["file"])).get_signature_runner(
        "sample")
    lite_call = lambda runner=runner: runner(**inputs)["levels"]
    result["sample_seconds"][f"tflite_{q}"] = _median_seconds(lite_call, repeats)
    levels = lite_call()
    result["pixels_equal_to_keras"][f"tflite_{q}"] = float((levels == reference).mean())
    result["sample_nll_nats"][f"tflite_{q}"] = nll(levels)
  return result


def main(argv):
  del argv
  from tfgen import models
  from tfgen import runs
  report = {"batch_size": _BATCH.value, "image_shape": [28, 28, 1], "num_levels": 2}
  for name, run in (("pixelcnn", _PIXELCNN_DIR.value), ("vae", _VAE_DIR.value)):
    if run:
      model, _ = runs.load_model(run)
    else:
      model = models.build(name, (28, 28, 1), 2)
    result = _measure(model, _BATCH.value, _REPEATS.value, _SEED.value)
    result["weights"] = "trained: " + run if run else "initial (untrained)"
    report[name] = result
    print(json.dumps({name: result}), file=sys.stderr, flush=True)
  bench_data.report(report, _OUT.value, indent=2)
  return 0


if __name__ == "__main__":
  app.run(main)
