"""The training driver and train_main.py: artifacts, resume, Polyak averaging, non-finite loss."""

import json
import os
import sys

import keras
import numpy as np
import pytest

import commands
from conftest import REPO_ROOT
from tfgen import config as config_lib
from tfgen import data as data_lib
from tfgen import train_lib

TINY = {"hidden_dim": 4, "num_blocks": 1, "output_dim": 8, "input_kernel_size": 3,
        "kernel_size": 3}
TINY_FLAG = ",".join(f"{k}={v}" for k, v in TINY.items())


def _config(**overrides):
  # float32: runs are compared across processes to float32 tolerances, which the
  # 16-bit rounding of the auto policy (bf16 on AVX512_BF16 CPUs) exceeds.
  base = dict(model="pixelcnn", hparams=dict(TINY), dataset="digits", batch_size=32,
              train_steps=12, checkpoint_every=4, num_samples=0, verbose=0, seed=3,
              mixed_precision="none")
  base.update(overrides)
  return config_lib.TrainConfig.from_flat(**base)


def _weights(workdir):
  return keras.models.load_model(os.path.join(workdir, "model.keras")).get_weights()


def _run_main(args):
  return commands.popen([sys.executable, os.path.join(REPO_ROOT, "train_main.py")] + args)


def test_train_and_evaluate_writes_artifacts(tmp_path):
  metrics = train_lib.train_and_evaluate(_config(num_samples=4, adam_beta2=0.95),
                                         str(tmp_path))
  for name in ("config.json", "metrics.json", "samples.png", "model.keras", "checkpoints",
               "tensorboard"):
    assert (tmp_path / name).exists(), name
  trained = keras.models.load_model(str(tmp_path / "model.keras"))
  assert trained.optimizer.beta_2 == pytest.approx(0.95)  # The optimizer of the config.
  saved = json.loads((tmp_path / "metrics.json").read_text())
  assert saved == metrics
  assert metrics["train_steps"] == 12 and metrics["dataset"] == "digits"
  assert metrics["model"] == "pixelcnn" and metrics["train_seconds"] > 0
  assert metrics["test_nll_nats"] > 0
  assert metrics["test_bits_per_dim"] == pytest.approx(
      metrics["test_nll_nats"] / (64 * np.log(2)), rel=1e-5)
  events = [f for _, _, fs in os.walk(tmp_path / "tensorboard") for f in fs]
  assert any("tfevents" in f for f in events)


def _with_callback(monkeypatch, callback):
  """Every `model.fit` from here on also runs `callback`."""
  fit = keras.Model.fit
  monkeypatch.setattr(keras.Model, "fit", lambda self, *a, callbacks=(), **kw: fit(
      self, *a, callbacks=list(callbacks) + [callback], **kw))


class _EpochEnds(keras.callbacks.Callback):
  """(training step, validation loss) at the end of every epoch."""

  def __init__(self):
    super().__init__()
    self.ends = []

  def on_epoch_end(self, epoch, logs=None):
    self.ends.append((int(self.model.optimizer.iterations.numpy()), logs["val_loss"]))


def test_resume_ends_where_an_uninterrupted_run_would(tmp_path, monkeypatch):
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  # A constant rate: with cosine decay, extending train_steps changes the schedule.
  # Batch 256: 5 steps per epoch of the 1,437 training digits, so the stop at step 8 is
  # mid-epoch and 12 steps make three epochs.
  config = dict(lr_schedule="constant", batch_size=256)
  epochs = {}
  for workdir, steps in ((straight, 12), (resumed, 8), (resumed, 12)):
    epochs[workdir, steps] = _EpochEnds()
    with monkeypatch.context() as patch:
      _with_callback(patch, epochs[workdir, steps])
      metrics = train_lib.train_and_evaluate(_config(train_steps=steps, **config), workdir)
  assert metrics["train_steps"] == 12 and metrics["resumed_from_step"] == 8
  for a, b in zip(_weights(straight), _weights(resumed)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Validation falls at the steps it would without the stop, with the same figures:
  # the resumed run finishes the interrupted epoch first.
  assert [step for step, _ in epochs[straight, 12].ends] == [5, 10, 12]
  assert [step for step, _ in epochs[resumed, 8].ends] == [5, 8]
  after_resume = epochs[resumed, 12].ends
  assert [step for step, _ in after_resume] == [10, 12]
  np.testing.assert_allclose([loss for _, loss in after_resume],
                             [loss for _, loss in epochs[straight, 12].ends[1:]], rtol=1e-5)


# ---- Polyak (EMA) averaging, which PixelCNN++ brought: model-independent ------------

def _ema_run(tmp_path, monkeypatch, decay):
  """Trains with EMA; returns (weights handed to on_trained, manual EMA, last step's)."""
  trajectory = []

  class Record(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      trajectory.append([np.array(v) for v in self.model.trainable_variables])

  _with_callback(monkeypatch, Record())
  trained = []
  train_lib.train_and_evaluate(
      _config(train_steps=4, checkpoint_every=2, ema_decay=decay, lr_schedule="constant"),
      str(tmp_path),
      on_trained=lambda m: trained.extend([np.array(v) for v in m.trainable_variables]))
  assert len(trajectory) == 4
  average = trajectory[0]  # Keras starts the average at the first step's weights.
  for weights in trajectory[1:]:
    average = [decay * a + (1 - decay) * w for a, w in zip(average, weights)]
  return trained, average, trajectory[-1]


def test_ema_weights_are_the_moving_average_of_the_trajectory(tmp_path, monkeypatch):
  trained, average, last = _ema_run(tmp_path, monkeypatch, decay=0.7)
  for got, want in zip(trained, average):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert any(not np.allclose(a, b) for a, b in zip(average, last))  # Not vacuous.
  saved = keras.models.load_model(str(tmp_path / "model.keras"))
  for got, want in zip(saved.trainable_variables, average):
    np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-6)


def test_ema_check_fails_when_the_average_is_not_swapped_in(tmp_path, monkeypatch):
  # Without finalize_variable_values the model keeps the raw last-step weights.
  monkeypatch.setattr(keras.optimizers.Adam, "finalize_variable_values",
                      lambda self, var_list: None)
  trained, average, _ = _ema_run(tmp_path, monkeypatch, decay=0.7)
  assert any(not np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(trained, average))


def test_ema_resume_ends_where_an_uninterrupted_run_would(tmp_path):
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  # With the paper's exponential decay too: the rate is a function of the step alone.
  common = dict(train_steps=4, checkpoint_every=2, ema_decay=0.8,
                lr_schedule="exponential")
  schedules, weights = [], []
  train_lib.train_and_evaluate(_config(**common), straight, on_trained=lambda m: (
      schedules.append(m.optimizer._learning_rate), weights.append(m.get_weights())))
  # (The rate rounds to float32: 0.999995 ** 1e5 then comes out 7e-4 low.)
  assert float(schedules[0](100000)) == pytest.approx(2e-3 * 0.999995 ** 100000, rel=2e-3)
  train_lib.train_and_evaluate(_config(**dict(common, train_steps=2)), resumed)
  metrics = train_lib.train_and_evaluate(_config(**common), resumed, on_trained=lambda m: (
      weights.append(m.get_weights())))
  assert metrics["resumed_from_step"] == 2
  for x, y in zip(*weights):  # The averaged weights: on_trained sees them swapped in.
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_ema_decay_is_validated():
  with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
    _config(ema_decay=1.0).validate()
  with pytest.raises(ValueError, match=r"adam_beta2 must be in \(0, 1\)"):
    _config(adam_beta2=1.0).validate()


def test_resume_refuses_a_different_configuration(tmp_path):
  train_lib.train_and_evaluate(_config(train_steps=4), str(tmp_path))
  with pytest.raises(ValueError, match="different configuration.*learning_rate"):
    train_lib.train_and_evaluate(_config(train_steps=8, learning_rate=0.5), str(tmp_path))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  config = _config(learning_rate=1e9, train_steps=50, checkpoint_every=1)
  with pytest.raises(train_lib.NonFiniteLossError, match="NaN or infinite.*last good"):
    train_lib.train_and_evaluate(config, str(tmp_path))
  import tensorflow as tf
  latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
  assert latest is not None
  reader = tf.train.load_checkpoint(latest)
  for name in reader.get_variable_to_shape_map():
    value = reader.get_tensor(name)
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
      assert np.isfinite(value).all(), name


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_max_train_seconds_stops_early_with_a_checkpoint(tmp_path, clock):
  metrics = train_lib.train_and_evaluate(
      _config(train_steps=100000, max_train_seconds=2.0, budget_clock=clock, num_samples=0),
      str(tmp_path))
  assert 0 < metrics["train_steps"] < 100000
  budget = metrics["train_cpu_seconds" if clock == "cpu" else "train_seconds"]
  assert 2.0 <= budget < 30
  import tensorflow as tf
  latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
  assert latest.endswith(f"ckpt-{metrics['train_steps']}")


def test_split_fractions_reach_the_loader(tmp_path):
  config = _config(train_steps=2, num_samples=0, split_fractions=(0.5, 0.0, 0.5))
  metrics = train_lib.train_and_evaluate(config, str(tmp_path))
  assert "test_nll_nats" in metrics
  assert data_lib.load_config(config.data).info.split_sizes == {"train": 899, "test": 898}


def test_bad_configuration_messages(tmp_path):
  with pytest.raises(ValueError, match="Available models"):
    train_lib.train_and_evaluate(_config(model="nope"), str(tmp_path))
  unlabelled = tmp_path / "unlabelled.npz"
  np.savez(unlabelled, images=np.random.default_rng(0).integers(0, 2, (100, 4, 4), np.uint8))
  with pytest.raises(ValueError, match="needs class labels"):
    train_lib.train_and_evaluate(_config(dataset=f"npz:{unlabelled}", conditional=True),
                                 str(tmp_path / "b"))
  assert not (tmp_path / "b" / "config.json").exists()  # A fixed rerun is not refused.
  train_lib.train_and_evaluate(_config(dataset=f"npz:{unlabelled}", train_steps=2,
                                       batch_size=16, num_samples=0), str(tmp_path / "b"))
  with pytest.raises(ValueError, match="Valid hyper-parameters"):
    train_lib.train_and_evaluate(_config(hparams={"hiden_dim": 3}), str(tmp_path / "d"))
  with pytest.raises(ValueError, match="budget_clock must be one of"):
    train_lib.train_and_evaluate(_config(budget_clock="gpu"), str(tmp_path / "e"))
  with pytest.raises(ValueError, match="fewer than one batch"):
    train_lib.train_and_evaluate(_config(batch_size=5000), str(tmp_path / "c"))


# train_main.py killed with SIGKILL and rerun: tests/test_faults.py.


def test_train_main_reports_errors_in_one_paragraph(tmp_path):
  proc = _run_main(["--dataset=npz:/no/such/file.npz", f"--model_dir={tmp_path}"])
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 1
  assert "Error: npz:/no/such/file.npz: no such file" in err
  assert "Traceback" not in err
  proc = _run_main(["--hparams=hidden_dim", f"--model_dir={tmp_path}"])
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 1 and "key=value" in err and "Traceback" not in err


if __name__ == "__main__":
  sys.exit(pytest.main([__file__, "-q"]))
