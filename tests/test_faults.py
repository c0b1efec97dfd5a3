"""Faults and bad input: nothing already written is lost, and every error is one paragraph.

Two runs into one directory, kill -9 during training and during the final save, a
damaged checkpoint or config.json, interrupted writes; bad batches given to `fit`,
bad noise and counts given to the samplers; the command-line messages.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import commands
from conftest import REPO_ROOT
from tfgen import config as config_lib
from tfgen import cli
from tfgen import files
from tfgen import models
from tfgen import train_lib

TINY = {"hidden_dim": 4, "num_blocks": 1, "output_dim": 8, "input_kernel_size": 3,
        "kernel_size": 3}
TINY_FLAG = ",".join(f"{k}={v}" for k, v in TINY.items())


def _config(**overrides):
  # float32: runs are compared across processes to float32 tolerances, which the
  # 16-bit rounding of the auto policy (bf16 on AVX512_BF16 CPUs) exceeds.
  base = dict(model="pixelcnn", hparams=dict(TINY), dataset="digits", batch_size=32,
              train_steps=12, checkpoint_every=4, num_samples=0, verbose=0, seed=3,
              lr_schedule="constant", mixed_precision="none")
  base.update(overrides)
  return config_lib.TrainConfig.from_flat(**base)


def _main(args, fresh=False):
  env = commands.environment()
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # What a user sees, with tfgen's own defaults.
  return commands.popen([sys.executable, os.path.join(REPO_ROOT, "train_main.py")] + args,
                        env=env, fresh=fresh)


def _weights(workdir):
  return keras.models.load_model(os.path.join(workdir, "model.keras")).get_weights()


# ---- the run lock -------------------------------------------------------------------

def test_a_second_run_into_a_busy_directory_is_refused_at_once(tmp_path):
  with files.RunLock(str(tmp_path)):
    started = time.time()
    with pytest.raises(files.RunBusyError, match=f"pid {os.getpid()}.*another --model_dir"):
      train_lib.train_and_evaluate(_config(), str(tmp_path))
    assert time.time() - started < 30
  assert not (tmp_path / "config.json").exists()  # The refused run wrote nothing.


def _lock_holder(directory):
  """A live process holding `directory`'s run lock, as a training run does."""
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
       "from tfgen import files; lock = files.RunLock(sys.argv[2]).__enter__();"
       "print('held', flush=True); time.sleep(600)", REPO_ROOT, str(directory)],
      stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  return holder


def test_a_dead_runs_lock_is_taken_over_with_a_message(tmp_path):
  # A holder killed with -9: the kernel drops its flock, its record stays in the file.
  holder = _lock_holder(tmp_path)
  with pytest.raises(files.RunBusyError):
    files.RunLock(str(tmp_path)).__enter__()
  holder.kill()
  holder.wait()
  messages = []
  with files.RunLock(str(tmp_path), log=messages.append):
    assert f"pid {holder.pid}" in messages[0] and "no longer running" in messages[0]
  with files.RunLock(str(tmp_path), log=messages.append):  # Released cleanly: no message.
    assert len(messages) == 1


def test_train_main_into_a_busy_directory_is_one_paragraph(tmp_path):
  # The directory of a run in progress (a process holding its lock, as train_main
  # does while it trains), with its config.json: a second run with another
  # configuration is refused before it reads or writes anything there.
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  (model_dir / "config.json").write_text('{"learning_rate": 0.002}')
  holder = _lock_holder(model_dir)
  try:
    proc = _main(["--dataset=digits", f"--hparams={TINY_FLAG}", "--learning_rate=0.5",
                  "--train_steps=2", f"--model_dir={model_dir}"])
    _, err = proc.communicate(timeout=300)
  finally:
    holder.kill()
    holder.wait()
  assert proc.returncode == 1
  assert "is in use by a running training" in err and f"pid {holder.pid}" in err, err
  assert "Traceback" not in err and err.strip().startswith("Error:"), err
  assert (model_dir / "config.json").read_text() == '{"learning_rate": 0.002}'
  assert sorted(os.listdir(model_dir)) == [".lock", "config.json"]


# ---- checkpoints, config.json and interrupted writes --------------------------------

def _truncate(path, keep=0.5):
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.truncate(int(size * keep))


def test_a_damaged_newest_checkpoint_resumes_from_the_intact_one_before(tmp_path, caplog):
  run, straight = str(tmp_path / "run"), str(tmp_path / "straight")
  train_lib.train_and_evaluate(_config(train_steps=8), run)
  ckpt = os.path.join(run, "checkpoints")
  assert tf.train.latest_checkpoint(ckpt).endswith("ckpt-8")
  _truncate(os.path.join(ckpt, "ckpt-8.data-00000-of-00001"))
  metrics = train_lib.train_and_evaluate(_config(train_steps=12), run)
  assert metrics["resumed_from_step"] == 4
  assert "ckpt-8" in caplog.text and "damaged" in caplog.text
  train_lib.train_and_evaluate(_config(train_steps=12), straight)
  for a, b in zip(_weights(straight), _weights(run)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_no_intact_checkpoint_is_one_paragraph_naming_the_files(tmp_path):
  run = str(tmp_path)
  train_lib.train_and_evaluate(_config(train_steps=8), run)
  ckpt = os.path.join(run, "checkpoints")
  for step in (4, 8):
    _truncate(os.path.join(ckpt, f"ckpt-{step}.data-00000-of-00001"), keep=0.1)
  with open(os.path.join(ckpt, "checkpoint"), "w") as f:
    f.write("garbage {{{")  # The state file too: found from the ckpt-N files.
  with pytest.raises(ValueError, match="Every checkpoint .* is damaged") as error:
    train_lib.train_and_evaluate(_config(train_steps=12), run)
  assert "ckpt-4" in str(error.value) and "ckpt-8" in str(error.value)


def test_a_damaged_config_json_names_the_file(tmp_path):
  (tmp_path / "config.json").write_text('{"model": "pixelcnn", ')
  with pytest.raises(ValueError, match="config.json is not valid JSON.*damaged"):
    train_lib.train_and_evaluate(_config(), str(tmp_path))
  from tfgen import runs
  models.build("pixelcnn", (4, 4, 1), 2, **TINY).save(str(tmp_path / "model.keras"))
  with pytest.raises(runs.RunError, match="config.json is not valid JSON.*damaged"):
    runs.load_model(str(tmp_path))


def test_an_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
  path = str(tmp_path / "metrics.json")
  files.atomic_json(path, {"a": 1})
  real_replace = os.replace

  def crash(*_):
    raise OSError("disk full")

  monkeypatch.setattr(os, "replace", crash)
  with pytest.raises(OSError):
    files.atomic_json(path, {"a": 2})
  with pytest.raises(OSError):
    with files.atomic_path(str(tmp_path / "model.keras")) as partial:
      open(partial, "wb").write(b"half")
  monkeypatch.setattr(os, "replace", real_replace)
  assert json.load(open(path)) == {"a": 1}
  assert sorted(os.listdir(tmp_path)) == ["metrics.json"]  # No partial file left.


_KILL_ARGS = ["--dataset=digits", f"--hparams={TINY_FLAG}", "--batch_size=32",
              "--train_steps=30", "--checkpoint_every=5", "--num_samples=4", "--verbose=0",
              "--seed=5",  # The default (cosine) schedule: resuming must restore its step.
              "--mixed_precision=none"]  # As _config: compared to float32 tolerances.


@pytest.fixture(scope="module")
def uninterrupted_run_weights(tmp_path_factory):
  """The final weights of `_KILL_ARGS`'s run, trained without interruption: the config
  is parsed from the same flags, as train_main.py parses them."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FlagValues()
  config_lib.define_flags(flag_values, module_name="train_main")
  flag_values(["train_main"] + _KILL_ARGS)
  straight = str(tmp_path_factory.mktemp("straight"))
  train_lib.train_and_evaluate(config_lib.from_flags(flag_values), straight)
  return _weights(straight)


@pytest.mark.parametrize("wait_for", ["checkpoints/checkpoint", "model.keras"])
def test_kill_9_in_training_or_in_the_final_save_loses_nothing(tmp_path, wait_for,
                                                               uninterrupted_run_weights):
  # train_main.py killed after the first checkpoint, or once the final outputs are being
  # written; the rerun resumes and ends with every output and the weights of an
  # uninterrupted run.
  model_dir = str(tmp_path / "run")
  args = _KILL_ARGS + [f"--model_dir={model_dir}"]
  proc = _main(args)
  target = os.path.join(model_dir, wait_for)
  deadline = time.time() + 180
  while time.time() < deadline and proc.poll() is None and not os.path.exists(target):
    time.sleep(0.01)
  assert proc.poll() is None, proc.communicate()
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  if wait_for.startswith("checkpoints"):
    assert not os.path.exists(os.path.join(model_dir, "metrics.json"))
  if os.path.exists(os.path.join(model_dir, "model.keras")):
    keras.models.load_model(os.path.join(model_dir, "model.keras"))  # Never a torn file.
  out, err = _main(args).communicate(timeout=300)
  assert "Traceback" not in err, err[-3000:]
  metrics = json.load(open(os.path.join(model_dir, "metrics.json")))
  assert metrics["train_steps"] == 30
  if wait_for.startswith("checkpoints"):
    assert "Resuming from" in err, err[-2000:]
    assert 0 < metrics["resumed_from_step"] < 30
  assert "samples.png" in out and os.path.getsize(os.path.join(model_dir, "samples.png")) > 0
  assert not [n for n in os.listdir(model_dir) if ".partial-" in n]
  for a, b in zip(uninterrupted_run_weights, _weights(model_dir)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ---- what fit and evaluate are given ------------------------------------------------

def _dataset(images, labels=None):
  element = {"image": images} if labels is None else {"image": images, "label": labels}
  return tf.data.Dataset.from_tensor_slices(element).batch(4)


@pytest.fixture(scope="module")
def conditional_model():
  model = models.build("pixelcnn", (4, 4, 1), 2, num_classes=3, **TINY)
  model.compile(keras.optimizers.Adam())
  return model


_GOOD = np.random.default_rng(0).integers(0, 2, (8, 4, 4, 1)).astype(np.uint8)
_LABELS = np.zeros(8, np.int32)


@pytest.mark.parametrize("images,labels,error,message", [
    (_GOOD.astype(np.float32) / 2, _LABELS, ValueError, "float32 images"),
    (_GOOD * 3, _LABELS, tf.errors.InvalidArgumentError, "levels must lie in [0, 2)"),
    (_GOOD.astype(np.int32) - 1, _LABELS, tf.errors.InvalidArgumentError, "must be >= 0"),
    (_GOOD, _LABELS + 3, tf.errors.InvalidArgumentError, "class indices in [0, 3)"),
    (_GOOD, _LABELS - 1, tf.errors.InvalidArgumentError, "class indices in [0, 3)"),
    (np.zeros((8, 5, 4, 1), np.uint8), _LABELS, (ValueError, tf.errors.InvalidArgumentError),
     "takes images of shape"),
    (_GOOD, None, ValueError, "pass the labels as fit(images, labels)"),
])
@pytest.mark.parametrize("method", ["fit", "evaluate"])
def test_fit_and_evaluate_check_their_batches(conditional_model, method, images, labels,
                                              error, message):
  before = [w.copy() for w in conditional_model.get_weights()]
  with pytest.raises(error) as caught:
    getattr(conditional_model, method)(_dataset(images, labels), verbose=0)
  assert message in cli.first_line(caught.value)
  for a, b in zip(before, conditional_model.get_weights()):  # No step on bad data.
    np.testing.assert_array_equal(a, b)


def test_numpy_fit_and_train_on_batch_are_checked_too():
  # Keras hands these steps (x, y, sample_weight) tuples rather than the inputs.
  model = models.build("pixelcnn", (4, 4, 1), 2, **TINY)
  model.compile(keras.optimizers.Adam())
  model.train_on_batch(_GOOD)
  model.fit(_GOOD, batch_size=4, verbose=0)
  model.evaluate(_GOOD, batch_size=4, verbose=0)
  for call in (lambda: model.train_on_batch(_GOOD * 2),
               lambda: model.fit(_GOOD * 2, batch_size=4, verbose=0)):
    with pytest.raises(tf.errors.InvalidArgumentError, match="levels must lie in"):
      call()
  with pytest.raises(ValueError, match="float32 images"):  # Keras casts numpy floats.
    model.fit(_GOOD / 1.0, batch_size=4, verbose=0)


def test_fit_trains_on_good_batches(conditional_model):
  conditional_model.fit(_dataset(_GOOD, _LABELS), verbose=0)  # The checks pass it.
  conditional_model.evaluate(_dataset(_GOOD, _LABELS), verbose=0)


def test_the_level_check_holds_for_every_uint8_level():
  # 8-bit data with K = 256 in uint8, up to level 255: compared in uint8, the bound
  # 256 wrapped to 0 and every batch of the 8-bit MNIST benchmark was refused.
  model = models.build("pixelcnn", (4, 4, 1), 256, **TINY)
  model.compile(keras.optimizers.Adam())
  images = np.random.default_rng(0).integers(0, 256, (8, 4, 4, 1)).astype(np.uint8)
  images[0, 0, 0, 0] = 255
  model.fit(_dataset(images), verbose=0)
  labels = np.full(8, 255, np.uint8)  # The same for labels: 256 classes, label 255.
  conditional = models.build("pixelcnn", (4, 4, 1), 2, num_classes=256, **TINY)
  conditional.compile(keras.optimizers.Adam())
  conditional.fit(_dataset(_GOOD, labels), verbose=0)


# ---- samplers and log_prob given bad values -----------------------------------------

@pytest.mark.parametrize("name,hparams", [("pixelcnn", TINY),
                                          ("vae", dict(latent_dim=2, hidden_dims="8"))])
def test_samplers_refuse_bad_noise_and_counts(name, hparams):
  model = models.build(name, (4, 4, 1), 2, **hparams)
  for noise, message in ((np.full((2, 4, 4, 1), 5.0, np.float32), "values in [5, 5]"),
                         (np.full((2, 4, 4, 1), np.nan, np.float32), "NaN or inf"),
                         (-np.ones((2, 4, 4, 1), np.float32), "uniform values in [0, 1)")):
    with pytest.raises(ValueError, match=re.escape(message)):
      model.sample(2, noise=noise)
  for num in (2.5, 0, -1, "two", True):
    with pytest.raises(ValueError, match="positive whole number"):
      model.sample(num)
  assert model.sample(2.0, seed=0).shape[0] == 2
  assert model.log_prob(np.zeros((0, 4, 4, 1), np.int32)).shape == (0,)


def test_vae_refuses_non_finite_codes():
  model = models.build("vae", (4, 4, 1), 2, latent_dim=2, hidden_dims="8")
  with pytest.raises(ValueError, match="NaN or inf"):
    model.sample(2, z=np.full((2, 2), np.nan, np.float32))


def test_gaussian_decoder_has_a_mean_and_a_builtin_sampler_of_its_distribution():
  from tfgen import distributions
  head = distributions.make_pixel_head("gaussian", 7, 1)
  params = tf.random.stateless_normal([3, 2, 2, 2], [1, 2]) * 2
  dist = head.image_distribution(params).distribution
  levels = np.arange(7).reshape(-1, 1, 1, 1, 1).astype(np.float32)
  probs = np.exp(dist.log_prob(np.broadcast_to(levels, (7, 3, 2, 2, 1))).numpy())
  np.testing.assert_allclose(dist.mean().numpy(), (probs * levels).sum(0), atol=1e-4)
  # docs/vae.md's call: the decoder distribution's mean.
  model = models.build("vae", (4, 4, 1), 7, latent_dim=2, hidden_dims="8")
  assert model.decode(np.zeros((2, 2), np.float32)).mean().shape == (2, 4, 4, 1)
  # normal_cdf (builtin ops) against the exact CDF, centre and tails.
  t = np.linspace(-9, 9, 2001).astype(np.float32)
  from scipy import special
  exact = special.ndtr(t.astype(np.float64))
  approx = distributions.normal_cdf(t).numpy()
  assert np.abs(approx - exact).max() < 3e-7
  assert (np.abs(approx - exact) / exact).max() < 1e-4


# ---- the command line ---------------------------------------------------------------

def test_help_exits_0_and_names_every_model_and_hyper_parameter():
  proc = _main(["--help"])
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err
  for name in models.available():
    assert f"  {name}: " in out
  assert "kernel_size=7" in out and "--model_dir" in out


@pytest.mark.parametrize("args,message", [
    (["--model=autoencoder", "--export_dir=EXPORT"], "an autoencoder is not a generative"),
    (["--num_levels=5"], "num_levels is for npz: files"),
    (["--hparams=kernel_size=4"], "must be a positive odd number"),
    (["--dataset=npz:TEXT"], "is not a NumPy .npz archive"),
])
def test_bad_flags_fail_before_training_in_one_paragraph(tmp_path, args, message):
  (tmp_path / "text.npz").write_text("1,2,3\n")
  args = [a.replace("EXPORT", str(tmp_path / "e")).replace("TEXT", str(tmp_path / "text.npz"))
          for a in args]
  proc = _main(args + [f"--model_dir={tmp_path / 'run'}"])
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 1
  assert message in err and "Traceback" not in err, err
  assert err.strip().startswith("Error:"), err  # Nothing printed before the paragraph.
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_quiet_run_prints_only_what_the_user_asked_for(tmp_path):
  # A one-width --hparams, an autoencoder: no TensorFlow start-up lines, no Keras
  # shuffle warning, and the closing line names only the files written. A real
  # process: a forked one has imported TensorFlow before it starts.
  proc = _main(["--model=autoencoder", "--hparams=hidden_dims=16,latent_dim=2",
                "--train_steps=2", "--batch_size=32", "--verbose=2",
                f"--model_dir={tmp_path}"], fresh=True)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  for noise in ("cuInit", "absl::InitializeLog", "oneDNN", "shuffle", "I0000", "E0000"):
    assert noise not in err + out, (noise, err)
  assert "samples.png" not in out and "reconstructions.png" in out
  assert "Evaluating on the test split" in out and "2/2" in out and "22/22" not in out


def test_an_error_inside_a_layer_call_keeps_its_message():
  class Failing(keras.layers.Layer):
    def call(self, x):
      raise tf.errors.InvalidArgumentError(None, None, "Labels must lie in [0, 3).")

  with pytest.raises(tf.errors.InvalidArgumentError) as caught:
    Failing()(tf.zeros([1]))
  assert str(caught.value).startswith("Exception encountered when calling")  # Keras's.
  assert cli.first_line(caught.value) == "Labels must lie in [0, 3)."


def test_tf_error_lines_become_one_sentence():
  @tf.function  # As in a training step.
  def step(x):
    tf.debugging.Assert(x > 0, ["Labels must be class indices in [0, 3); it isn't."])
    return x

  with pytest.raises(tf.errors.InvalidArgumentError) as caught:
    step(tf.constant(-1))
  assert cli.first_line(caught.value) == "Labels must be class indices in [0, 3); it isn't."
