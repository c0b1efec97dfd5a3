"""Gated PixelCNN: causality, no blind spot, normalization, sampling, conditioning, training."""

import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import likelihood_checks as checks
import commands
from conftest import REPO_ROOT
from tfgen import layers
from tfgen import models
from tfgen import precision
from tfgen.models import gated_pixelcnn

TINY = dict(hidden_dim=6, num_layers=2, kernel_size=3, skip_dim=6, output_dim=6)


def _build(shape, levels, classes=None, seed=0, cls=gated_pixelcnn.GatedPixelCNN, **hparams):
  return checks.randomize(cls(shape, levels, classes, **dict(TINY, **hparams)), seed=seed)


def _set_first_mask(model, mask_type):
  """Replaces the current-pixel tap of the first horizontal layer's mask."""
  conv = model.horizontal_convs[0]
  mask = conv.mask.copy()
  mask[-1, -1] = layers.pixel_mask(mask.shape[2], conv.filters, mask_type, conv.num_colors)
  conv.mask = mask


class _NoShift(gated_pixelcnn.GatedPixelCNN):
  """Broken: the horizontal stack reads the vertical stack on its own row."""

  def _link_maps(self, pre):
    return [link(features) for link, features in zip(self.links, pre)]


def _halves_gate(features, num_colors):
  """Broken for colour: tanh/sigmoid of the first/second half mixes colour groups."""
  del num_colors
  f, g = tf.split(features, 2, axis=-1)
  return tf.tanh(f) * tf.sigmoid(g)


# ---- causality ------------------------------------------------------------------------


def test_causality_check_fails_without_the_shift_down():
  model = _build((4, 4, 1), 3, cls=_NoShift)
  leaks = checks.causality_leaks(model, checks.random_images(model))
  # The vertical stack at row i has read the whole of row i, right of the pixel too.
  assert any(s > t and s // 4 == t // 4 for t, s in leaks), leaks


@pytest.mark.parametrize("shape", [(4, 4, 1), (3, 3, 3)])
def test_causality_check_fails_on_mask_b_first(shape):
  model = _build(shape, 3)
  _set_first_mask(model, "B")  # A subpixel sees itself.
  assert any(t == s for t, s in checks.causality_leaks(model, checks.random_images(model)))


def test_causality_check_fails_on_a_colour_mixing_gate(monkeypatch):
  model = _build((3, 3, 3), 3)
  assert checks.causality_leaks(model, checks.random_images(model)) == []
  monkeypatch.setattr(gated_pixelcnn, "gate", _halves_gate)
  leaks = checks.causality_leaks(model, checks.random_images(model))
  assert any(s >= t and s // 3 == t // 3 for t, s in leaks), leaks  # Within a pixel.


def test_causality_check_fails_on_colour_blind_masks():
  model = _build((3, 3, 3), 3)
  for conv in model.horizontal_convs + model.residuals + model.skips + model.output_convs:
    if conv.mask_type == "B":
      mask = conv.mask.copy()
      mask[-1, -1] = layers.pixel_mask(mask.shape[2], conv.filters, "B", 1)
      conv.mask = mask
  assert any(s > t for t, s in checks.causality_leaks(model, checks.random_images(model)))


# ---- the blind spot -------------------------------------------------------------------


def test_no_blind_spot_unlike_pixelcnn():
  """Every earlier pixel reaches the last row's pixels; PixelCNN misses its upper right.

  On 5x5 images, 4 gated layers of kernel 3 see 5 rows up and 4 columns either side
  and 4 to the left: every earlier pixel of every pixel. A PixelCNN of five 3x3 mask-B
  layers has a nominal receptive field as large, but a pixel (i, j) never sees
  (i - r, j + c) for c > r: the blind spot opens to the upper right.
  """
  shape = (5, 5, 1)
  gated = _build(shape, 4, num_layers=4)
  plain = checks.randomize(models.build("pixelcnn", shape, 4, hidden_dim=12, num_blocks=4,
                                        output_dim=24, input_kernel_size=3, kernel_size=3))
  # Summed over a few inputs: PixelCNN's ReLUs can be inactive at one input by chance.
  maps = {name: sum(checks.input_gradients(model, checks.random_images(model, seed))
                    for seed in range(3)) for name, model in (("gated", gated),
                                                              ("pixelcnn", plain))}
  t = np.arange(25)
  earlier = t[None, :] < t[:, None]  # [T, T]: s before t
  rows, cols = t // 5, t % 5
  up = rows[:, None] - rows[None, :]  # r: rows above t
  right = cols[None, :] - cols[:, None]  # c: columns right of t
  blind = earlier & (right > up)
  assert blind.sum() == 35
  assert (maps["gated"][earlier] > 0).all()
  assert (maps["pixelcnn"][blind] == 0).all()
  assert (maps["pixelcnn"][earlier & ~blind] > 0).all()  # It sees everything else.
  # The same check that Gated passes fails for PixelCNN.
  assert not (maps["pixelcnn"][earlier] > 0).all()


# ---- normalization and sampling -------------------------------------------------------


def test_normalization_check_fails_on_leaky_model():
  deviations = []
  for seed in range(3):  # The worst of three draws: one can land near 1 by chance.
    model = _build((2, 2, 1), 3, seed=seed)
    _set_first_mask(model, "B")
    deviations.append(abs(checks.total_probability(model) - 1.0))
  assert max(deviations) > 1e-2, deviations


def test_sampler_check_fails_on_a_sampler_that_ignores_the_model(monkeypatch):
  model = _build((2, 2, 1), 2, seed=2)
  uniform = lambda params, channel, u, pixel_levels=None: tf.cast(u * 2, tf.int32)
  monkeypatch.setattr(model.head, "quantile", uniform)
  p_value = checks.sampler_p_value(model, 4000, seed=3, fast=False)
  assert p_value < checks.ALPHA, p_value


def test_sample_shapes_range_and_seed():
  model = models.build("gated_pixelcnn", (4, 3, 3), 5, **TINY)
  a = model.sample(3, seed=7).numpy()
  assert a.shape == (3, 4, 3, 3) and a.dtype == np.int32
  assert a.min() >= 0 and a.max() < 5
  np.testing.assert_array_equal(a, model.sample(3, seed=7).numpy())
  assert not np.array_equal(a, model.sample(3, seed=8).numpy())


# ---- class conditioning ---------------------------------------------------------------


def _class_sample_means(model):
  """Mean level of samples of class 0 and of class 1 after fitting one image per class.

  Class 0 is the all-black 3x3 image, class 1 the all-white one: a model that uses the
  label puts its mass on the right image for each class.
  """
  images = np.repeat(np.stack([np.zeros((3, 3, 1)), np.ones((3, 3, 1))]), 8 * 60, 0)
  labels = np.repeat([0, 1], 8 * 60).astype(np.int32)
  model.compile(keras.optimizers.Adam(2e-2))
  # 60 steps in one epoch: Keras's per-epoch overhead would dominate 60 epochs.
  model.fit({"image": images.astype(np.uint8), "label": labels}, batch_size=16, epochs=1,
            verbose=0)
  # The naive sampler: tracing it is cheaper on 3x3 images; the cached one is checked
  # against it in test_fast_sampling.py, conditional models included.
  return [float(model.sample(32, seed=0, labels=np.full(32, k), fast=False).numpy().mean())
          for k in (0, 1)]


def test_conditional_samples_follow_the_label():
  model = models.build("gated_pixelcnn", (3, 3, 1), 2, num_classes=2, **TINY)
  black, white = _class_sample_means(model)
  assert black < 0.1 and white > 0.9, (black, white)
  with pytest.raises(ValueError, match="class-conditional"):
    model.sample(2)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
    model.sample(2, labels=[0, 2])


def test_label_check_fails_on_a_model_that_ignores_the_label(monkeypatch):
  monkeypatch.setattr(gated_pixelcnn.GatedPixelCNN, "_condition",
                      lambda self, biases, n, features, labels: features)
  model = models.build("gated_pixelcnn", (3, 3, 1), 2, num_classes=2, **TINY)
  black, white = _class_sample_means(model)
  assert not (black < 0.1 and white > 0.9), (black, white)


# ---- training, serialization, errors --------------------------------------------------


def test_overfits_a_few_images():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 2, (4, 6, 6, 1)).astype(np.uint8)
  model = models.build("gated_pixelcnn", (6, 6, 1), 2, hidden_dim=16, num_layers=3,
                       kernel_size=3, skip_dim=32, output_dim=32)
  model.compile(keras.optimizers.Adam(1e-2))
  before = model.evaluate(images, batch_size=4, verbose=0, return_dict=True)["bits_per_dim"]
  model.fit(np.tile(images, (200, 1, 1, 1)), batch_size=4, epochs=1, verbose=0)  # 200 steps
  after = model.evaluate(images, batch_size=4, verbose=0, return_dict=True)["bits_per_dim"]
  assert before > 0.8 and after < 0.1 * before, (before, after)


def test_build_errors_say_what_to_do():
  assert "gated_pixelcnn" in models.available()
  with pytest.raises(ValueError, match="multiple of the 3 colour channels.*hidden_dim=33"):
    models.build("gated_pixelcnn", (8, 8, 3), 2, hidden_dim=32)
  with pytest.raises(ValueError, match="kernel_size must be odd and at least 3"):
    models.build("gated_pixelcnn", (8, 8, 1), 2, kernel_size=4)
  with pytest.raises(ValueError, match="kernel_size must be odd and at least 3"):
    models.build("gated_pixelcnn", (8, 8, 1), 2, kernel_size=1)
  with pytest.raises(ValueError, match="num_layers must be positive"):
    models.build("gated_pixelcnn", (8, 8, 1), 2, num_layers=0)
  with pytest.raises(ValueError, match="at least the 3 colour channels"):
    models.build("gated_pixelcnn", (8, 8, 3), 2, hidden_dim=6, skip_dim=2)
  with pytest.raises(ValueError, match="Valid hyper-parameters .*num_layers"):
    models.build("gated_pixelcnn", (8, 8, 1), 2, num_blocks=3)


def test_train_main_conditional_writes_samples_by_class(tmp_path):
  model_dir = tmp_path / "run"
  hparams = ",".join(f"{k}={v}" for k, v in TINY.items())
  proc = commands.run(
      [sys.executable, os.path.join(REPO_ROOT, "train_main.py"), "--model=gated_pixelcnn",
       "--dataset=digits", "--conditional", f"--hparams={hparams}", "--batch_size=32",
       "--train_steps=3", "--num_samples=10", "--verbose=0", f"--model_dir={model_dir}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  metrics = json.loads((model_dir / "metrics.json").read_text())
  assert metrics["model"] == "gated_pixelcnn" and metrics["test_nll_nats"] > 0
  # The default precision, end to end: what `auto` resolves to on this machine.
  assert metrics["precision"] == precision.auto_policy()
  from PIL import Image
  picture = Image.open(model_dir / "samples_by_class.png")
  # 10 classes x 1 sample of 8x8 with a 1-pixel border, enlarged 16 times.
  assert picture.size == ((1 * 9 + 1) * 16, (10 * 9 + 1) * 16)
  assert (model_dir / "samples.png").exists()


if __name__ == "__main__":
  sys.exit(pytest.main([__file__, "-q"]))
