"""The configuration of a training run, declared once.

Every option of `train_main.py` is a field here, with its default, its help text, its
choices and whether it may change when a run is resumed. Everything else is generated
from these declarations: the command-line flags (`define_flags`, one flag per field,
named as the field), the validation of choices, `config.json` (`to_json`/`from_json`)
and the check that a resumed run has the configuration it was started with.

The configuration is nested by concern:

  TrainConfig
    data      what to train on and how it is preprocessed      DataConfig
    model     which model, its hyper-parameters, conditioning  ModelConfig
    optim     batch, length of training, optimizer             OptimConfig
    runtime   seed, devices, precision, checkpoints, output    RuntimeConfig
    outputs   evaluation, sample grids, export                 OutputConfig

Flag and flat names are the field names (unique across groups); the model's name is
`model.name`, flag `--model`. This module imports neither TensorFlow nor the driver:
tools that only read a finished run (`tfgen.runs`, `export/`) use it as it is.

`config.json` files written before the configuration was nested (one flat object)
still load: `from_json` accepts both forms.
"""

import dataclasses
import json
import types
import typing

# Choice lists, declared here once; the modules that act on them import them.
BINARIZE = ("none", "threshold", "dynamic")
LR_SCHEDULES = ("cosine", "constant", "exponential")
BUDGET_CLOCKS = ("wall", "cpu")
STRATEGIES = ("mirrored", "one_device", "multi_worker")
MIXED_PRECISION = ("auto", "none", "mixed_float16", "mixed_bfloat16")
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def _option(default, help_text, choices=None, resumable=False, flag=None):
  """A config field: its default, help, choices, and whether a resumed run may change it.

  Args:
    default: the default value (a dict default is copied per instance).
    help_text: the flag's help, one or two sentences.
    choices: the allowed values of a string field, or None.
    resumable: whether the field may differ between a run and its resumption (it
      does not change what the checkpoints hold or mean).
    flag: the flag and flat name where it is not the field name.
  """
  metadata = {"help": help_text, "choices": choices, "resumable": resumable, "flag": flag}
  if isinstance(default, dict):
    return dataclasses.field(default_factory=lambda: dict(default), metadata=metadata)
  return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class DataConfig:
  """What to train on (`tfgen.data.load` arguments)."""
  dataset: str = _option(
      "digits", "digits (bundled, no download), npz:PATH, folder:PATH, or a TensorFlow "
      "Datasets name (mnist, binarized_mnist, fashion_mnist, cifar10, ...).")
  data_dir: str | None = _option(None, "TensorFlow Datasets data directory.", resumable=True)
  download: bool = _option(True, "Let TensorFlow Datasets download data.", resumable=True)
  image_size: int | None = _option(None, "Resize images to this side.")
  num_levels: int | None = _option(
      None, "Levels of the stored data (npz), where they cannot be inferred.")
  reduce_levels: int | None = _option(
      None, "Reduce the data to this many levels (e.g. 256 -> 8).")
  binarize: str = _option("none", "Binarize images at half range (threshold), or by "
                          "sampling each epoch (dynamic).", choices=BINARIZE)
  random_flip: bool = _option(False, "Random horizontal flips of training images.")
  split_fractions: tuple[float, ...] = _option(
      DEFAULT_SPLIT_FRACTIONS,
      "train,valid,test fractions for a dataset stored as one array (npz with 'images').")


@dataclasses.dataclass
class ModelConfig:
  """Which model (`tfgen.models.build` arguments)."""
  name: str = _option("pixelcnn", "Model name, one of tfgen.models.available() (listed at "
                      "the end of --help), e.g. pixelcnn.", flag="model")
  hparams: dict = _option(
      {}, "Model hyper-parameters as comma-separated key=value pairs, e.g. "
      "'hidden_dim=64,num_blocks=8'; widths as dash-separated lists, e.g. "
      "'hidden_dims=500-500' or 'hidden_dims=128'. Every model's are listed at the end of "
      "--help; unknown keys list the valid ones.")
  conditional: bool = _option(False, "Model p(x | y) with the dataset's class labels.")
  init_from: str | None = _option(
      None, "Start from the trained weights of a finished run: its directory, or zoo:NAME "
      "(tfgen.zoo.available()), to fine-tune on this run's data. With --model, --hparams "
      "and --conditional left at their defaults, the model is that run's; the data must "
      "have its levels and channels.",
      resumable=True)  # Only the first step uses it; a resumed run restores its checkpoint.


@dataclasses.dataclass
class OptimConfig:
  """How long and how to optimize."""
  batch_size: int = _option(64, "Global batch size, split across replicas.")
  epochs: float = _option(30.0, "Passes over the training split (when --train_steps is 0).",
                          resumable=True)
  train_steps: int = _option(0, "Optimizer steps; overrides --epochs when positive.",
                             resumable=True)
  learning_rate: float = _option(2e-3, "Adam's (peak) learning rate.")
  adam_beta2: float = _option(
      0.999, "Adam's second-moment decay (beta_2). Lower adapts faster to the gradients' "
      "scale: after one epoch of binarized MNIST in bfloat16, 0.99 and 0.98 gave 0.4-1.0 "
      "nats lower test NLL than 0.999 (bench/results/likelihood_epoch_beta2_2026-12-07.jsonl).")
  lr_schedule: str = _option(
      "cosine", "cosine: decay to zero over the run (measured ~0.5 nats better after one "
      "epoch of binarized MNIST; resuming with another length changes the remaining "
      "steps' schedule); constant; exponential: lr * 0.999995^step (PixelCNN++).",
      choices=LR_SCHEDULES)
  ema_decay: float = _option(
      0.0, "Polyak averaging of the weights for validation, evaluation, sampling and the "
      "saved model, avg = d avg + (1 - d) w after every step, e.g. 0.9995 (PixelCNN++); 0 "
      "turns it off. The average lives in the checkpoints.")
  max_train_seconds: float = _option(
      0.0, "Stop training (with a checkpoint) after this much training time (0: no "
      "limit). A run stopped this way is not bitwise reproducible.", resumable=True)
  budget_clock: str = _option(
      "wall", "What --max_train_seconds counts: wall seconds, or CPU seconds of this "
      "process (all threads; what a budget on a shared machine should count).",
      choices=BUDGET_CLOCKS, resumable=True)


@dataclasses.dataclass
class RuntimeConfig:
  """Where and how the run executes."""
  seed: int = _option(0, "Seed of the initialization, the data order and sampling.")
  strategy: str = _option(
      "mirrored", "mirrored: all local GPUs (the CPU when there are none); one_device: one "
      "device; multi_worker: several processes or machines (TF_CONFIG, or --worker_hosts "
      "and --task_index).", choices=STRATEGIES, resumable=True)
  worker_hosts: tuple[str, ...] = _option(
      (), "multi_worker: host:port of every worker, the same on every worker.",
      resumable=True)
  task_index: int | None = _option(
      None, "multi_worker: this worker's index in --worker_hosts (0: chief).", resumable=True)
  mixed_precision: str = _option(
      "auto", "Training precision. auto (the default): bfloat16 where the CPU "
      "(AVX512_BF16, AMX) or GPU (compute capability 8+) has it natively, float16 on GPUs "
      "with 7.x, else float32; in the same training time a bfloat16 PixelCNN ended 1.2-1.5 "
      "nats better than a float32 one (docs/performance.md). none: float32. The pixel "
      "distribution, evaluation and model.keras stay float32.",
      choices=MIXED_PRECISION,
      resumable=True)  # The checkpoints hold float32 variables under any policy.
  checkpoint_every: int = _option(200, "Steps between checkpoints (at most that much work "
                                  "is lost).", resumable=True)
  verbose: int = _option(1, "0 silent, 1 progress bars, 2 one line per epoch.",
                         resumable=True)


@dataclasses.dataclass
class OutputConfig:
  """What the run computes and writes after training."""
  eval_batch_size: int = _option(256, "Batch size of validation and evaluation.",
                                 resumable=True)
  eval_importance_samples: int = _option(
      250, "VAEs: importance samples k of the test estimate of -log p(x) (test_nll_nats); "
      "exact likelihoods ignore it.", resumable=True)
  num_samples: int = _option(64, "Images to sample at the end (0: none).", resumable=True)
  export_dir: str | None = _option(
      None, "After training, export the model here (SavedModel and TFLite samplers, as "
      "`python -m export`).", resumable=True)
  export_batch_size: int = _option(16, "Fixed batch of the exported TFLite samplers.",
                                   resumable=True)


_GROUPS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig,
           "runtime": RuntimeConfig, "outputs": OutputConfig}


def _flat_name(field):
  return field.metadata["flag"] or field.name


# flat name -> (group, dataclasses.Field), in declaration order.
FIELDS = {_flat_name(f): (group, f) for group, cls in _GROUPS.items()
          for f in dataclasses.fields(cls)}
RESUMABLE_CHANGES = tuple(name for name, (_, f) in FIELDS.items() if f.metadata["resumable"])


def _jsonable(value):
  return json.loads(json.dumps(value))  # Tuples as saved: lists.


@dataclasses.dataclass
class TrainConfig:
  """The configuration of one training run, nested by concern (see the module doc).

  Make one with `TrainConfig.from_flat(model="vae", train_steps=100, ...)` (the flag
  names), from flags with `from_flags`, or from a saved `config.json` with `from_json`.
  """
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
  runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
  outputs: OutputConfig = dataclasses.field(default_factory=OutputConfig)

  @classmethod
  def from_flat(cls, **values):
    """A config from flat field names (`model`, `dataset`, `train_steps`, ...).

    Raises:
      ValueError: for a name that is not a field (the message lists the fields).
    """
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
      raise ValueError(f"Unknown configuration field(s) {unknown}. Fields: "
                       f"{', '.join(FIELDS)}.")
    groups = {group: {} for group in _GROUPS}
    for name, value in values.items():
      group, field = FIELDS[name]
      if _kind(field) == "list" and value is not None:  # JSON and flags give lists.
        value = tuple(value)
      groups[group][field.name] = value
    return cls(**{group: _GROUPS[group](**kwargs) for group, kwargs in groups.items()})

  def flat(self):
    """{flat name: value} of every field."""
    return {name: getattr(getattr(self, group), field.name)
            for name, (group, field) in FIELDS.items()}

  def replace(self, **changes):
    """A copy with `changes` (flat names) applied."""
    return TrainConfig.from_flat(**dict(self.flat(), **changes))

  def to_json(self):
    """The nested, JSON-ready form written to `config.json`."""
    return _jsonable(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, saved, **changes):
    """A config from `config.json` contents (nested, or the older flat form).

    Fields the file does not know take their defaults; keys this version does not
    know are ignored (a run of a newer version). `changes` (flat names) are applied.

    Raises:
      ValueError: when `saved` is not a configuration.
    """
    return cls.from_flat(**dict(saved_fields(saved), **changes))

  def validate(self):
    """Raises ValueError with a readable message for a bad configuration."""
    values = self.flat()
    for name, (_, field) in FIELDS.items():
      choices = field.metadata["choices"]
      if choices and values[name] not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {values[name]!r}.")
    d, o, r, out = self.data, self.optim, self.runtime, self.outputs
    checks = [
        (o.batch_size >= 1, f"batch_size must be positive, got {o.batch_size}."),
        (o.train_steps >= 0, f"train_steps must be >= 0, got {o.train_steps}."),
        (o.train_steps > 0 or o.epochs > 0, "Give a positive number of epochs or train_steps."),
        (o.learning_rate > 0, f"learning_rate must be positive, got {o.learning_rate}."),
        (0.0 < o.adam_beta2 < 1.0, f"adam_beta2 must be in (0, 1), got {o.adam_beta2}."),
        (out.num_samples >= 0, f"num_samples must be >= 0, got {out.num_samples}."),
        (out.eval_batch_size >= 1,
         f"eval_batch_size must be positive, got {out.eval_batch_size}."),
        (out.eval_importance_samples >= 1,
         f"eval_importance_samples must be positive, got {out.eval_importance_samples}."),
        (out.export_batch_size >= 1,
         f"export_batch_size must be positive, got {out.export_batch_size}."),
        (r.checkpoint_every >= 1,
         f"checkpoint_every must be positive, got {r.checkpoint_every}."),
        (0.0 <= o.ema_decay < 1.0,
         f"ema_decay must be in [0, 1) (0 turns Polyak averaging off), got {o.ema_decay}."),
        (o.max_train_seconds >= 0,
         f"max_train_seconds must be >= 0, got {o.max_train_seconds}."),
        (len(d.split_fractions) == 3,
         f"split_fractions must be three numbers (train, valid, test), got "
         f"{d.split_fractions}."),
        (not (o.max_train_seconds and r.strategy == "multi_worker"),
         "max_train_seconds cannot be used with multi_worker: each worker's clock would "
         "decide alone when to stop, and the others would wait for it forever."),
        (not r.worker_hosts or r.strategy == "multi_worker",
         "worker_hosts is only used with strategy='multi_worker'."),
        (not r.worker_hosts or (r.task_index is not None and
                                0 <= r.task_index < len(r.worker_hosts)),
         f"With worker_hosts, task_index must index that list (0 .. "
         f"{len(r.worker_hosts) - 1}), got {r.task_index}."),
    ]
    for ok, message in checks:
      if not ok:
        raise ValueError(message)
    # Unknown models and hyper-parameters fail here, before any data loads.
    from tfgen import models  # pylint: disable=g-import-not-at-top  # Imports TensorFlow.
    models.model_class(self.model.name).resolve_hparams(self.model.hparams)


# Fields added after runs were first saved, with the value those runs used: a
# config.json without them means that value, whatever today's default.
_VALUES_BEFORE_THE_FIELD = {"adam_beta2": 0.999}


def saved_fields(saved):
  """{flat name: value} of the fields a saved `config.json` holds, nested or flat.

  Raises:
    ValueError: when `saved` is not a JSON object of a configuration.
  """
  if not isinstance(saved, dict):
    raise ValueError(f"A configuration must be a JSON object, got {type(saved).__name__}.")
  if all(isinstance(saved.get(group), dict) for group in _GROUPS):  # Nested.
    out = {}
    for name, (group, field) in FIELDS.items():
      if field.name in saved[group]:
        out[name] = saved[group][field.name]
  elif isinstance(saved.get("model"), dict):
    raise ValueError("A nested configuration must have the groups "
                     f"{', '.join(_GROUPS)}; got {', '.join(saved)}.")
  else:
    out = {name: value for name, value in saved.items() if name in FIELDS}  # Flat, older.
  return dict(_VALUES_BEFORE_THE_FIELD, **out)


def changed_fields(saved, config):
  """The fields that differ between a saved run and `config` and may not: `[(name,
  saved value, new value)]`, for the check that a resumed run is the same run."""
  current = _jsonable(config.flat())
  return [(name, value, current[name]) for name, value in sorted(saved_fields(saved).items())
          if name not in RESUMABLE_CHANGES and value != current[name]]


# ---- command-line flags ----------------------------------------------------------------


def _kind(field):
  """The flag type of a field: "str", "int", "float", "bool", "list" or "hparams"."""
  if field.name == "hparams":
    return "hparams"
  annotation = field.type
  if isinstance(annotation, types.UnionType):  # X | None
    annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
  if typing.get_origin(annotation) is tuple:
    return "list"
  return annotation.__name__


def define_flags(flag_values, module_name):
  """Defines one absl flag per field, with the field's default, help and choices.

  Args:
    flag_values: the `absl.flags.FlagValues` (e.g. `flags.FLAGS`).
    module_name: the module the flags belong to in `--help`: the command's main module
      (`sys.argv[0]` when it runs as a script).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  for name, (group, field) in FIELDS.items():
    # The group leads the help: absl lists flags alphabetically.
    kind, default, text = _kind(field), field.default, f"[{group}] {field.metadata['help']}"
    kwargs = dict(flag_values=flag_values, module_name=module_name)
    if field.metadata["choices"]:
      flags.DEFINE_enum(name, default, list(field.metadata["choices"]), text, **kwargs)
    elif kind == "hparams":
      flags.DEFINE_string(name, "", text, **kwargs)
    elif kind == "list":
      flags.DEFINE_list(name, [str(v) for v in default], text, **kwargs)
    elif kind == "bool":
      flags.DEFINE_bool(name, default, text, **kwargs)
    elif kind == "int":
      flags.DEFINE_integer(name, default, text, **kwargs)
    elif kind == "float":
      flags.DEFINE_float(name, default, text, **kwargs)
    else:
      flags.DEFINE_string(name, default, text, **kwargs)


def from_flags(flag_values):
  """The `TrainConfig` of parsed flags defined by `define_flags`.

  Raises:
    ValueError: for a value the flag types cannot check (the hparams string, the
      numbers of --split_fractions).
  """
  from tfgen import hparams_parser  # pylint: disable=g-import-not-at-top
  values = {}
  for name, (_, field) in FIELDS.items():
    value = flag_values[name].value
    if _kind(field) == "hparams":
      value = hparams_parser.parse(value)
    elif name == "split_fractions":
      try:
        value = tuple(float(f) for f in value)
      except ValueError:
        raise ValueError(f"--split_fractions must be three numbers like 0.8,0.1,0.1, got "
                         f"{','.join(value)}.") from None
    values[name] = value
  return TrainConfig.from_flat(**values)


__all__ = ["BINARIZE", "BUDGET_CLOCKS", "DEFAULT_SPLIT_FRACTIONS", "DataConfig", "FIELDS",
           "LR_SCHEDULES", "MIXED_PRECISION", "ModelConfig", "OptimConfig", "OutputConfig",
           "RESUMABLE_CHANGES", "RuntimeConfig", "STRATEGIES", "TrainConfig", "changed_fields",
           "define_flags", "from_flags", "saved_fields"]
