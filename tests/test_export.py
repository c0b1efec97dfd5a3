"""Exported SavedModels and TFLite samplers: parity with Keras, builtin ops, input errors."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert import interpreter as litert

import likelihood_checks as checks
import commands
from export import export_lib
from tfgen import models

# Wide enough (3x3x16x16 kernels) that dynamic-range int8 really quantizes weights:
# the converter leaves tensors under 1,024 elements in float.
PIXELCNN = dict(hidden_dim=16, num_blocks=1, output_dim=32, input_kernel_size=3,
                kernel_size=3)
BATCH = 4


def _noise(model, seed=0, batch=BATCH):
  rng = np.random.default_rng(seed)
  return rng.uniform(size=(batch,) + model.image_shape).astype(np.float32)


@pytest.fixture(scope="module")
def pixelcnn_export(tmp_path_factory):
  """A conditional RGB PixelCNN (cached sampler), exported in every format."""
  model = checks.randomize(models.build("pixelcnn", (4, 4, 3), 4, num_classes=3, **PIXELCNN))
  out = str(tmp_path_factory.mktemp("pixelcnn"))
  meta = export_lib.export(model, out, batch_size=BATCH, label_names=["a", "b", "c"])
  return model, out, meta


@pytest.fixture(scope="module")
def vae_export(tmp_path_factory):
  model = checks.randomize(models.build("vae", (4, 4, 1), 2, latent_dim=3, hidden_dims="64"),
                           scale=0.5)
  out = str(tmp_path_factory.mktemp("vae"))
  meta = export_lib.export(model, out, batch_size=BATCH)
  return model, out, meta


def _tflite(out, name, **inputs):
  runner = litert.Interpreter(model_path=os.path.join(out, name)).get_signature_runner("sample")
  return runner(**inputs)


def test_pixelcnn_sampler_parity_across_formats(pixelcnn_export):
  model, out, meta = pixelcnn_export
  noise, labels = _noise(model), np.array([0, 1, 2, 1], np.int32)
  keras_levels = model.sample(BATCH, noise=noise, labels=labels).numpy()
  saved = tf.saved_model.load(os.path.join(out, "saved_model"))
  sm = saved.signatures["sample"](noise=tf.constant(noise), labels=tf.constant(labels))
  np.testing.assert_array_equal(sm["levels"].numpy(), keras_levels)
  np.testing.assert_array_equal(sm["images"].numpy(),
                                np.round(keras_levels * 255 / 3).astype(np.uint8))
  lite = _tflite(out, "sampler_float32.tflite", noise=noise, labels=labels)
  np.testing.assert_array_equal(lite["levels"], keras_levels)  # Exactly, every pixel.
  assert lite["images"].dtype == np.uint8
  float_nll = -model.log_prob(keras_levels, labels).numpy().mean()
  for name in ("sampler_float16.tflite", "sampler_int8.tflite"):
    levels = _tflite(out, name, noise=noise, labels=labels)["levels"]
    agree = (levels == keras_levels).mean()
    nll = -model.log_prob(levels, labels).numpy().mean()
    # Quantized weights move some CDF steps past the noise: a few pixels differ (and
    # every later pixel then conditions on them); the samples stay as likely.
    assert agree > 0.7, (name, agree)
    assert abs(nll - float_nll) < 0.25 * float_nll, (name, nll, float_nll)
  # The variants really hold quantized weights, not copies of the float model.
  assert "INT8" not in _tensor_types(out, "sampler_float32.tflite")
  assert "INT8" in _tensor_types(out, "sampler_int8.tflite")
  assert "FLOAT16" in _tensor_types(out, "sampler_float16.tflite")
  sizes = {q: meta["tflite"][q]["bytes"] for q in meta["tflite"]}
  assert sizes["dynamic_int8"] < sizes["none"] and sizes["float16"] < sizes["none"], sizes


def _tensor_types(out, name):
  """Types of the tensors in every subgraph of a .tflite file (WHILE bodies too)."""
  from tensorflow.lite.python import schema_py_generated as schema
  names = {code: n for n, code in vars(schema.TensorType).items() if not n.startswith("_")}
  with open(os.path.join(out, name), "rb") as f:
    model = schema.ModelT.InitFromPackedBuf(f.read(), 0)
  return {names[t.type] for g in model.subgraphs for t in g.tensors}


def _completion_inputs(model, batch, seed=0, labels=None):
  """Images, a non-suffix 0/1 mask (observed and missing subpixels in every image), the
  noise of `completion_noise_specs` and labels: the exported `complete`'s inputs."""
  rng = np.random.default_rng(seed)
  shape = (batch,) + model.image_shape
  images = rng.integers(0, model.num_levels, shape).astype(np.int32)
  mask = (rng.random(shape) < 0.5).astype(np.int32)
  mask[:, 0, 0, 0], mask[:, -1, -1, -1] = 1, 0
  noise = {name: (rng.standard_normal if name == "z" else rng.uniform)(
      size=(batch,) + tuple(spec.shape[1:])).astype(np.float32)
           for name, spec in model.completion_noise_specs(batch).items()}
  inputs = dict(images=images, mask=mask, **noise)
  if labels is not None:
    inputs["labels"] = labels
  return inputs


def _keras_completion(model, inputs):
  """`model.complete` of the exported signature's inputs: one completion per image."""
  noise = {k: v[None] for k, v in inputs.items() if k not in ("images", "mask", "labels")}
  return model.complete(inputs["images"], inputs["mask"], 1, noise=noise,
                        labels=inputs.get("labels"))[0].numpy()


def _exported_completions(out, inputs, quantizations=("none",)):
  """{format: levels} of the SavedModel's `complete` and each TFLite completer."""
  saved = tf.saved_model.load(os.path.join(out, "saved_model")).signatures["complete"]
  got = {"saved_model": saved(**{k: tf.constant(v) for k, v in inputs.items()})["levels"]
         .numpy()}
  for q in quantizations:
    runner = litert.Interpreter(model_path=os.path.join(
        out, export_lib.COMPLETER_NAMES[q])).get_signature_runner("complete")
    got[q] = runner(**inputs)["levels"]
  return got


def test_completion_signature_and_tflite_completers_equal_keras(pixelcnn_export, vae_export):
  for (model, out, meta), labels in ((pixelcnn_export, np.array([0, 1, 2, 1], np.int32)),
                                     (vae_export, None)):
    inputs = _completion_inputs(model, BATCH, seed=4, labels=labels)
    expected = _keras_completion(model, inputs)
    observed = inputs["mask"] == 1
    assert np.all(expected[observed] == inputs["images"][observed])
    got = _exported_completions(out, inputs, ("none", "float16", "dynamic_int8"))
    np.testing.assert_array_equal(got["saved_model"], expected)
    np.testing.assert_array_equal(got["none"], expected)  # Exactly, every subpixel.
    for q in ("float16", "dynamic_int8"):  # Quantized: the observed part stays exact.
      assert np.all(got[q][observed] == inputs["images"][observed]), q
      assert (got[q] == expected).mean() > 0.7, (q, (got[q] == expected).mean())
    for q, info in meta["tflite_completer"].items():
      assert info["signature"] == "complete" and info["batch_size"] == BATCH
      assert not [op for op in info["operators"] if op.startswith("CUSTOM")], (q, info)
      assert export_lib.tflite_operators(os.path.join(out, info["file"])) == info["operators"]
  # The autoregressive completer walks the positions inside the model, too.
  assert "WHILE" in pixelcnn_export[2]["tflite_completer"]["none"]["operators"]


def test_tflite_samplers_use_builtin_operators_only(pixelcnn_export, vae_export):
  for _, out, meta in (pixelcnn_export, vae_export):
    for q, info in meta["tflite"].items():
      ops = export_lib.tflite_operators(os.path.join(out, info["file"]))
      assert ops == info["operators"]
      assert not [op for op in ops if op.startswith("CUSTOM")], (q, ops)
  # The autoregressive loop is inside the model, not in the caller.
  assert "WHILE" in pixelcnn_export[2]["tflite"]["none"]["operators"]


def test_operator_listing_sees_custom_ops():
  # The broken variant: a graph with a stateless random op converted with Flex allowed.
  @tf.function(input_signature=[tf.TensorSpec([2], tf.int32)])
  def draw(seed):
    return tf.random.stateless_uniform([3], seed)

  converter = tf.lite.TFLiteConverter.from_concrete_functions([draw.get_concrete_function()],
                                                              draw)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                         tf.lite.OpsSet.SELECT_TF_OPS]
  ops = export_lib.tflite_operators(converter.convert())
  assert any(op.startswith("CUSTOM:Flex") for op in ops), ops


def test_log_prob_signature_equals_keras(pixelcnn_export, vae_export):
  model, out, _ = pixelcnn_export
  images = model.sample(6, seed=3, labels=np.arange(6) % 3).numpy()
  labels = (np.arange(6) % 3).astype(np.int32)
  saved = tf.saved_model.load(os.path.join(out, "saved_model"))
  res = saved.signatures["log_prob"](images=tf.constant(images), labels=tf.constant(labels))
  expected = model.log_prob(images, labels).numpy()
  np.testing.assert_allclose(res["log_prob_nats"].numpy(), expected, rtol=1e-4)
  np.testing.assert_allclose(res["bits_per_dim"].numpy(), -expected / (48 * np.log(2)),
                             rtol=1e-4)
  model, out, meta = vae_export
  images = checks.all_images((4, 4, 1), 2)[::997][:6]
  saved = tf.saved_model.load(os.path.join(out, "saved_model"))
  res = saved.signatures["log_prob"](images=tf.constant(images))
  k = meta["saved_model"]["log_prob_importance_samples"]
  expected = model.log_prob(images, num_importance_samples=k, seed=0).numpy()
  np.testing.assert_allclose(res["log_prob_nats"].numpy(), expected, rtol=1e-4)


def test_vae_signatures(vae_export):
  model, out, _ = vae_export
  rng = np.random.default_rng(1)
  z = rng.standard_normal((BATCH, 3)).astype(np.float32)
  noise = _noise(model, 2)
  keras_levels = model.sample(BATCH, z=z, noise=noise).numpy()
  saved = tf.saved_model.load(os.path.join(out, "saved_model"))
  np.testing.assert_array_equal(
      saved.signatures["sample"](z=tf.constant(z), noise=tf.constant(noise))["levels"].numpy(),
      keras_levels)
  np.testing.assert_array_equal(
      _tflite(out, "sampler_float32.tflite", z=z, noise=noise)["levels"], keras_levels)
  decoded = saved.signatures["decode"](z=tf.constant(z), noise=tf.constant(noise))
  np.testing.assert_allclose(decoded["mean"].numpy(), model.decode_mean(z).numpy(), rtol=1e-5)
  np.testing.assert_array_equal(decoded["levels"].numpy(), keras_levels)
  images = keras_levels
  encoded = saved.signatures["encode"](images=tf.constant(images))
  q = model.encode(images)
  np.testing.assert_allclose(encoded["mean"].numpy(), q.mean().numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(encoded["stddev"].numpy(), q.stddev().numpy(), rtol=1e-5)


# One exporter for every family: each model only says how it samples from noise.
@pytest.mark.parametrize("name,shape,levels,classes,hparams", [
    ("gated_pixelcnn", (3, 3, 3), 3, 2,
     dict(hidden_dim=6, num_layers=2, kernel_size=3, skip_dim=6, output_dim=6)),
    ("row_lstm", (3, 3, 1), 2, None,
     dict(hidden_dim=6, num_layers=2, input_kernel_size=3, output_dim=12)),
    ("diagonal_bilstm", (3, 3, 3), 3, 2,
     dict(hidden_dim=6, num_layers=2, input_kernel_size=3, output_dim=12)),
    ("pixelcnn_pp", (4, 4, 3), 4, None,
     dict(num_filters=6, num_resnet=1, num_scales=2, num_mixtures=2)),
])
def test_every_family_exports_a_builtin_sampler(tmp_path, name, shape, levels, classes,
                                                hparams):
  model = checks.randomize(models.build(name, shape, levels, num_classes=classes, **hparams),
                           scale=0.5)
  meta = export_lib.export(model, str(tmp_path), quantize=["none"], batch_size=3)
  assert not [op for op in meta["tflite"]["none"]["operators"] if op.startswith("CUSTOM")]
  noise = _noise(model, 4, batch=3)
  labels = None if classes is None else np.array([0, 1, 1], np.int32)
  inputs = {"noise": noise} if labels is None else {"noise": noise, "labels": labels}
  keras_levels = model.sample(3, noise=noise, labels=labels).numpy()
  np.testing.assert_array_equal(
      _tflite(str(tmp_path), "sampler_float32.tflite", **inputs)["levels"], keras_levels)
  saved = tf.saved_model.load(str(tmp_path / "saved_model")).signatures
  lp = saved["log_prob"](**{"images": tf.constant(keras_levels),
                            **({} if labels is None else {"labels": tf.constant(labels)})})
  np.testing.assert_allclose(lp["log_prob_nats"].numpy(),
                             model.log_prob(keras_levels, labels).numpy(), rtol=1e-4)
  inputs = _completion_inputs(model, 3, seed=5, labels=labels)
  expected = _keras_completion(model, inputs)
  for got in _exported_completions(str(tmp_path), inputs).values():
    np.testing.assert_array_equal(got, expected)


# Every VAE decoder, every quantization: the binned Gaussian's sampler is an inverse CDF
# in builtin ops (no Ndtri), run by Keras and the exported models alike.
@pytest.mark.parametrize("name", ["vae", "conv_vae"])
@pytest.mark.parametrize("likelihood,levels", [("bernoulli", 2), ("categorical", 5),
                                               ("gaussian", 5), ("gaussian", 256)])
def test_every_vae_decoder_exports_in_every_quantization(tmp_path, name, likelihood, levels):
  hparams = dict(latent_dim=3, hidden_dims="16", likelihood=likelihood)
  if name == "conv_vae":
    hparams["conv_filters"] = "4-8"
  model = checks.randomize(models.build(name, (4, 4, 1), levels, **hparams), scale=0.5)
  meta = export_lib.export(model, str(tmp_path), batch_size=3)
  rng = np.random.default_rng(7)
  z = rng.standard_normal((3, 3)).astype(np.float32)
  noise = _noise(model, 8, batch=3)
  keras_levels = model.sample(3, z=z, noise=noise).numpy()
  for q, info in meta["tflite"].items():
    assert not [op for op in info["operators"] if op.startswith("CUSTOM")], (q, info)
    levels_q = _tflite(str(tmp_path), info["file"], z=z, noise=noise)["levels"]
    if q == "none":
      np.testing.assert_array_equal(levels_q, keras_levels)
    else:  # Quantized weights move a few CDF steps past the noise.
      assert levels_q.min() >= 0 and levels_q.max() < levels, q
      assert np.abs(levels_q - keras_levels).mean() <= 0.2 * levels, q
  saved = tf.saved_model.load(str(tmp_path / "saved_model")).signatures
  np.testing.assert_array_equal(
      saved["sample"](z=tf.constant(z), noise=tf.constant(noise))["levels"].numpy(),
      keras_levels)
  inputs = _completion_inputs(model, 3, seed=9)
  expected = _keras_completion(model, inputs)
  for got in _exported_completions(str(tmp_path), inputs).values():
    np.testing.assert_array_equal(got, expected)


# Richer latent models: the prior's draw (mixture component by inverse CDF, categories
# by inverse CDF) is part of the exported sampler, in builtin operators.
@pytest.mark.parametrize("hparams", [
    dict(posterior="iaf", num_flows=2, flow_units=8, prior="mixture", prior_components=3),
    dict(prior="vamp", prior_components=3),
    dict(latent="categorical", num_latents=2, num_categories=3),
])
def test_richer_latent_models_export_with_parity(tmp_path, hparams):
  model = checks.randomize(models.build("vae", (4, 4, 1), 2, latent_dim=3, hidden_dims="16",
                                        **hparams), scale=0.5)
  meta = export_lib.export(model, str(tmp_path), quantize=["none"], batch_size=3)
  specs = model.export_noise_specs(3)
  assert list(meta["noise"]) == list(specs)
  rng = np.random.default_rng(3)
  noise = {name: (rng.standard_normal if name == "z" else rng.uniform)(
      size=spec.shape).astype(np.float32) for name, spec in specs.items()}
  # The codes, drawn by hand from the prior's parameters and the same noise.
  if model.is_categorical:
    codes = np.eye(3, dtype=np.float32)[(noise["categories"] * 3).astype(int)].reshape(3, 6)
  else:
    prior = model.prior_distribution()
    k = np.searchsorted(np.cumsum(prior.mixture_distribution.probs_parameter().numpy()),
                        noise["component"])
    components = prior.components_distribution
    codes = components.mean().numpy()[k] + components.stddev().numpy()[k] * noise["z"]
  keras_levels = model.sample(3, z=codes, noise=noise["noise"]).numpy()
  assert not [op for op in meta["tflite"]["none"]["operators"] if op.startswith("CUSTOM")]
  np.testing.assert_array_equal(_tflite(str(tmp_path), "sampler_float32.tflite", **noise)
                                ["levels"], keras_levels)
  saved = tf.saved_model.load(str(tmp_path / "saved_model")).signatures
  np.testing.assert_array_equal(
      saved["sample"](**{k: tf.constant(v) for k, v in noise.items()})["levels"].numpy(),
      keras_levels)
  np.testing.assert_allclose(
      saved["log_prob"](images=tf.constant(keras_levels))["log_prob_nats"].numpy(),
      model.log_prob(keras_levels, num_importance_samples=100, seed=0).numpy(), rtol=1e-4)
  encoded = saved["encode"](images=tf.constant(keras_levels))
  key = "mean" if model.posterior_is_diagonal_gaussian else "features"
  np.testing.assert_allclose(encoded[key].numpy(), model.features(keras_levels).numpy(),
                             rtol=1e-4, atol=1e-5)
  inputs = _completion_inputs(model, 3, seed=9)
  expected = _keras_completion(model, inputs)
  for got in _exported_completions(str(tmp_path), inputs).values():
    np.testing.assert_array_equal(got, expected)


def _without_tfgen(args, cwd):
  """Runs a command in a process that cannot import tfgen (TensorFlow only)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("PYTHONPATH", None)
  return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


_TF1_LOADER = """
import sys
import numpy as np
import tensorflow as tf
tf1 = tf.compat.v1
# Arguments: SAVED_MODEL INPUTS_NPZ SIGNATURE OUTPUTS_NPZ, repeated: one process runs them all.
for saved_model, inputs, signature, outputs in zip(*[iter(sys.argv[1:])] * 4):
  inputs = dict(np.load(inputs))
  with tf1.Session(graph=tf.Graph()) as sess:
    meta = tf1.saved_model.loader.load(sess, ["serve"], saved_model)
    sig = meta.signature_def[signature]
    feed = {sig.inputs[k].name: v for k, v in inputs.items()}
    names = sorted(sig.outputs)
    values = sess.run([sig.outputs[k].name for k in names], feed)
  np.savez(outputs, **dict(zip(names, values)))
assert not [m for m in sys.modules if m.split('.')[0] in ('tfgen', 'export')]
"""


def test_saved_model_runs_in_tf1_session_loader_and_saved_model_cli(
    pixelcnn_export, vae_export, tmp_path):
  # The C++ SavedModelBundle path (TensorFlow Serving) restores variables by name in
  # a TF1 session; saved_model_cli runs the same loader. One TF1 process runs the
  # `sample` and `complete` signatures of both models (each start imports TensorFlow).
  jobs, expected = [], {}
  labels = np.array([2, 0, 1, 2], np.int32)  # The conditional PixelCNN's.
  for which, (model, out, _) in (("pixelcnn", pixelcnn_export), ("vae", vae_export)):
    noise = _noise(model, 9)
    inputs = {"noise": noise}
    if which == "pixelcnn":
      inputs["labels"] = labels
      expected[which, "sample"] = model.sample(BATCH, noise=noise,
                                               labels=inputs["labels"]).numpy()
    else:
      inputs["z"] = np.random.default_rng(3).standard_normal((BATCH, 3)).astype(np.float32)
      expected[which, "sample"] = model.sample(BATCH, z=inputs["z"], noise=noise).numpy()
    completion = _completion_inputs(model, BATCH, seed=2, labels=inputs.get("labels"))
    expected[which, "complete"] = _keras_completion(model, completion)
    for signature, feed in (("sample", inputs), ("complete", completion)):
      np.savez(tmp_path / f"{which}_{signature}_in.npz", **feed)
      jobs += [os.path.join(out, "saved_model"), str(tmp_path / f"{which}_{signature}_in.npz"),
               signature, str(tmp_path / f"{which}_{signature}_out.npz")]
  script = tmp_path / "tf1.py"
  script.write_text(_TF1_LOADER)
  proc = _without_tfgen([sys.executable, str(script)] + jobs, cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stderr[-3000:]
  for (which, signature), levels in expected.items():
    np.testing.assert_array_equal(
        np.load(tmp_path / f"{which}_{signature}_out.npz")["levels"], levels, (which, signature))
  # saved_model_cli: the log_prob signature on the sampled images.
  for which, (model, out, _) in (("pixelcnn", pixelcnn_export), ("vae", vae_export)):
    images = expected[which, "sample"]
    np.save(tmp_path / "images.npy", images)
    feeds = [f"images={tmp_path / 'images.npy'}"]
    if which == "pixelcnn":
      np.save(tmp_path / "labels.npy", labels)
      feeds.append(f"labels={tmp_path / 'labels.npy'}")
      reference = model.log_prob(images, labels).numpy()
    else:
      reference = model.log_prob(
          images, num_importance_samples=model.EXPORT_IMPORTANCE_SAMPLES, seed=0).numpy()
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = _without_tfgen([cli, "run", "--dir", os.path.join(out, "saved_model"),
                           "--tag_set", "serve", "--signature_def", "log_prob",
                           "--inputs", ";".join(feeds), "--outdir", str(tmp_path / which),
                           "--overwrite"], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    nats = np.load(tmp_path / which / "log_prob_nats.npy")
    np.testing.assert_allclose(nats, reference, rtol=1e-4, err_msg=which)


def test_a_model_that_has_sampled_and_scored_still_exports(tmp_path):
  # Its traced functions are cached on the model; none may reach the SavedModel.
  model = checks.randomize(models.build("pixelcnn", (4, 4, 1), 2, **PIXELCNN))
  images = model.sample(2, seed=0)
  model.sample(2, seed=0, fast=False)
  model.log_prob(images)
  export_lib.export(model, str(tmp_path), formats=["saved_model"])
  saved = tf.saved_model.load(str(tmp_path / "saved_model")).signatures
  np.testing.assert_allclose(saved["log_prob"](images=images)["log_prob_nats"],
                             model.log_prob(images).numpy(), rtol=1e-4)


def _tree(path):
  """{relative path: bytes} of every file below `path`."""
  out = {}
  for root, _, files in os.walk(path):
    for name in files:
      full = os.path.join(root, name)
      with open(full, "rb") as f:
        out[os.path.relpath(full, path)] = f.read()
  return out


def test_a_failed_export_leaves_the_previous_export_as_it_was(tmp_path, monkeypatch):
  out = tmp_path / "out"
  model = checks.randomize(models.build("pixelcnn", (4, 4, 1), 2, **PIXELCNN))
  export_lib.export(model, str(out), quantize=["none"], batch_size=2)
  before = _tree(out)
  # A model whose TFLite conversion fails after its SavedModel was written.
  monkeypatch.setattr(models.DiagonalBiLSTM, "supports_fast_sampling", False)
  bad = checks.randomize(models.build("diagonal_bilstm", (3, 3, 1), 2, hidden_dim=6,
                                      num_layers=2, input_kernel_size=3, output_dim=12))
  with pytest.raises(export_lib.ExportError, match="--formats=saved_model"):
    export_lib.export(bad, str(out), quantize=["none"], batch_size=2)
  assert _tree(out) == before
  assert sorted(os.listdir(tmp_path)) == ["out"]  # No staging directory left behind.
  # A successful export replaces the whole directory: no stale file of the old one.
  export_lib.export(model, str(out), formats=["saved_model"])
  assert not (out / "sampler_float32.tflite").exists()
  assert json.load(open(out / "metadata.json"))["saved_model"]
  assert sorted(os.listdir(tmp_path)) == ["out"]


def test_export_never_replaces_a_directory_of_other_files(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  (out / "notes.txt").write_text("mine")
  model = checks.randomize(models.build("pixelcnn", (4, 4, 1), 2, **PIXELCNN))
  with pytest.raises(export_lib.ExportError, match="not a tfgen export"):
    export_lib.export(model, str(out), formats=["saved_model"])
  assert (out / "notes.txt").read_text() == "mine"


class _ReadOnly:
  """Makes a directory unwritable for this process: chmod, or for root (whom chmod does
  not stop, as in CI) the immutable attribute."""

  def __init__(self, path):
    self.path = str(path)

  def __enter__(self):
    if os.getuid() == 0:
      subprocess.run(["chattr", "+i", self.path], check=True)
    else:
      os.chmod(self.path, 0o555)
    return self

  def __exit__(self, *_):
    if os.getuid() == 0:
      subprocess.run(["chattr", "-i", self.path], check=True)
    else:
      os.chmod(self.path, 0o755)


def test_export_to_a_read_only_directory_is_one_paragraph(tmp_path):
  model = checks.randomize(models.build("pixelcnn", (4, 4, 1), 2, **PIXELCNN))
  parent = tmp_path / "locked"
  parent.mkdir()
  export_lib.export(model, str(parent / "old"), formats=["saved_model"])
  before = _tree(parent)
  with _ReadOnly(parent):
    for out in ("new", "old"):  # A new --out, and replacing an export there.
      with pytest.raises(export_lib.ExportError, match="is not writable"):
        export_lib.export(model, str(parent / out), formats=["saved_model"])
  assert _tree(parent) == before


@pytest.mark.parametrize("signature,inputs,message", [
    ("sample", dict(z=tf.zeros([3, 3]), noise=tf.zeros([2, 4, 4, 1])),
     "z and noise must have the same batch size"),
    ("decode", dict(z=tf.zeros([3, 3]), noise=tf.zeros([2, 4, 4, 1])),
     "z and noise must have the same batch size"),
    ("sample", dict(z=tf.fill([2, 3], np.nan), noise=tf.zeros([2, 4, 4, 1])),
     "z must hold finite values"),
    ("sample", dict(z=tf.zeros([0, 3]), noise=tf.zeros([0, 4, 4, 1])),
     "must hold at least one image"),
    ("log_prob", dict(images=tf.zeros([0, 4, 4, 1], tf.int32)), "must hold at least one image"),
])
def test_vae_signatures_name_the_bad_input(vae_export, signature, inputs, message):
  _, out, _ = vae_export
  signatures = tf.saved_model.load(os.path.join(out, "saved_model")).signatures
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
    signatures[signature](**inputs)


def test_a_sampler_tflite_cannot_hold_is_refused_with_the_way_out(tmp_path, monkeypatch):
  # The Diagonal BiLSTM's naive sampler reruns the network, whose tf.scan lowers to
  # TensorList ops that TFLite cannot turn into builtins inside the sampling loop (its
  # cached sampler, the default, has no scan). Forced onto the naive path, the export
  # says so and what to do, and the SavedModel (no such limit) still exports.
  monkeypatch.setattr(models.DiagonalBiLSTM, "supports_fast_sampling", False)
  model = checks.randomize(models.build("diagonal_bilstm", (3, 3, 1), 2, hidden_dim=6,
                                        num_layers=2, input_kernel_size=3, output_dim=12))
  with pytest.raises(export_lib.ExportError, match="--formats=saved_model"):
    export_lib.export(model, str(tmp_path / "both"), quantize=["none"], batch_size=2)
  export_lib.export(model, str(tmp_path / "sm"), formats=["saved_model"])
  images = model.sample(2, seed=0).numpy()
  saved = tf.saved_model.load(str(tmp_path / "sm" / "saved_model")).signatures
  np.testing.assert_allclose(saved["log_prob"](images=tf.constant(images))["log_prob_nats"],
                             model.log_prob(images).numpy(), rtol=1e-4)


@pytest.mark.parametrize("call,message", [
    (lambda s, m: s["sample"](noise=tf.fill([2, 4, 4, 3], 1.5), labels=tf.zeros([2], tf.int32)),
     "noise must lie in"),
    (lambda s, m: s["sample"](noise=tf.zeros([2, 4, 4, 3]), labels=tf.constant([0, 3])),
     "labels must be class indices below num_classes=3"),
    (lambda s, m: s["sample"](noise=tf.zeros([2, 4, 4, 3]), labels=tf.constant([0])),
     "labels must have one entry per image"),
    (lambda s, m: s["log_prob"](images=tf.fill([1, 4, 4, 3], 4), labels=tf.constant([0])),
     "images must hold levels below num_levels=4"),
    (lambda s, m: s["log_prob"](images=tf.fill([1, 4, 4, 3], -1), labels=tf.constant([0])),
     "images must hold levels >= 0"),
])
def test_bad_inputs_fail_with_a_message(pixelcnn_export, call, message):
  _, out, _ = pixelcnn_export
  signatures = tf.saved_model.load(os.path.join(out, "saved_model")).signatures
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
    call(signatures, None)


_MASK = np.array([1, 1, 0, 0], np.int32)[None, :, None, None] * np.ones((2, 4, 4, 3), np.int32)


@pytest.mark.parametrize("change,message", [
    (dict(mask=_MASK[:, :2]), "mask must have the same shape as images"),
    (dict(mask=_MASK * 2), "mask must hold 0 (missing) and 1 (observed)"),
    (dict(mask=np.ones_like(_MASK)), "mask marks nothing missing in some image"),
    (dict(mask=np.zeros_like(_MASK)), "mask marks nothing observed in some image"),
    (dict(images=np.full((2, 4, 4, 3), 4, np.int32)), "images must hold levels below"),
    (dict(noise=np.zeros((3, 4, 4, 3), np.float32)), "noise and images must have the same "
     "batch size"),
    (dict(noise=np.full((2, 4, 4, 3), -0.5, np.float32)), "noise must lie in [0, 1)"),
    (dict(labels=np.array([0, 5], np.int32)), "labels must be class indices below"),
])
def test_bad_completion_inputs_fail_with_a_message(pixelcnn_export, change, message):
  _, out, _ = pixelcnn_export
  complete = tf.saved_model.load(os.path.join(out, "saved_model")).signatures["complete"]
  inputs = dict(images=np.zeros((2, 4, 4, 3), np.int32), mask=_MASK,
                noise=np.zeros((2, 4, 4, 3), np.float32), labels=np.array([0, 1], np.int32))
  inputs.update(change)
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
    complete(**{k: tf.constant(v) for k, v in inputs.items()})


def test_wrong_shape_or_dtype_is_refused(pixelcnn_export):
  _, out, _ = pixelcnn_export
  sample = tf.saved_model.load(os.path.join(out, "saved_model")).signatures["sample"]
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=re.escape("noise must have shape [batch, 4, 4, 3]")):
    sample(noise=tf.zeros([2, 5, 4, 3]), labels=tf.zeros([2], tf.int32))
  # TensorFlow's own check, which names the expected dtype.
  with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError),
                     match="expected to be a float tensor"):
    sample(noise=tf.zeros([2, 4, 4, 3], tf.int32), labels=tf.zeros([2], tf.int32))


def test_saved_model_runs_without_tfgen_as_its_readme_says(pixelcnn_export):
  _, out, meta = pixelcnn_export
  readme = open(os.path.join(out, "README.md")).read()
  code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
  check = code + (
      "\nimport sys\nassert images.shape == (4, 4, 4, 3) and images.dtype == np.uint8\n"
      "assert not [k for k in sys.modules if k.split('.')[0] in ('tfgen', 'export')]\n"
      "print('ok')\n")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("PYTHONPATH", None)
  proc = subprocess.run([sys.executable, "-c", check], cwd=out, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
  saved = json.load(open(os.path.join(out, "metadata.json")))
  assert saved["image_shape"] == [4, 4, 3] and saved["num_levels"] == 4
  assert saved["label_names"] == ["a", "b", "c"]
  assert set(saved["saved_model"]["signatures"]) == {"sample", "log_prob", "complete"}
  assert saved["tflite"]["none"]["inputs"]["noise"]["shape"] == [BATCH, 4, 4, 3]


def _cli(args, module="export"):
  return commands.run([sys.executable, "-m", module] + args, timeout=600)


def test_cli_exports_a_run_and_sample_main_draws_a_png(tmp_path):
  run = tmp_path / "run"
  run.mkdir()
  model = checks.randomize(models.build("pixelcnn", (4, 4, 1), 2, **PIXELCNN))
  model.save(str(run / "model.keras"))
  out = tmp_path / "out"
  proc = _cli([f"--model_dir={run}", f"--out={out}", "--formats=tflite", "--quantize=none",
               "--batch_size=3"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (out / "sampler_float32.tflite").exists() and not (out / "saved_model").exists()
  png = tmp_path / "grid.png"
  proc = _cli([f"--tflite={out / 'sampler_float32.tflite'}", f"--out={png}", "--seed=5"],
              module="export.sample_main")
  assert proc.returncode == 0, proc.stderr[-2000:]
  from PIL import Image
  assert Image.open(png).size == (4 * (2 * 5 + 1),) * 2  # 2x2 grid of 4x4, scale 4.
  # The same seed gives the images the Keras model draws from numpy's noise.
  from export import sample_main
  drawn = sample_main.sample(str(out / "sampler_float32.tflite"), seed=5)
  noise = np.random.default_rng(5).uniform(size=(3, 4, 4, 1)).astype(np.float32)
  np.testing.assert_array_equal(drawn // 255, model.sample(3, noise=noise).numpy())


@pytest.mark.parametrize("setup,options,message", [
    ("none", {}, "is not a directory"),
    ("empty", {}, "has no model.keras"),
    ("corrupt", {}, "cannot be loaded"),
    ("autoencoder", {}, "not a generative model"),
    ("pixelcnn", {"formats": ["onnx"]}, "Unknown or missing format"),
    ("pixelcnn", {"quantize": ["int4"]}, "Unknown or missing format"),
    ("pixelcnn", {"batch_size": 0}, "batch_size must be a positive"),
])
def test_unusable_runs_and_options_are_refused(tmp_path, setup, options, message):
  run = tmp_path / "run"
  if setup != "none":
    run.mkdir()
  if setup == "corrupt":
    (run / "model.keras").write_bytes(b"PK\x03\x04 damaged")
  elif setup in ("autoencoder", "pixelcnn"):
    hp = dict(hidden_dims="8") if setup == "autoencoder" else PIXELCNN
    models.build(setup, (4, 4, 1), 2, **hp).save(str(run / "model.keras"))
  with pytest.raises(export_lib.ExportError, match=re.escape(message)):
    export_lib.export_run(str(run), str(tmp_path / "out"), **options)


def test_cli_errors_are_one_paragraph(tmp_path):
  (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 damaged")
  proc = _cli([f"--model_dir={tmp_path}", f"--out={tmp_path / 'out'}"])
  assert proc.returncode == 1
  assert "cannot be loaded" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
  proc = _cli([f"--model_dir={tmp_path}"])
  assert proc.returncode == 1 and "pass --model_dir" in proc.stderr


if __name__ == "__main__":
  sys.exit(pytest.main([__file__, "-q"]))
