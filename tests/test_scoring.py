"""Likelihood scores for outlier detection: AUROC, marginal scores, the CLI."""

import csv
import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics as sk_metrics

import likelihood_checks as checks
import commands
from conftest import REPO_ROOT
from tfgen import config as config_lib
from tfgen import data as data_lib
from tfgen import models
from tfgen import scoring
from tfgen import train_lib
from tfgen.models import api

TINY_PIXELCNN = {"hidden_dim": 8, "num_blocks": 1, "output_dim": 16, "input_kernel_size": 3,
                 "kernel_size": 3}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed):
  rng = np.random.default_rng(seed)
  inliers = rng.integers(0, 6, 50).astype(float)  # Many ties.
  outliers = rng.integers(2, 9, 40).astype(float)
  labels = np.r_[np.zeros(50), np.ones(40)]
  expected = sk_metrics.roc_auc_score(labels, np.r_[inliers, outliers])
  assert scoring.auroc(inliers, outliers) == pytest.approx(expected, abs=1e-12)


def test_auroc_extremes_and_errors():
  assert scoring.auroc([0, 1, 2], [3, 4]) == 1.0
  assert scoring.auroc([3, 4], [0, 1, 2]) == 0.0
  assert scoring.auroc([1, 1], [1, 1, 1]) == 0.5
  with pytest.raises(ValueError, match="at least one"):
    scoring.auroc([], [1.0])
  with pytest.raises(ValueError, match="finite"):
    scoring.auroc([np.nan], [1.0])


def test_outlier_images():
  images = np.arange(2 * 3 * 3).reshape(2, 3, 3, 1) % 4
  np.testing.assert_array_equal(scoring.outlier_images(images, "flip", 4)[:, :, 0],
                                images[:, :, -1])
  np.testing.assert_array_equal(scoring.outlier_images(images, "invert", 4), 3 - images)
  rotated = scoring.outlier_images(images, "rotate", 4)
  np.testing.assert_array_equal(rotated[0, :, :, 0], np.rot90(images[0, :, :, 0]))
  noise = scoring.outlier_images(images, "noise", 4, seed=1)
  assert noise.shape == images.shape and noise.min() >= 0 and noise.max() <= 3
  with pytest.raises(ValueError, match="square"):
    scoring.outlier_images(np.zeros((1, 2, 3, 1)), "rotate", 2)
  with pytest.raises(ValueError, match="Unknown outlier kind"):
    scoring.outlier_images(images, "blur", 4)


def test_conditional_score_is_the_marginal_over_classes():
  model = checks.randomize(models.build("pixelcnn", (2, 2, 1), 2, num_classes=3,
                                        **TINY_PIXELCNN))
  images = checks.all_images((2, 2, 1), 2)
  marginal = scoring.log_prob(model, images)
  # Normalized: sum over every image of p(x) = mean over classes of sum p(x | y) = 1.
  assert np.exp(marginal).sum() == pytest.approx(1.0, abs=1e-4)
  per_class = [model.log_prob(images, np.full(len(images), y)).numpy() for y in range(3)]
  np.testing.assert_allclose(marginal, np.log(np.mean(np.exp(per_class), axis=0)), rtol=1e-5)
  labelled = scoring.log_prob(model, images, np.full(len(images), 2, np.int32))
  np.testing.assert_allclose(labelled, per_class[2], rtol=1e-6)


def test_scores_of_a_vae_are_its_importance_weighted_estimate():
  model = models.build("vae", (3, 3, 1), 2, latent_dim=2, hidden_dims="8")
  images = checks.all_images((3, 3, 1), 2)[:7]
  np.testing.assert_allclose(
      scoring.log_prob(model, images, num_importance_samples=16, seed=3),
      model.log_prob(images, num_importance_samples=16, seed=3).numpy(), rtol=1e-6)
  with pytest.raises(ValueError, match="no likelihood"):
    scoring.log_prob(models.build("autoencoder", (3, 3, 1), 2, hidden_dims="8"), images)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  """A tiny PixelCNN trained on the real 8x8 digits, as train_main.py leaves it."""
  workdir = str(tmp_path_factory.mktemp("run"))
  config = config_lib.TrainConfig.from_flat(model="pixelcnn", hparams=dict(TINY_PIXELCNN),
                                 dataset="digits", batch_size=32, train_steps=150,
                                 learning_rate=1e-2, num_samples=0, verbose=0, seed=0,
                                 mixed_precision="none")  # See test_distributed.
  train_lib.train_and_evaluate(config, workdir)
  return workdir


def test_trained_model_ranks_noise_above_digits(trained_run):
  from tfgen import runs
  model, config = runs.load_model(trained_run)
  data = runs.load_data(config)
  scores, summary = scoring.score_sets(model, data, "test", ("noise", "flip"))
  assert summary["test"]["images"] == data.info.split_sizes["test"]
  assert summary["noise"]["auroc"] > 0.99, summary
  assert summary["noise"]["mean_bits_per_dim"] > summary["test"]["mean_bits_per_dim"]
  # Mirrored digits are harder to tell apart (0.585 measured for this run: the model
  # prefers upright strokes, above chance and far from noise's 1.0).
  assert 0.53 < summary["flip"]["auroc"] < 0.9, summary
  # The broken variant: a "likelihood" that ignores the image separates nothing, so the
  # AUROC check above is a check of the model, not of the data.
  class Blind(api.LikelihoodModel):
    name, num_classes, num_levels = "blind", None, model.num_levels
    num_subpixels, image_shape = model.num_subpixels, model.image_shape

    def log_prob(self, images, labels=None, **options):
      return tf.zeros([tf.shape(images)[0]])

    def log_prob_graph(self, images, condition):
      raise NotImplementedError  # Scoring needs only log_prob.

    def test_metrics(self, dataset, **options):
      raise NotImplementedError

  _, blind = scoring.score_sets(Blind(), data, "test", ("noise",))
  assert blind["noise"]["auroc"] == 0.5
  np.testing.assert_allclose(scores["test"]["bits_per_dim"],
                             -scores["test"]["log_prob_nats"] / (64 * np.log(2)))


def test_score_main_writes_csv_and_auroc(trained_run, tmp_path):
  out = tmp_path / "scores.csv"
  folder = tmp_path / "noise_pictures"
  folder.mkdir()
  from PIL import Image
  rng = np.random.default_rng(0)
  for k in range(5):  # Real files of the run's shape: noise pictures, 0..255.
    Image.fromarray(rng.integers(0, 256, (8, 8)).astype(np.uint8)).save(folder / f"{k}.png")
  proc = _score_main([f"--model_dir={trained_run}", f"--out={out}", "--outliers=noise",
                      f"--outlier_dataset=folder:{folder}", "--max_images=40"])
  assert proc.returncode == 0, proc.stderr
  summary = json.loads(proc.stdout[proc.stdout.index("{"):])
  assert summary["sets"]["noise"]["auroc"] > 0.99
  rows = list(csv.DictReader(open(out)))
  sets = {r["set"] for r in rows}
  assert {"test", "noise"} <= sets and len(sets) == 3
  assert sum(r["set"] == "test" for r in rows) == 40
  assert sum(r["set"] == f"folder:{folder}" for r in rows) == 5  # Every split of it.
  assert summary["outlier_preprocessing"] == {"reduce_levels": 17}
  assert all(float(r["bits_per_dim"]) > 0 for r in rows)


def test_score_main_errors_are_one_paragraph(tmp_path):
  proc = _score_main([f"--model_dir={tmp_path / 'nothing'}"])
  assert proc.returncode == 1 and "is not a directory" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_unusable_runs_and_options_are_refused(trained_run, tmp_path):
  from tfgen import runs
  (tmp_path / "model.keras").write_bytes(b"not a zip")
  with pytest.raises(runs.RunError, match="cannot be loaded"):
    runs.load_model(str(tmp_path))
  model, config = runs.load_model(trained_run)
  data = runs.load_data(config)
  with pytest.raises(ValueError, match="Unknown outlier kind"):
    scoring.score_sets(model, data, "test", ("blur",))
  other = data_lib.load("digits", binarize="threshold")
  with pytest.raises(ValueError, match="preprocess it the same way"):
    scoring.score_sets(model, data, "test", (), other)
  # The CLI's way out: load the other set like the run's data, adapted to the model.
  unbinarized = runs.train_config(config).replace(binarize="none").to_json()
  adapted, changes = runs.load_data_like(model, unbinarized,
                                         "npz:" + _npz_of_8bit_digits(tmp_path))
  assert changes == {"reduce_levels": 17} and adapted.info.num_levels == 17


def _npz_of_8bit_digits(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (20, 8, 8), dtype=np.uint8)
  path = str(tmp_path / "other.npz")
  np.savez(path, images=images)
  return path


def _score_main(args):
  return commands.run([sys.executable, os.path.join(REPO_ROOT, "score_main.py")] + args)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__, "-q"]))
