"""Exports a trained tfgen model to a SavedModel and to TFLite samplers.

One exporter for every model family: any model that declares both
`tfgen.models.api.Sampler` and `api.LikelihoodModel` exports. The sampler says what
randomness it takes (`export_noise_specs`), how to sample in a graph of TFLite builtin
ops (`sample_from_noise`) and which extra signatures it has (`export_extras`, e.g. a
VAE's `encode`/`decode`); the likelihood model how to score images (`log_prob_graph`);
a `api.Completer` how to complete images (`complete_from_noise`). This module wraps
those in signatures with input checks, writes the SavedModel, converts the sampler and
the completer to `.tflite` (float32, float16, dynamic-range int8) and writes
`metadata.json` and a README describing every input and output.

Layout of OUT:
  saved_model/             signatures "sample", "log_prob", "complete" (completers) and
                           family extras; needs only TensorFlow to load:
                           tf.saved_model.load(OUT + "/saved_model")
  sampler_float32.tflite   the whole sampling loop (for autoregressive models a WHILE
  sampler_float16.tflite   loop over positions with a fixed-shape image buffer) in
  sampler_int8.tflite      builtin ops only: the stock LiteRT interpreter runs it
  completer_*.tflite       the same for the "complete" signature (images, mask, noise)
  metadata.json, README.md

Glossary of tensor shapes:
  B: batch (`batch_size` for TFLite; any for the SavedModel).  H, W, C: image shape.
  D: latent dimensions (VAEs).
"""

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from tensorflow.python.framework import convert_to_constants

from tfgen.models import api

FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = ("none", "float16", "dynamic_int8")
_SUFFIXES = {"none": "float32", "float16": "float16", "dynamic_int8": "int8"}
TFLITE_NAMES = {q: f"sampler_{suffix}.tflite" for q, suffix in _SUFFIXES.items()}
# A model that completes images (`api.Completer`) also gets one completer per variant.
COMPLETER_NAMES = {q: f"completer_{suffix}.tflite" for q, suffix in _SUFFIXES.items()}


class ExportError(ValueError):
  """A model directory, model or option that cannot be exported; the message says why."""


def load_model(model_dir):
  """Loads a finished `train_main.py` run: `(model, config dict)`.

  Raises:
    ExportError: for a missing directory or model file, or a file Keras cannot load
      (see `tfgen.runs.load_model`).
  """
  from tfgen import runs  # pylint: disable=g-import-not-at-top
  try:
    return runs.load_model(model_dir)
  except runs.RunError as e:
    raise ExportError(str(e)) from e


def export_run(model_dir, out_dir, formats=FORMATS, quantize=QUANTIZATIONS, batch_size=16,
               verbose=False):
  """Exports a finished `train_main.py` run: `export` of its model, with the run's
  config and class names in the metadata.

  Raises:
    ExportError: as `load_model` and `export`.
  """
  model, config = load_model(model_dir)
  return export(model, out_dir, formats=formats, quantize=quantize, batch_size=batch_size,
                label_names=_label_names(config), model_config=config, verbose=verbose)


def _label_names(config):
  """Class names of the run's dataset for the metadata; None when they cannot be read."""
  from tfgen import runs  # pylint: disable=g-import-not-at-top
  try:
    if not runs.train_config(config).model.conditional:
      return None
    info = runs.load_data(config).info
  except ValueError:  # Moved or offline data: the names are optional.
    return None
  return list(info.label_names) if info.label_names else None


def check_exportable(model):
  """Raises ExportError for a model (or model class) with nothing to export."""
  if not (api.implements(model, api.Sampler) and api.implements(model, api.LikelihoodModel)):
    cls = model if isinstance(model, type) else type(model)
    name = cls.MODEL_NAME or cls.__name__
    raise ExportError(
        f"Model {name!r} has no sampler or likelihood to "
        "export: an autoencoder is not a generative model. Export a PixelCNN-family "
        "model or a VAE; use model.encoder / model.decoder from Keras for an autoencoder.")


def _to_uint8(model, levels):
  scale = 255.0 / (model.num_levels - 1)
  return tf.cast(tf.round(tf.cast(levels, tf.float32) * scale), tf.uint8)


def _label_spec(model, batch):
  """The conditioning input of every signature: labels `[B]`, a vector `[B, D]`, none."""
  if model.condition_dim is not None:
    return [tf.TensorSpec([batch, model.condition_dim], tf.float32, name="condition")]
  if model.num_classes is None:
    return []
  return [tf.TensorSpec([batch], tf.int32, name="labels")]


def _assert_shape(tensor, shape, what):
  """Asserts the trailing shape and a batch of at least one; messages name the input."""
  expected = "[batch, " + ", ".join(str(d) for d in shape) + "]"
  return [tf.debugging.assert_equal(
              tf.shape(tensor)[1:], tf.constant(shape, tf.int32),
              message=f"{what} must have shape {expected}"),
          # Convolutions fail obscurely on an empty batch.
          tf.debugging.assert_positive(
              tf.shape(tensor)[0], message=f"{what} must hold at least one image (batch >= 1)")]


def _checked_labels(model, labels, batch_of):
  if labels is None:
    return []
  if model.condition_dim is not None:
    return [
        tf.debugging.assert_equal(
            tf.shape(labels), tf.stack([tf.shape(batch_of)[0], model.condition_dim]),
            message=f"condition must have shape [batch, {model.condition_dim}]"),
        tf.debugging.assert_all_finite(labels, "condition must hold finite values"),
    ]
  return [
      tf.debugging.assert_equal(tf.shape(labels)[0], tf.shape(batch_of)[0],
                                message="labels must have one entry per image, shape [batch]"),
      tf.debugging.assert_non_negative(labels, message="labels must be >= 0"),
      tf.debugging.assert_less(
          labels, model.num_classes,
          message=f"labels must be class indices below num_classes={model.num_classes}"),
  ]


def _checked_noise(noise, specs, batch_of, batch_name):
  """Asserts each noise input's shape and values, and as many rows as the input named
  `batch_name`, `batch_of` (one row per image)."""
  deps = []
  for name, value in noise.items():
    deps += _assert_shape(value, list(specs[name].shape[1:]), name)
    if name != "z":  # Uniform noise for inverse-CDF sampling (pixels, categories).
      deps += [tf.debugging.assert_non_negative(value, message=f"{name} must lie in [0, 1)"),
               tf.debugging.assert_less(value, 1.0, message=f"{name} must lie in [0, 1)")]
    else:  # A VAE's standard normal draw of z.
      deps.append(tf.debugging.assert_all_finite(value, f"{name} must hold finite values"))
    if name != batch_name:
      deps.append(tf.debugging.assert_equal(
          tf.shape(value)[0], tf.shape(batch_of)[0],
          message=f"{name} and {batch_name} must have the same batch size (one row of "
                  f"{name} per image)"))
  return deps


def _checked_images(model, images, what="images"):
  return _assert_shape(images, list(model.image_shape), what) + [
      tf.debugging.assert_non_negative(images, message=f"{what} must hold levels >= 0"),
      tf.debugging.assert_less(
          images, model.num_levels,
          message=f"{what} must hold levels below num_levels={model.num_levels}")]


def _checked_mask(images, mask):
  """A 0/1 mask of the images' shape with something observed and missing per image."""
  per_image = lambda x: tf.reduce_all(tf.reduce_any(x, axis=[1, 2, 3]))
  return [
      tf.debugging.assert_equal(tf.shape(mask), tf.shape(images),
                                message="mask must have the same shape as images"),
      tf.debugging.assert_non_negative(mask, message="mask must hold 0 (missing) and 1 "
                                       "(observed)"),
      tf.debugging.assert_less_equal(mask, 1, message="mask must hold 0 (missing) and 1 "
                                     "(observed)"),
      tf.debugging.Assert(per_image(tf.equal(mask, 0)), [
          "mask marks nothing missing in some image: each image needs observed and "
          "missing subpixels (score a whole image with log_prob)"]),
      tf.debugging.Assert(per_image(tf.equal(mask, 1)), [
          "mask marks nothing observed in some image: each image needs observed and "
          "missing subpixels (draw a whole image with sample)"])]


def _after(deps, *tensors):
  """`tensors` (None kept) as identities that exist only once the checks `deps` ran.

  A control dependency orders the ops it is attached to, and a sampler's loop is a
  called function whose inlined ops could read an input before the checks fail
  (a gather of an out-of-range label would raise its own, less helpful error first).
  Reading the inputs through these identities orders everything that uses them.
  """
  with tf.control_dependencies(deps):
    return [None if t is None else tf.nest.map_structure(tf.identity, t) for t in tensors]


def _signatures(model, checks=True, batch=None):
  """{name: (tf.function, [TensorSpec])} of everything exported.

  With `checks`, inputs are asserted (shape, range, labels) so a wrong input fails with
  a message instead of a silent wrong answer; TFLite models are built without them
  (Assert is not a builtin op) and a fixed batch.
  """
  labels_spec = _label_spec(model, batch)
  as_list = lambda specs: [tf.TensorSpec(s.shape, s.dtype, name=n) for n, s in specs.items()]

  def split(args, names):
    """(noise dict, labels) of a signature's positional arguments."""
    return dict(zip(names, args[:len(names)])), args[len(names)] if labels_spec else None

  noise_specs = model.export_noise_specs(batch)

  def sample(*args):
    noise, labels = split(args, list(noise_specs))
    deps = []
    if checks:
      deps = (_checked_noise(noise, noise_specs, noise["noise"], "noise")
              + _checked_labels(model, labels, noise["noise"]))
    noise, labels = _after(deps, noise, labels)
    # Without checks this is a TFLite sampler: builtin operators only.
    levels = model.sample_from_noise(noise, labels, builtin_only=not checks)
    return {"images": _to_uint8(model, levels), "levels": levels}

  def log_prob(images, labels=None):
    deps = []
    if checks:
      deps = _checked_images(model, images) + _checked_labels(model, labels, images)
    images, labels = _after(deps, images, labels)
    nats = model.log_prob_graph(images, labels)
    return {"log_prob_nats": nats,
            "bits_per_dim": -nats / (float(np.prod(model.image_shape)) * np.log(2.0))}

  image_spec = tf.TensorSpec((batch,) + model.image_shape, tf.int32, name="images")
  out = {"sample": (sample, as_list(noise_specs) + labels_spec),
         "log_prob": (log_prob, [image_spec] + labels_spec)}
  if api.implements(model, api.Completer):
    completion_specs = model.completion_noise_specs(batch)

    def complete(images, mask, *args):
      noise, labels = split(args, list(completion_specs))
      deps = []
      if checks:
        deps = (_checked_images(model, images) + _checked_mask(images, mask)
                + _checked_noise(noise, completion_specs, images, "images")
                + _checked_labels(model, labels, images))
      images, mask, noise, labels = _after(deps, images, mask, noise, labels)
      levels = model.complete_from_noise(images, tf.not_equal(mask, 0), noise, labels,
                                         builtin_only=not checks)
      return {"images": _to_uint8(model, levels), "levels": levels}

    mask_spec = tf.TensorSpec((batch,) + model.image_shape, tf.int32, name="mask")
    out["complete"] = (complete, [image_spec, mask_spec] + as_list(completion_specs)
                       + labels_spec)
  for name, (fn, specs) in model.export_extras(batch).items():
    out[name] = (fn, specs + labels_spec)
  return out


def _describe(concrete):
  """{"inputs": {name: {shape, dtype}}, "outputs": {...}} of a concrete function."""
  args, kwargs = concrete.structured_input_signature
  inputs = {spec.name: {"shape": [d if d is not None else -1 for d in spec.shape.as_list()],
                        "dtype": spec.dtype.name}
            for spec in list(args) + list(kwargs.values()) if isinstance(spec, tf.TensorSpec)}
  outputs = {name: {"shape": [d if d is not None else -1 for d in spec.shape.as_list()],
                    "dtype": spec.dtype.name}
             for name, spec in concrete.structured_outputs.items()}
  return {"inputs": inputs, "outputs": outputs}


def _concrete(fn, specs):
  return tf.function(fn, input_signature=specs, autograph=False).get_concrete_function()


def _save_signatures(model, path):
  """Writes the SavedModel; returns `{signature: _describe(...)}`.

  Each signature is traced once and saved as a concrete function, both as a signature
  (what `saved_model_cli`, the TF1 session loader and `.signatures[...]` run) and as an
  attribute of the same name (`tf.saved_model.load(path).sample(...)`). The variables
  the signatures read are saved as a plain list (`_all_variables`), as
  `keras.export.ExportArchive` does: a `tf.Module` holding the Keras model itself saves
  a graph whose variables the TF1 session loader (`saved_model_cli run`, TensorFlow
  Serving's C++ SavedModelBundle) cannot find ("Could not find variable ...
  uninitialized"). ExportArchive itself is not used because it traces every endpoint
  twice (once to list its variables, again in `tf.saved_model.save`, which retraces a
  `tf.function` given as a signature): for an autoregressive sampler that doubled the
  export time.
  """
  concretes = {name: _concrete(fn, specs)
               for name, (fn, specs) in _signatures(model, checks=True).items()}
  root = tf.__internal__.tracking.AutoTrackable()
  variables = {}
  for concrete in concretes.values():
    for v in concrete.variables:
      variables.setdefault(id(v), v)
  root._all_variables = list(variables.values())  # pylint: disable=protected-access
  for name, concrete in concretes.items():
    setattr(root, name, concrete)
  # No "serve" endpoint: the TFLite converter would then drop every other signature.
  # "serving_default" (TensorFlow Serving's default) is an alias of "sample".
  tf.saved_model.save(root, path,
                      signatures=dict(concretes, serving_default=concretes["sample"]))
  return {name: _describe(concrete) for name, concrete in concretes.items()}


def _tflite_models(model, batch, quantize, signature="sample", report=lambda *a, **k: None):
  """The sampler (or the completer, `signature="complete"`) as `{quantization: .tflite
  bytes}` for each of `quantize`, each with one signature of that name, builtin
  operators only.

  The signature is traced, frozen and saved once; only the conversion runs per
  quantization. Variables are frozen into constants first: the converter leaves
  variables read inside a WHILE body as READ_VARIABLE ops, which LiteRT cannot resolve
  at run time.
  """
  what = {"sample": "sampler", "complete": "completer"}[signature]
  fn, specs = _signatures(model, checks=False, batch=batch)[signature]
  concrete = _concrete(fn, specs)
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)

  def named(*args):  # The frozen function returns a flat list; restore the names.
    return tf.nest.pack_sequence_as(concrete.structured_outputs,
                                    tf.nest.flatten(frozen(*args)))

  module = tf.Module()
  module.fn = tf.function(named, input_signature=specs)
  blobs = {}
  with tempfile.TemporaryDirectory() as tmp:
    tf.saved_model.save(module, tmp, signatures={signature: module.fn.get_concrete_function()})
    for q in quantize:
      report(f"Converting the TFLite {signature} model ({q}) ...", flush=True)
      converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[signature])
      converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
      if q != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
      if q == "float16":
        converter.target_spec.supported_types = [tf.float16]
      try:
        blob = converter.convert()
      except Exception as e:
        raise ExportError(
            f"Model {model.name!r} cannot be converted to a TFLite {what} with builtin "
            f"operators only ({str(e).splitlines()[0][:300]}). Export "
            "--formats=saved_model, or report the operator named above.") from e
      custom = [op for op in tflite_operators(blob) if op.startswith("CUSTOM")]
      if custom:  # The stock LiteRT interpreter has no Flex delegate to run these.
        raise ExportError(
            f"Model {model.name!r} converts to a TFLite {what} that needs non-builtin "
            f"operators {custom}, which LiteRT cannot run. Export --formats=saved_model.")
      blobs[q] = blob
  return blobs


def tflite_operators(path_or_bytes):
  """Every operator a `.tflite` model uses, in all of its subgraphs (WHILE bodies too).

  Builtins by name (e.g. "WHILE", "CONV_2D"); a custom operator, such as a Flex op
  the stock interpreter cannot run, as "CUSTOM:<name>".
  """
  from tensorflow.lite.python import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  blob = path_or_bytes
  if not isinstance(blob, bytes):
    with open(path_or_bytes, "rb") as f:
      blob = f.read()
  names = {code: name for name, code in vars(schema.BuiltinOperator).items()
           if not name.startswith("_")}
  # The flatbuffer read in place: the object API (ModelT) would copy every weight
  # buffer into Python lists first, seconds for a model of a few megabytes.
  tflite_model = schema.Model.GetRootAs(bytearray(blob), 0)
  found = set()
  for i in range(tflite_model.OperatorCodesLength()):
    code = tflite_model.OperatorCodes(i)
    # Codes above 127 live in builtinCode; older files keep small ones deprecated.
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == schema.BuiltinOperator.CUSTOM:
      custom = code.CustomCode()
      found.add(f"CUSTOM:{custom.decode() if isinstance(custom, bytes) else custom}")
    else:
      found.add(names.get(builtin, f"BUILTIN_{builtin}"))
  return sorted(found)


def export(model, out_dir, formats=FORMATS, quantize=QUANTIZATIONS, batch_size=16,
           label_names=None, model_config=None, verbose=False):
  """Writes the SavedModel and/or TFLite samplers of `model` into `out_dir`.

  Args:
    model: a trained tfgen model with a sampler (autoregressive models, VAEs).
    out_dir: output directory. Everything is written to a new directory beside it
      first, which then replaces `out_dir` whole: a failed export leaves a previous
      export there as it was. An existing `out_dir` must be empty or an export.
    formats: subset of `FORMATS`.
    quantize: subset of `QUANTIZATIONS`, the TFLite variants to write.
    batch_size: the fixed batch of the TFLite samplers.
    label_names: class names of a conditional model, for the metadata.
    model_config: the training config.json contents, for the metadata.
    verbose: print a line as each file is begun (conversion takes seconds to minutes).

  Returns:
    The metadata dict also written to `out_dir/metadata.json`.

  Raises:
    ExportError: for an unknown format or quantization, a bad batch size, a model
      without a sampler, a sampler that needs non-builtin TFLite operators, or an
      `out_dir` that cannot be written (or holds files that are not an export).
  """
  formats, quantize = tuple(formats), tuple(quantize)
  bad = [f for f in formats if f not in FORMATS] + [q for q in quantize if q not in QUANTIZATIONS]
  if bad or not formats:
    raise ExportError(
        f"Unknown or missing format/quantization {bad or formats}: formats are "
        f"{', '.join(FORMATS)}; quantizations are {', '.join(QUANTIZATIONS)}.")
  if int(batch_size) < 1:
    raise ExportError(f"batch_size must be a positive number of images, got {batch_size}.")
  check_exportable(model)
  staging = _staging_dir(out_dir)
  try:
    meta = _write_export(model, staging, formats, quantize, int(batch_size), label_names,
                         model_config, print if verbose else lambda *_, **__: None)
    _swap_into_place(staging, out_dir)
  except OSError as e:
    raise ExportError(
        f"Cannot write the export to {out_dir} ({e.strerror or e}: {e.filename or ''}). "
        "Pass an --out in a directory you can write to; nothing was changed at "
        f"{out_dir}.") from e
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return meta


# What an export directory holds; an existing --out with anything else is not replaced.
_EXPORT_FILES = frozenset(["saved_model", "metadata.json", "README.md"] +
                          list(TFLITE_NAMES.values()) + list(COMPLETER_NAMES.values()))


def _staging_dir(out_dir):
  """A fresh directory beside `out_dir`, where the whole export is written first.

  Raises:
    ExportError: for an `out_dir` that exists and holds files that are not an export
      (they would be lost when the export replaces it), or one that cannot be written.
  """
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir):
    if not os.path.isdir(out_dir):
      raise ExportError(f"--out {out_dir} is a file, not a directory. Pass a directory.")
    foreign = sorted(set(os.listdir(out_dir)) - _EXPORT_FILES)
    if foreign:
      raise ExportError(
          f"--out {out_dir} holds files that are not a tfgen export ({', '.join(foreign[:5])}"
          f"{', ...' if len(foreign) > 5 else ''}); an export replaces the whole directory. "
          "Pass a new or empty directory, or a previous export's.")
  parent = os.path.dirname(out_dir)
  try:
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would hide the export from others.
    return staging
  except OSError as e:
    raise ExportError(
        f"Cannot write the export to {out_dir}: {parent} is not writable "
        f"({e.strerror or e}). Pass an --out in a directory you can write to.") from e


def _swap_into_place(staging, out_dir):
  """Replaces `out_dir` by the finished `staging` directory.

  Two renames within one parent directory: a reader sees either the previous export
  or the new one, and an error between them puts the previous one back.
  """
  out_dir = os.path.abspath(out_dir)
  if not os.path.exists(out_dir):
    os.replace(staging, out_dir)
    return
  previous = staging + ".previous"
  os.replace(out_dir, previous)
  try:
    os.replace(staging, out_dir)
  except OSError:
    os.replace(previous, out_dir)
    raise
  shutil.rmtree(previous, ignore_errors=True)


def _write_export(model, out_dir, formats, quantize, batch_size, label_names, model_config,
                  report):
  """Writes every export file into the (empty) directory `out_dir`; returns the metadata."""
  meta = {
      "model": type(model).__name__, "model_name": model.MODEL_NAME,
      "image_shape": list(model.image_shape), "num_levels": model.num_levels,
      "num_classes": model.num_classes, "label_names": label_names,
      "condition_dim": model.condition_dim,
      "latent_dim": model.latent_dim if api.implements(model, api.LatentModel) else None,
      "uint8_mapping": f"uint8 = round(level * 255 / {model.num_levels - 1})",
      "noise": {name: ("standard normal" if name == "z" else "uniform in [0, 1)")
                for name in model.export_noise_specs(None)},
      "training_config": model_config,
  }
  if "saved_model" in formats:
    report("Writing the SavedModel ...", flush=True)
    meta["saved_model"] = {"path": "saved_model",
                           "signatures": _save_signatures(model, os.path.join(out_dir,
                                                                              "saved_model"))}
    if not model.LOG_PROB_IS_EXACT:
      meta["saved_model"]["log_prob_importance_samples"] = model.EXPORT_IMPORTANCE_SAMPLES
  if "tflite" in formats:
    kinds = [("tflite", "sample", TFLITE_NAMES)]
    if api.implements(model, api.Completer):
      kinds.append(("tflite_completer", "complete", COMPLETER_NAMES))
    for key, signature, names in kinds:
      meta[key] = {}
      for q, blob in _tflite_models(model, batch_size, quantize, signature, report).items():
        with open(os.path.join(out_dir, names[q]), "wb") as f:
          f.write(blob)
        meta[key][q] = _describe_tflite(blob, signature, names[q], batch_size)
  with open(os.path.join(out_dir, "metadata.json"), "w") as f:
    json.dump(meta, f, indent=2)
  with open(os.path.join(out_dir, "README.md"), "w") as f:
    f.write(_readme(meta))
  return meta


def _describe_tflite(blob, signature, name, batch_size):
  """The metadata of one `.tflite` file: its signature's inputs and outputs as LiteRT
  reads them, and its operators."""
  from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  runner = litert.Interpreter(model_content=blob).get_signature_runner(signature)
  describe = lambda details: {k: {"shape": v["shape"].tolist(),
                                  "dtype": np.dtype(v["dtype"]).name}
                              for k, v in details.items()}
  return {"file": name, "bytes": len(blob), "batch_size": batch_size, "signature": signature,
          "inputs": describe(runner.get_input_details()),
          "outputs": describe(runner.get_output_details()),
          "operators": tflite_operators(blob)}


def _readme(meta):
  lines = [f"# Exported {meta['model']} ({meta['model_name']})", "",
           f"Images {meta['image_shape']} with {meta['num_levels']} levels; "
           f"{meta['uint8_mapping']}.", ""]
  if meta["num_classes"]:
    lines += [f"Class-conditional: labels 0..{meta['num_classes'] - 1} "
              f"({meta['label_names'] or 'unnamed'}).", ""]
  if meta.get("condition_dim"):
    lines += [f"Conditioned on a float vector `condition` [batch, {meta['condition_dim']}].",
              ""]
  if "saved_model" in meta:
    lines += ["## SavedModel (needs only TensorFlow)", "", "```python",
              "import numpy as np, tensorflow as tf",
              "m = tf.saved_model.load('saved_model')"]
    sample = meta["saved_model"]["signatures"]["sample"]["inputs"]
    args = []
    for name, spec in sample.items():
      shape = tuple(4 if d == -1 else d for d in spec["shape"])
      if name == "labels":
        args.append(f"labels=np.zeros({shape[0]}, np.int32)")
      elif name == "condition":
        args.append(f"condition=np.zeros({shape}, np.float32)")
      elif name == "z":
        args.append(f"z=np.random.normal(size={shape}).astype(np.float32)")
      else:
        args.append(f"{name}=np.random.uniform(size={shape}).astype(np.float32)")
    lines += ["out = m.signatures['sample'](" + ", ".join(args) + ")",
              "images = out['images'].numpy()  # uint8", "```", "", "Signatures:", ""]
    for name, sig in meta["saved_model"]["signatures"].items():
      ins = ", ".join(f"{k} {v['dtype']}{v['shape']}" for k, v in sig["inputs"].items())
      outs = ", ".join(f"{k} {v['dtype']}{v['shape']}" for k, v in sig["outputs"].items())
      lines.append(f"- `{name}`: {ins} -> {outs}")
    lines.append("")
  for key in ("tflite", "tflite_completer"):
    for q, info in meta.get(key, {}).items():
      ins = ", ".join(f"{k} {v['dtype']}{v['shape']}" for k, v in info["inputs"].items())
      outs = ", ".join(f"{k} {v['dtype']}{v['shape']}" for k, v in info["outputs"].items())
      lines.append(f"- `{info['file']}` ({q}, {info['bytes']} bytes): signature "
                   f"`{info['signature']}`: {ins} -> {outs}")
  if meta.get("tflite"):
    lines += ["", "Run a sampler with the LiteRT interpreter (`pip install ai-edge-litert`):",
              "", "```sh", "python -m export.sample_main --tflite=sampler_float32.tflite "
              "--out=samples.png", "```", ""]
  if "complete" in meta.get("saved_model", {}).get("signatures", {}) or meta.get(
      "tflite_completer"):
    if meta["latent_dim"] is None:  # An autoregressive model.
      lines += ["`complete` keeps the subpixels where `mask` is 1 and draws those where it",
                "is 0 in the generation order (raster, then channel), from the `noise`",
                "there; exact samples of p(missing | observed) when the missing subpixels",
                "come last in that order (e.g. the bottom rows)."]
    else:
      lines += ["`complete` keeps the subpixels where `mask` is 1 and redraws those where",
                "it is 0 by the VAE's encode/decode chain (Rezende et al. 2014), one step",
                "per row of `z` and `noise`: an approximate sample of p(missing | observed)."]
    lines += ["Complete a folder of PNG images:", "",
              "```sh", "python -m export.complete_main --model=. --images=DIR --out=OUT_DIR",
              "```", ""]
  return "\n".join(lines) + "\n"
