"""Completes a folder of images with a trained run or an exported model.

  python -m export.complete_main --model=RUN_DIR --images=DIR --out=OUT_DIR
  python -m export.complete_main --model=EXPORT_DIR --images=DIR --mask=right_half
  python -m export.complete_main --model=EXPORT_DIR/completer_float32.tflite --images=DIR

`--model` is any of: a `train_main.py` run directory (its `model.keras`, through
`model.complete`), an export of `python -m export` (its SavedModel's `complete`
signature: TensorFlow only, no tfgen model code) or a `completer_*.tflite` file (LiteRT).
The noise is drawn here with numpy from `--seed`, so the three give the same images
for the same seed.

Every PNG (or JPEG) in `--images` must have the model's height and width; it is read as
greyscale or RGB to match the model and quantized to its levels. `--mask` says what is
observed: `bottom_half` missing (the default; exact for autoregressive models),
`right_half` missing (autoregressive models then ignore observations to the right of
a missing pixel; see `tfgen.completion`), or a folder of mask PNGs with the images'
names, white (non-zero) where observed. Writes, into `--out`, `NAME-K.png` for the
K-th completion of `NAME` and `completions.png`: a row per image, the occluded image
(missing part grey), its completions and the original.
"""

import os
import sys

from absl import flags

from tfgen import cli

MASKS = ("bottom_half", "right_half")
_VECTOR_CONDITIONED = ("This model is conditioned on a vector; complete with it from Python "
                       "(model.complete(..., condition=...)).")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class CompletionError(ValueError):
  """A model, folder, mask or option that cannot be used; the message says why."""


class CompletionRunner:
  """One way to run a completion, whatever holds the model.

  Attributes:
    image_shape: `(H, W, C)`.  num_levels: K.  num_classes: classes of a
    class-conditional model, else None.
    noise_shapes: `{name: shape after the batch}` of the noise one completion takes.
    batch: the fixed batch of a TFLite completer, else None.
  """

  def __init__(self, run, image_shape, num_levels, num_classes, noise_shapes, batch=None):
    self._run = run
    self.image_shape, self.num_levels, self.num_classes = image_shape, num_levels, num_classes
    self.noise_shapes, self.batch = noise_shapes, batch

  def __call__(self, images, mask, noise, labels):
    """int32 images and 0/1 mask `[N, H, W, C]`, noise `{name: [N, ...]}`, labels
    `[N]` or None -> int32 completions `[N, H, W, C]`."""
    if self.batch is None:
      return self._run(images, mask, noise, labels)
    import numpy as np  # pylint: disable=g-import-not-at-top
    n, out = len(images), []
    for start in range(0, n, self.batch):  # The fixed batch: pad the last chunk.
      pad = lambda x: None if x is None else np.concatenate(
          [x[start:start + self.batch]] + [x[:1]] * max(0, start + self.batch - n))
      chunk = self._run(pad(images), pad(mask), {k: pad(v) for k, v in noise.items()},
                        pad(labels))
      out.append(chunk[:min(self.batch, n - start)])
    return np.concatenate(out)


def load(path):
  """A `CompletionRunner` for a run directory (or "zoo:NAME", a trained model of
  `tfgen.zoo`), an export directory or a `.tflite` file.

  Raises:
    CompletionError: for a path that is none of these, or a model that cannot complete.
  """
  import json  # pylint: disable=g-import-not-at-top
  from tfgen import runs  # pylint: disable=g-import-not-at-top  # No TensorFlow.
  try:
    path = runs.resolve(path)  # "zoo:NAME" -> its directory; other paths unchanged.
  except runs.RunError as e:
    raise CompletionError(str(e)) from e
  if os.path.isfile(path) and path.endswith(".tflite"):
    return _load_tflite(path)
  if os.path.isfile(os.path.join(path, "saved_model", "saved_model.pb")):
    meta_path = os.path.join(path, "metadata.json")
    if not os.path.isfile(meta_path):
      raise CompletionError(f"{path} holds a saved_model/ but no metadata.json: an "
                            "interrupted export. Export the run again with python -m export.")
    with open(meta_path) as f:
      meta = json.load(f)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    signatures = tf.saved_model.load(os.path.join(path, "saved_model")).signatures
    if "complete" not in signatures:
      raise CompletionError(
          f"The export at {path} has no 'complete' signature (signatures: "
          f"{', '.join(signatures)}): it was written before completion was exported, or "
          "its model cannot complete. Export the run again with python -m export.")
    fn = signatures["complete"]
    specs = fn.structured_input_signature[1]
    noise_shapes = {name: tuple(spec.shape[1:]) for name, spec in specs.items()
                    if name not in ("images", "mask", "labels", "condition")}
    if "condition" in specs:
      raise CompletionError(_VECTOR_CONDITIONED)

    def run(images, mask, noise, labels):
      inputs = dict(images=tf.constant(images), mask=tf.constant(mask),
                    **{k: tf.constant(v) for k, v in noise.items()})
      if labels is not None:
        inputs["labels"] = tf.constant(labels)
      return fn(**inputs)["levels"].numpy()

    return CompletionRunner(run, tuple(meta["image_shape"]), meta["num_levels"],
                            meta["num_classes"], noise_shapes)
  if os.path.isfile(os.path.join(path, "model.keras")):
    from tfgen import runs  # pylint: disable=g-import-not-at-top
    from tfgen.models import api  # pylint: disable=g-import-not-at-top
    try:
      model, _ = runs.load_model(path)
    except runs.RunError as e:
      raise CompletionError(str(e)) from e
    if not api.implements(model, api.Completer):
      raise CompletionError(f"The model of {path} ({type(model).__name__}) does not complete "
                            "images: autoregressive models and VAEs do.")
    if model.condition_dim is not None:
      raise CompletionError(_VECTOR_CONDITIONED)
    noise_shapes = {name: tuple(spec.shape[1:])
                    for name, spec in model.completion_noise_specs(None).items()}

    def run(images, mask, noise, labels):
      # `complete` takes [S, B, ...] noise: one completion (S = 1) of every image.
      return model.complete(images, mask.astype(bool), 1,
                            noise={k: v[None] for k, v in noise.items()},
                            labels=labels)[0].numpy()

    return CompletionRunner(run, tuple(model.image_shape), model.num_levels,
                            model.num_classes, noise_shapes)
  raise CompletionError(
      f"--model={path} is not a train_main.py run (no model.keras), an export (no "
      "saved_model/) or a .tflite file. Pass one of those.")


def _load_tflite(path):
  import json  # pylint: disable=g-import-not-at-top
  from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  try:
    interpreter = litert.Interpreter(model_path=path)
  except (ValueError, RuntimeError) as e:
    raise CompletionError(f"LiteRT cannot read {path} ({e}). Pass a completer_*.tflite "
                          "written by python -m export.") from e
  if "complete" not in interpreter.get_signature_list():
    raise CompletionError(
        f"{path} has no 'complete' signature (it has "
        f"{', '.join(interpreter.get_signature_list())}): pass a completer_*.tflite, not a "
        "sampler.")
  runner = interpreter.get_signature_runner("complete")
  details = runner.get_input_details()
  meta_path = os.path.join(os.path.dirname(os.path.abspath(path)), "metadata.json")
  num_classes = None
  if os.path.isfile(meta_path):
    with open(meta_path) as f:
      meta = json.load(f)
    num_levels, num_classes = meta["num_levels"], meta["num_classes"]
  elif "labels" in details:
    raise CompletionError(f"{path} is class-conditional but no metadata.json beside it "
                          "says how many classes and levels it has: keep the export whole.")
  else:
    raise CompletionError(f"No metadata.json beside {path} says how many levels the model "
                          "has: keep the export directory whole.")
  if "condition" in details:
    raise CompletionError(_VECTOR_CONDITIONED)
  shape = tuple(int(d) for d in details["images"]["shape"])
  noise_shapes = {name: tuple(int(d) for d in d_["shape"][1:]) for name, d_ in details.items()
                  if name not in ("images", "mask", "labels")}

  def run(images, mask, noise, labels):
    inputs = dict(images=images, mask=mask, **noise)
    if labels is not None:
      inputs["labels"] = labels
    return runner(**inputs)["levels"]

  return CompletionRunner(run, shape[1:], num_levels, num_classes, noise_shapes,
                          batch=shape[0])


def read_images(folder, image_shape, num_levels):
  """`(names, int32 levels [N, H, W, C])` of every image file in `folder`, sorted.

  Raises:
    CompletionError: for a missing or empty folder, a file that is not an image, or an
      image of another size.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(folder):
    raise CompletionError(f"--images={folder} is not a folder. Pass a folder of PNG images.")
  names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
  if not names:
    raise CompletionError(f"--images={folder} holds no {'/'.join(IMAGE_SUFFIXES)} files.")
  h, w, c = image_shape
  out = []
  for name in names:
    try:
      with Image.open(os.path.join(folder, name)) as image:
        pixels = np.asarray(image.convert("L" if c == 1 else "RGB"))
    except OSError as e:
      raise CompletionError(f"{os.path.join(folder, name)} is not a readable image ({e}).") \
          from e
    if pixels.shape[:2] != (h, w):
      raise CompletionError(
          f"{os.path.join(folder, name)} is {pixels.shape[1]}x{pixels.shape[0]} pixels; the "
          f"model completes {w}x{h} images. Resize or crop it first.")
    out.append(pixels.reshape(h, w, c))
  levels = np.round(np.stack(out).astype(np.float64) * ((num_levels - 1) / 255.0))
  return [os.path.splitext(n)[0] for n in names], levels.astype(np.int32)


def make_mask(spec, names, image_shape):
  """int32 0/1 `[N, H, W, C]`, 1 where observed, from `--mask`.

  Raises:
    CompletionError: for an unknown kind, or a mask folder without a mask of some image,
      of another size, or one that leaves nothing missing or nothing observed.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  h, w, c = image_shape
  mask = np.ones((len(names), h, w, c), np.int32)
  if spec == "bottom_half":
    mask[:, h // 2:] = 0
  elif spec == "right_half":
    mask[:, :, w // 2:] = 0
  elif os.path.isdir(spec):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    for k, name in enumerate(names):
      found = [os.path.join(spec, name + s) for s in IMAGE_SUFFIXES
               if os.path.isfile(os.path.join(spec, name + s))]
      if not found:
        raise CompletionError(f"--mask={spec} has no mask for image {name!r} (expected "
                              f"{name}.png, white where observed).")
      with Image.open(found[0]) as image:
        pixels = np.asarray(image.convert("L"))
      if pixels.shape != (h, w):
        raise CompletionError(f"The mask {found[0]} is {pixels.shape[1]}x{pixels.shape[0]}; "
                              f"the images are {w}x{h}.")
      mask[k] = (pixels > 0)[..., None]
  else:
    raise CompletionError(f"--mask={spec} is neither {' nor '.join(MASKS)} nor a folder of "
                          "mask PNGs.")
  flat = mask.reshape(len(names), -1)
  for what, bad in (("nothing missing", flat.all(axis=1)),
                    ("nothing observed", ~flat.any(axis=1))):
    if bad.any():
      raise CompletionError(f"The mask of {[names[i] for i in np.flatnonzero(bad)[:5]]} "
                            f"marks {what}: each image needs observed and missing pixels.")
  return mask


def complete_folder(model_path, images_dir, out_dir, mask="bottom_half", num_samples=4,
                    seed=0, label=None, scale=4):
  """Completes every image of `images_dir` `num_samples` times; writes PNGs to `out_dir`.

  Returns:
    int32 completions `[S, N, H, W, C]`.

  Raises:
    CompletionError: as `load`, `read_images` and `make_mask`, for a bad `num_samples`
      or label, or an `out_dir` that cannot be written.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tfgen import images as images_lib  # pylint: disable=g-import-not-at-top
  if num_samples < 1:
    raise CompletionError(f"--num_samples must be at least 1, got {num_samples}.")
  completer = load(model_path)
  names, images = read_images(images_dir, completer.image_shape, completer.num_levels)
  keep = make_mask(mask, names, completer.image_shape)
  labels = None
  if completer.num_classes:
    if label is None or not 0 <= label < completer.num_classes:
      raise CompletionError(f"This model is class-conditional: pass --label in [0, "
                            f"{completer.num_classes}), the class of every image.")
    labels = np.full(len(names), label, np.int32)
  elif label is not None:
    raise CompletionError("This model is unconditional: drop --label.")
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(num_samples):
    noise = {name: (rng.standard_normal if name == "z" else rng.uniform)(
        size=(len(names),) + shape).astype(np.float32)
             for name, shape in sorted(completer.noise_shapes.items())}
    out.append(completer(images, keep, noise, labels))
  completions = np.stack(out)  # [S, N, H, W, C]
  try:
    os.makedirs(out_dir, exist_ok=True)
    k_levels = completer.num_levels
    for s in range(num_samples):
      for n, name in enumerate(names):
        with open(os.path.join(out_dir, f"{name}-{s}.png"), "wb") as f:
          f.write(images_lib.png_bytes(images_lib.levels_to_uint8(completions[s, n],
                                                                  k_levels)))
    rows = np.concatenate([images[None], completions, images[None]])  # [S + 2, N, ...]
    blank = np.zeros(rows.shape, bool)
    blank[0] = keep == 0
    picture = images_lib.grid(rows.transpose(1, 0, 2, 3, 4).reshape((-1,) + rows.shape[2:]),
                              k_levels, columns=num_samples + 2,
                              blank=blank.transpose(1, 0, 2, 3, 4).reshape(
                                  (-1,) + rows.shape[2:]))
    with open(os.path.join(out_dir, "completions.png"), "wb") as f:
      f.write(images_lib.png_bytes(picture, scale))
  except OSError as e:
    raise CompletionError(f"Cannot write to --out={out_dir} ({e.strerror or e}). Pass a "
                          "folder you can write to.") from e
  return completions


def _define_flags():
  """The command's flags, defined only when it runs (the module is also a library:
  importing it beside another command must not define flags of the same names)."""
  flags.DEFINE_string("model", None, "A train_main.py run directory, zoo:NAME (a trained "
                      "model of tfgen.zoo), an export directory (python -m export) or a "
                      "completer_*.tflite file.")
  flags.DEFINE_string("images", None, "Folder of PNG/JPEG images to complete.")
  flags.DEFINE_string("out", "completions", "Folder to write the completions to.")
  flags.DEFINE_string("mask", "bottom_half", "bottom_half, right_half, or a folder of mask "
                      "PNGs named like the images (white = observed).")
  flags.DEFINE_integer("num_samples", 4, "Completions per image.")
  flags.DEFINE_integer("seed", 0, "Seed of the noise.")
  flags.DEFINE_integer("label", None, "Class of every image, for a class-conditional model.")
  flags.DEFINE_integer("scale", 4, "Enlarge completions.png this many times.")


def main(argv):
  f = flags.FLAGS
  if len(argv) > 1:
    print(f"\nError: unexpected arguments {argv[1:]}; every option is a --flag.",
          file=sys.stderr)
    return 1
  if not f.model or not f.images:
    print("\nError: pass --model (a train_main.py run, an export directory or a "
          "completer_*.tflite) and --images (a folder of images to complete).", file=sys.stderr)
    return 1
  try:
    completions = complete_folder(f.model, f.images, f.out, f.mask, f.num_samples, f.seed,
                                  f.label, f.scale)
  except (CompletionError, ValueError) as e:
    print(f"\nError: {e}", file=sys.stderr)
    return 1
  print(f"Wrote {f.out}: {completions.shape[0]} completions of each of "
        f"{completions.shape[1]} images, and completions.png.")
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
