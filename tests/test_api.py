"""The declared contract: capabilities, the configuration declared once, `import tfgen`."""

import ast
import json
import os
import subprocess
import sys

import pytest

from tfgen import config as config_lib
from tfgen import models
from tfgen import train_lib
from tfgen.models import api
from tfgen.models import base

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What each registered family declares. A new family is added here on purpose.
CAPABILITIES = {
    "pixelcnn": ["LikelihoodModel", "Sampler", "Completer"],
    "gated_pixelcnn": ["LikelihoodModel", "Sampler", "Completer"],
    "pixelcnn_pp": ["LikelihoodModel", "Sampler", "Completer"],
    "row_lstm": ["LikelihoodModel", "Sampler", "Completer"],
    "diagonal_bilstm": ["LikelihoodModel", "Sampler", "Completer"],
    "autoencoder": ["LatentModel"],
    "conv_autoencoder": ["LatentModel"],
    "vae": ["LikelihoodModel", "Sampler", "Completer", "LatentModel", "VariationalModel"],
    "conv_vae": ["LikelihoodModel", "Sampler", "Completer", "LatentModel", "VariationalModel"],
}


def test_every_registered_family_declares_its_capabilities():
  assert sorted(CAPABILITIES) == models.available()
  for name, expected in CAPABILITIES.items():
    assert api.capabilities(models.model_class(name)) == expected, name


@pytest.mark.parametrize("path", ["tfgen/train_lib.py", "tfgen/scoring.py", "tfgen/latents.py",
                                  "export/export_lib.py", "export/complete_main.py",
                                  "train_main.py", "score_main.py"])
def test_tools_ask_capabilities_never_probe_attributes(path):
  # hasattr(model, ...) / getattr(model, ..., default) decide nothing in the tools: what
  # a model can do is its declared api classes.
  tree = ast.parse(open(os.path.join(REPO_ROOT, path)).read())
  probes = [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("hasattr", "getattr")]
  assert not probes, f"{path} probes attributes at lines {probes}"


def test_a_family_missing_a_declared_method_cannot_be_instantiated():

  class Toy(base.ImageModel, api.Sampler):  # Declares Sampler; lacks sample_from_noise.
    MODEL_NAME = "toy"

    def call(self, inputs):
      return inputs

    def sample(self, num, seed=None, labels=None, noise=None, **options):
      return None

    def export_noise_specs(self, batch):
      return {}

  with pytest.raises(TypeError, match="abstract method.*sample_from_noise"):
    Toy((2, 2, 1), 2)

  class Complete(Toy):
    def sample_from_noise(self, noise, condition, builtin_only=False):
      return None

  assert api.capabilities(Complete((2, 2, 1), 2)) == ["Sampler"]


def test_a_class_that_declares_a_capability_gets_the_tools():
  from export import export_lib
  export_lib.check_exportable(models.model_class("pixelcnn"))
  with pytest.raises(export_lib.ExportError, match="not a generative model"):
    export_lib.check_exportable(models.model_class("autoencoder"))


def test_import_tfgen_is_cheap_and_gives_the_submodules():
  code = ("import sys, tfgen; assert 'tensorflow' not in sys.modules; "
          "m = tfgen.models.build('pixelcnn', (3, 3, 1), 2, hidden_dim=4, num_blocks=1, "
          "output_dim=4, input_kernel_size=3, kernel_size=3); "
          "print(type(m).__name__, tfgen.data.__name__, 'config' in dir(tfgen), "
          "tfgen.zoo.entry('pixelcnn-digits').family)")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=300,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT))
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ["PixelCNN", "tfgen.data", "True", "pixelcnn"]
  with pytest.raises(AttributeError, match="no attribute 'nothing'"):
    import tfgen
    tfgen.nothing  # pylint: disable=pointless-statement


# ---- the configuration -------------------------------------------------------------------


def test_config_round_trips_and_the_flat_form_of_older_runs_loads():
  config = config_lib.TrainConfig.from_flat(model="vae", train_steps=3, hparams={"beta": 0.5},
                                            split_fractions=[0.7, 0.2, 0.1], export_dir="x")
  assert config.model.name == "vae" and config.optim.train_steps == 3
  assert config.data.split_fractions == (0.7, 0.2, 0.1) and config.outputs.export_dir == "x"
  saved = json.loads(json.dumps(config.to_json()))
  assert set(saved) == {"data", "model", "optim", "runtime", "outputs"}
  assert config_lib.TrainConfig.from_json(saved) == config
  # A config.json of a run from before the configuration was nested: one flat object,
  # without the fields added since (they take their defaults). Its recorded float32 stays
  # float32, though the default is now "auto".
  old = {"model": "vae", "hparams": {"beta": 0.5}, "dataset": "digits", "train_steps": 3,
         "split_fractions": [0.7, 0.2, 0.1], "mixed_precision": "none", "worker_hosts": []}
  assert config_lib.TrainConfig.from_json(old, export_dir="x") == config.replace(
      mixed_precision="none")
  assert config.runtime.mixed_precision == "auto"
  assert config.replace(train_steps=9).optim.train_steps == 9 and config.optim.train_steps == 3
  with pytest.raises(ValueError, match=r"Unknown configuration field\(s\) \['trian_steps'\]"):
    config_lib.TrainConfig.from_flat(trian_steps=3)
  with pytest.raises(ValueError, match="must be a JSON object"):
    config_lib.TrainConfig.from_json([1, 2])


def test_resuming_compares_only_what_changes_the_run():
  config = config_lib.TrainConfig.from_flat(model="pixelcnn", train_steps=5)
  old = {"model": "pixelcnn", "train_steps": 2, "learning_rate": 0.1, "export_dir": "y"}
  assert config_lib.changed_fields(old, config) == [("learning_rate", 0.1, 0.002)]
  assert config_lib.changed_fields(config.replace(epochs=2.0).to_json(), config) == []
  assert config_lib.changed_fields(config.replace(batch_size=8).to_json(), config) == [
      ("batch_size", 8, 64)]
  # A run saved before adam_beta2 existed trained with Adam's 0.999: that is its value.
  assert config_lib.changed_fields(old, config.replace(learning_rate=0.1)) == []
  assert config_lib.changed_fields(old, config.replace(learning_rate=0.1, adam_beta2=0.98)) == [
      ("adam_beta2", 0.999, 0.98)]
  assert config_lib.TrainConfig.from_json(old).optim.adam_beta2 == 0.999


def test_every_field_is_one_flag_with_its_help_and_choices():
  from absl import flags
  flag_values = flags.FlagValues()
  config_lib.define_flags(flag_values, module_name="train_main")
  assert set(flag_values) == set(config_lib.FIELDS)
  assert "[optim] Adam's (peak) learning rate." == flag_values["learning_rate"].help
  assert flag_values["strategy"].parser.enum_values == list(config_lib.STRATEGIES)
  flag_values(["prog", "--model=vae", "--hparams=latent_dim=2,hidden_dims=128",
               "--split_fractions=0.6,0.2,0.2", "--worker_hosts=a:1,b:2", "--export_dir=e",
               "--noconditional", "--eval_batch_size=7"])
  config = config_lib.from_flags(flag_values)
  assert config.model.hparams == {"latent_dim": 2, "hidden_dims": 128}
  assert config.data.split_fractions == (0.6, 0.2, 0.2)
  assert config.runtime.worker_hosts == ("a:1", "b:2")
  assert config.outputs.export_dir == "e" and config.outputs.eval_batch_size == 7
  assert config_lib.from_flags(_parsed(["prog"])) == config_lib.TrainConfig()
  with pytest.raises(ValueError, match="--split_fractions must be three numbers"):
    config_lib.from_flags(_parsed(["prog", "--split_fractions=a,b,c"]))


def _parsed(argv):
  from absl import flags
  flag_values = flags.FlagValues()
  config_lib.define_flags(flag_values, module_name="train_main")
  flag_values(argv)
  return flag_values


def test_config_module_imports_neither_tensorflow_nor_the_driver():
  code = ("import sys; from tfgen import config, runs; "
          "assert 'tensorflow' not in sys.modules and 'tfgen.train_lib' not in sys.modules")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, PYTHONPATH=REPO_ROOT))
  assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.parametrize("changes, message", [
    ({"lr_schedule": "cosin"}, r"lr_schedule must be one of \('cosine'"),
    ({"eval_batch_size": 0}, "eval_batch_size must be positive"),
    ({"export_batch_size": 0}, "export_batch_size must be positive"),
    ({"split_fractions": (0.5, 0.5)}, "split_fractions must be three numbers"),
    ({"binarize": "otsu"}, "binarize must be one of"),
])
def test_bad_configurations_are_refused_with_the_field(changes, message):
  with pytest.raises(ValueError, match=message):
    config_lib.TrainConfig.from_flat(**changes).validate()


def test_post_training_actions_follow_capabilities():
  config = config_lib.TrainConfig()
  build = lambda name: models.model_class(name)
  assert train_lib.post_training_actions(build("pixelcnn"), config) == [
      "save_model", "sample_grids", "completions", "write_metrics"]
  assert train_lib.post_training_actions(build("autoencoder"), config) == [
      "save_model", "latent_figures", "write_metrics"]
  assert train_lib.post_training_actions(build("vae"), config.replace(export_dir="e")) == [
      "save_model", "latent_figures", "sample_grids", "completions", "write_metrics",
      "export"]
  assert "sample_grids" not in train_lib.post_training_actions(
      build("vae"), config.replace(num_samples=0))
