"""The trained models that ship with tfgen: every entry loads, scores what its card says,
samples and exports; `zoo:NAME` works where run directories do; `--init_from` fine-tunes."""

import configparser
import fnmatch
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

import commands
from conftest import REPO_ROOT, SHARED_DATA
from export import export_lib
from tfgen import config as config_lib
from tfgen import data as data_lib
from tfgen import files
from tfgen import models
from tfgen import runs
from tfgen import train_lib
from tfgen import zoo
from tfgen.models import api

ENTRIES = [e.name for e in zoo.available()]
# The primary metric of a card and how far a loaded entry may be from it (nats, or
# mean squared error on [0, 1] pixels for an autoencoder): the recorded figure was
# measured on another machine, in another process, with other thread counts.
NLL_TOLERANCE = 0.5
MSE_TOLERANCE = 1e-4


def _data(entry):
  """The entry's data, preprocessed as in its training; skips where it is not here."""
  config = runs.train_config(entry.config)
  dataset = config.data.dataset
  if dataset.startswith("npz:../shared/data/"):
    path = os.path.join(SHARED_DATA, os.path.basename(dataset))
    if not os.path.isfile(path):
      pytest.skip(f"{path} is not on this machine")
    config = config.replace(dataset=f"npz:{path}")
  return data_lib.load_config(config.data)


def _primary(metrics):
  if "nll_nats" in metrics:
    return "nll_nats", NLL_TOLERANCE
  return "reconstruction_mse", MSE_TOLERANCE


def test_the_zoo_has_an_entry_of_every_family_on_digits():
  families = {e.family for e in zoo.available() if e.dataset == "digits"}
  assert families == set(models.available())


@pytest.mark.parametrize("name", ENTRIES)
def test_an_entry_scores_what_its_card_records_samples_and_exports(name, tmp_path):
  entry = zoo.entry(name)
  model = zoo.load(name)
  assert model.count_params() == entry.parameters
  data = _data(entry)
  key, tolerance = _primary(entry.card["subset"])
  if api.implements(model, api.VariationalModel):
    assert entry.card["subset"]["num_importance_samples"] == zoo.SUBSET_IMPORTANCE_SAMPLES, (
        f"{name}'s card was measured with another k: python3 bench/zoo_train.py "
        f"--name={name} --remeasure_subset")
  measured = zoo.subset_metrics(model, data)
  assert measured["images"] == entry.card["subset"]["images"]
  assert abs(measured[key] - entry.card["subset"][key]) <= tolerance, (measured, entry.card)
  if api.implements(model, api.Sampler):
    # Exported, then sampled through the export: the sampler graph is traced once.
    # (Exported samplers match Keras's draw for draw: tests/test_export.py.)
    export_lib.export(model, str(tmp_path), formats=("saved_model",), quantize=("none",),
                      batch_size=2)
    sampler = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["sample"]
    rng = np.random.default_rng(0)
    inputs = {name: (rng.standard_normal(spec.shape) if name == "z" else
                     rng.uniform(size=spec.shape)).astype(np.float32)
              for name, spec in model.export_noise_specs(2).items()}
    if model.num_classes:
      inputs["labels"] = np.arange(2, dtype=np.int32) % model.num_classes
    levels = sampler(**{k: tf.constant(v) for k, v in inputs.items()})["levels"].numpy()
    assert levels.shape == (2,) + model.image_shape
    assert levels.min() >= 0 and levels.max() < model.num_levels
    assert len(np.unique(levels)) > 1  # Not a blank image.
  else:
    with pytest.raises(export_lib.ExportError, match="not a generative model"):
      export_lib.check_exportable(model)


def test_the_score_check_fails_for_untrained_weights():
  """The tolerance above is tight enough to tell trained weights from random ones."""
  entry = zoo.entry("pixelcnn-digits")
  config = runs.train_config(entry.config, mixed_precision="none")
  data = _data(entry)
  untrained = train_lib.build_model(config, data.info)
  untrained.compile()
  measured = zoo.subset_metrics(untrained, data)
  assert abs(measured["nll_nats"] - entry.card["subset"]["nll_nats"]) > 100 * NLL_TOLERANCE


def test_every_card_is_complete_and_every_file_ships():
  parser = configparser.ConfigParser()
  parser.read(os.path.join(REPO_ROOT, "setup.cfg"))
  patterns = parser["options.package_data"]["tfgen.zoo"].split()
  for entry in zoo.available():
    card = entry.card
    for key in ("family", "dataset", "parameters", "test", "subset", "training", "command",
                "machine", "train_main_flags"):
      assert key in card, (entry.name, key)
    assert entry.name == f"{entry.family}-{card['dataset']}" or "conditional" in entry.name
    assert card["training"]["train_steps"] > 0
    if entry.family not in ("autoencoder", "conv_autoencoder"):
      assert entry.test_nll_nats > 0
    for file_name in os.listdir(entry.path):
      relative = os.path.relpath(os.path.join(entry.path, file_name), os.path.dirname(zoo.__file__))
      assert any(fnmatch.fnmatch(relative, p) for p in patterns), (relative, patterns)


def test_an_unknown_name_lists_the_entries():
  with pytest.raises(runs.RunError, match="No zoo entry 'pixelcnn-nope'.*pixelcnn-digits"):
    runs.load_model("zoo:pixelcnn-nope")
  assert runs.resolve("runs/x") == "runs/x"
  assert runs.resolve("zoo:pixelcnn-digits") == zoo.entry("pixelcnn-digits").path


def test_score_main_takes_a_zoo_name(tmp_path):
  result = commands.run([sys.executable, os.path.join(REPO_ROOT, "score_main.py"),
                         "--model_dir=zoo:vae-digits", "--outliers=flip"], cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr
  # The scores go to the working directory, not into the installed package.
  assert os.path.isfile(tmp_path / "scores-vae-digits.csv"), result.stdout
  assert not os.path.exists(os.path.join(zoo.entry("vae-digits").path, "scores.csv"))
  assert "auroc" in result.stdout.lower()


def _fine_tune(tmp_path, **changes):
  config = config_lib.TrainConfig.from_flat(**dict(
      dict(init_from="zoo:pixelcnn-digits", train_steps=1, learning_rate=1e-12,
           lr_schedule="constant", num_samples=0, verbose=0, mixed_precision="none",
           eval_batch_size=64), **changes))
  return train_lib.train_and_evaluate(config, str(tmp_path / "run"))


def test_init_from_starts_from_the_entry_weights(tmp_path):
  entry = zoo.entry("pixelcnn-digits")
  metrics = _fine_tune(tmp_path)
  # One step at a rate of 1e-12 leaves the entry's weights: its test NLL, to rounding.
  assert metrics["test_nll_nats"] == pytest.approx(entry.card["test"]["nll_nats"], abs=0.01)
  assert files.read_json(str(tmp_path / "run" / "config.json"))["model"]["name"] == "pixelcnn"
  # Random weights are more than 50 nats worse (test_the_score_check_fails_for_untrained_
  # weights): a run that ignored init_from could not match the card.


def test_init_from_refuses_weights_that_do_not_fit(tmp_path):
  with pytest.raises(ValueError, match=r"17 levels\) do not fit.*2 levels.*--binarize"):
    _fine_tune(tmp_path, binarize="threshold")
  with pytest.raises(ValueError, match="holds a pixelcnn model.*asks for gated_pixelcnn"):
    _fine_tune(tmp_path / "other", model="gated_pixelcnn")
  with pytest.raises(ValueError, match="No zoo entry"):
    _fine_tune(tmp_path / "missing", init_from="zoo:nope")


def test_the_readme_table_is_the_cards():
  with open(os.path.join(REPO_ROOT, "README.md")) as f:
    readme = f.read()
  missing = [row for row in zoo.table().splitlines()[2:] if row not in readme]
  assert not missing, "README.md lacks (run bench/zoo_train.py --gallery):\n" + "\n".join(missing)


def test_completion_takes_a_zoo_name():
  from export import complete_main  # pylint: disable=g-import-not-at-top
  runner = complete_main.load("zoo:pixelcnn-digits")
  assert (runner.image_shape, runner.num_levels) == ((8, 8, 1), 17)
  images = np.zeros((1, 8, 8, 1), np.int32)
  mask = np.ones_like(images)
  mask[:, 4:] = 0  # 1 where observed: complete the bottom half.
  noise = {name: np.random.default_rng(0).uniform(size=(1,) + shape).astype(np.float32)
           for name, shape in runner.noise_shapes.items()}
  completed = runner(images, mask, noise, None)
  np.testing.assert_array_equal(completed[:, :4], images[:, :4])  # The given part stays.
  assert completed.max() < 17
  with pytest.raises(complete_main.CompletionError, match="No zoo entry"):
    complete_main.load("zoo:nope")
