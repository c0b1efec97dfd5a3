"""Samples images on-device style: runs an exported `.tflite` sampler with LiteRT.

  python -m export.sample_main --tflite=OUT/sampler_float32.tflite --out=samples.png

Needs only numpy, pillow and ai-edge-litert (no TensorFlow, no tfgen): the randomness
the sampler takes (uniform pixel noise, and standard normal codes for a VAE) is drawn
here with numpy, so a seed reproduces the images exactly.
"""

import math
import sys

from absl import app
from absl import flags

_TFLITE = flags.DEFINE_string("tflite", None, "An exported sampler_*.tflite file.")
_OUT = flags.DEFINE_string("out", "samples.png", "PNG grid to write.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the noise.")
_LABEL = flags.DEFINE_integer("label", None, "Class of every image (conditional models); "
                              "default: image k gets class k mod num_classes (from the "
                              "metadata.json beside the file).")
_CONDITION = flags.DEFINE_string(
    "condition", None, "A .npy file of the conditioning vector(s), shape [D] (every "
    "image) or [batch, D]: needed by samplers of models built with condition_dim.")
_SCALE = flags.DEFINE_integer("scale", 4, "Enlarge the grid this many times.")


def sample(tflite_path, seed=0, label=None, condition=None):
  """Runs the sampler once: returns uint8 images `[B, H, W, C]`.

  Args:
    tflite_path: an exported sampler.
    seed: seed of the noise.
    label: class of every image of a class-conditional sampler (default: k mod classes).
    condition: float `[D]` or `[B, D]`, for a sampler of a vector-conditioned model.

  Raises:
    ValueError: for a conditional sampler without a class count (no --label and no
      metadata.json beside the file), a label outside the classes, or a missing or
      ill-shaped condition.
  """
  import json
  import os
  import numpy as np
  from ai_edge_litert import interpreter as litert
  runner = litert.Interpreter(model_path=tflite_path).get_signature_runner("sample")
  rng = np.random.default_rng(seed)
  inputs = {}
  for name, detail in sorted(runner.get_input_details().items()):
    shape = tuple(detail["shape"])
    if name == "labels":
      # The class count is not in the .tflite file; the export's metadata has it.
      meta_path = os.path.join(os.path.dirname(os.path.abspath(tflite_path)), "metadata.json")
      num_classes = None
      if os.path.isfile(meta_path):
        with open(meta_path) as f:
          num_classes = json.load(f).get("num_classes")
      if label is None and num_classes is None:
        raise ValueError("this sampler is class-conditional: pass --label (no metadata.json "
                         "beside it says how many classes there are)")
      if label is not None and num_classes is not None and not 0 <= label < num_classes:
        raise ValueError(f"--label must lie in [0, {num_classes}), got {label}")
      inputs[name] = (np.full(shape, label, np.int32) if label is not None
                      else (np.arange(shape[0]) % num_classes).astype(np.int32))
    elif name == "condition":
      if condition is None:
        raise ValueError(f"this sampler is conditioned on a vector of {shape[1]} floats: pass "
                         f"--condition=FILE.npy holding shape [{shape[1]}] or {list(shape)}")
      condition = np.asarray(condition, np.float32)
      if condition.shape not in ((shape[1],), shape):
        raise ValueError(f"--condition must have shape [{shape[1]}] or {list(shape)}, "
                         f"got {list(condition.shape)}")
      inputs[name] = np.ascontiguousarray(np.broadcast_to(condition, shape))
    elif name == "z":
      inputs[name] = rng.standard_normal(shape).astype(np.float32)
    else:
      inputs[name] = rng.uniform(size=shape).astype(np.float32)
  return runner(**inputs)["images"]


def png_grid(images, path, scale=4):
  """Writes uint8 images `[B, H, W, C]` as one PNG grid."""
  import numpy as np
  from PIL import Image
  n, h, w, c = images.shape
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 128, np.uint8)
  for k in range(n):
    r, q = divmod(k, cols)
    grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = images[k]
  picture = Image.fromarray(grid[..., 0] if c == 1 else grid)
  picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST).save(path)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _TFLITE.value:
    print("\nError: pass --tflite=OUT/sampler_float32.tflite (from python -m export).",
          file=sys.stderr)
    return 1
  condition = None
  if _CONDITION.value:
    import numpy as np
    try:
      condition = np.load(_CONDITION.value)
    except (OSError, ValueError) as e:
      print(f"\nError: cannot read --condition={_CONDITION.value} ({e}). Save the vector "
            "with numpy.save(path, array).", file=sys.stderr)
      return 1
  try:
    images = sample(_TFLITE.value, _SEED.value, _LABEL.value, condition)
  except (ValueError, RuntimeError) as e:
    print(f"\nError: cannot run {_TFLITE.value} with LiteRT ({e}). Pass a sampler written "
          "by python -m export.", file=sys.stderr)
    return 1
  png_grid(images, _OUT.value, _SCALE.value)
  print(f"Wrote {_OUT.value}: {images.shape[0]} images of {images.shape[1:]}.")
  return 0


if __name__ == "__main__":
  app.run(main)
