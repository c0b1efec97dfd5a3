"""The training driver: `train_and_evaluate(config, workdir)`.

Everything `train_main.py` does lives here; the binary only parses flags. The driver
loads the data, builds the model inside a distribution strategy's scope, trains with
Keras `fit`, checkpoints, evaluates on the test split, samples, and writes into
`workdir`:

  workdir/config.json         the configuration of the run
  workdir/checkpoints/        TensorFlow checkpoints (model, optimizer, step, time)
  workdir/tensorboard/        TensorBoard events: loss, nll, bits/dim, sample grids
  workdir/model.keras         the trained model (keras.models.load_model)
  workdir/samples.png         a grid of samples
  workdir/samples_by_class.png  conditional models: one row of samples per class
  workdir/metrics.json        test NLL, bits/dim, training time and throughput

Resuming: running again with the same workdir restores the last checkpoint and
continues; the data stream is a deterministic function of the seed and is skipped to
the restored step, so the run ends where an uninterrupted run would.
"""

import contextlib
import dataclasses
import json
import math
import os
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from tfgen import data as data_lib
from tfgen import files
from tfgen import images as images_lib
from tfgen import latents
from tfgen import models
from tfgen import precision as precision_lib
from tfgen.models import vae as vae_lib

STRATEGIES = ("mirrored", "one_device", "multi_worker")
MIXED_PRECISION = precision_lib.CHOICES
BUDGET_CLOCKS = ("wall", "cpu")
LR_SCHEDULES = ("cosine", "constant", "exponential")
# PixelCNN++'s per-step learning-rate decay (Salimans et al. 2017, code: lr_decay).
EXPONENTIAL_DECAY_RATE = 0.999995


@dataclasses.dataclass
class TrainConfig:
  """Configuration of one training run.

  Attributes:
    model: a name from `tfgen.models.available()`.
    hparams: model hyper-parameters (see `tfgen.models.default_hparams`).
    dataset: a `tfgen.data.load` spec.
    data_dir: TensorFlow Datasets directory.
    image_size: resize images to this side.
    num_levels: levels of the stored data, where they cannot be inferred.
    reduce_levels: reduce the data to this many levels.
    binarize: "none", "threshold" or "dynamic".
    random_flip: random horizontal flips of training images.
    conditional: model p(x | y) with the dataset's class labels.
    download: let TensorFlow Datasets download a missing dataset.
    batch_size: the global batch size, split across replicas.
    epochs: passes over the training split (used when train_steps is 0).
    train_steps: optimizer steps; 0 means `epochs` passes.
    learning_rate: Adam's (peak) learning rate.
    lr_schedule: "cosine" (decay to zero over the run; measured ~0.5 nats better after
      one epoch of binarized MNIST), "constant", or "exponential" (PixelCNN++'s
      lr * 0.999995^step, whatever the run's length). With "cosine", resuming with a
      different train_steps changes the schedule of the remaining steps.
    max_train_seconds: stop training (with a checkpoint) after this much training
      time; 0 means no limit. A run stopped this way is not bitwise reproducible.
    budget_clock: what `max_train_seconds` counts: "wall" seconds, or "cpu" seconds
      of this process (all threads; what a budget on a shared machine should count).
    split_fractions: `(train, valid, test)` fractions for datasets stored as one
      array (see `tfgen.data.load`).
    seed: seed of the initialization, data order and sampling.
    num_samples: images to sample at the end.
    strategy: "mirrored" (all local GPUs, else the CPU), "one_device", or
      "multi_worker" (MultiWorkerMirroredStrategy over several processes or machines,
      configured by TF_CONFIG or by `worker_hosts` and `task_index`).
    worker_hosts: "host:port" of every worker, the same list on every worker.
    task_index: this worker's index in `worker_hosts` (0 is the chief).
    mixed_precision: the training precision: "none" (float32, the default), "auto"
      (bfloat16 where the CPU or GPU computes it natively, float16 on GPUs that only
      have that, else float32; see `tfgen.precision`), "mixed_float16" or
      "mixed_bfloat16". float32 stays the default because after the same 600 s a
      bfloat16 PixelCNN was no better (README, "Training speed"). The
      pixel distribution and its log-likelihood stay float32, and evaluation, samples
      and the saved model.keras are float32 whatever the training precision (the
      variables are float32 throughout). metrics.json records the resolved policy.
    checkpoint_every: steps between checkpoints (at most that much work is lost).
    eval_batch_size: batch size of evaluation.
    eval_importance_samples: k of the importance-weighted estimate of log p(x) for
      latent-variable models (VAEs); exact likelihoods ignore it.
    verbose: Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).
    ema_decay: Polyak averaging (PixelCNN++): 0 is off; otherwise the optimizer keeps
      an exponential moving average of the weights, avg = d avg + (1 - d) w after
      every step (e.g. 0.9995), used for validation during training and swapped into
      the model after it, for evaluation, sampling and the saved model. It lives in
      the checkpoints, so a resumed run averages on where it stopped.
  """
  model: str = "pixelcnn"
  hparams: dict = dataclasses.field(default_factory=dict)
  dataset: str = "digits"
  data_dir: str | None = None
  image_size: int | None = None
  num_levels: int | None = None
  reduce_levels: int | None = None
  binarize: str = "none"
  random_flip: bool = False
  conditional: bool = False
  download: bool = True
  batch_size: int = 64
  epochs: float = 30.0
  train_steps: int = 0
  learning_rate: float = 2e-3
  lr_schedule: str = "cosine"
  max_train_seconds: float = 0.0
  budget_clock: str = "wall"
  split_fractions: tuple = data_lib.DEFAULT_SPLIT_FRACTIONS
  seed: int = 0
  num_samples: int = 64
  strategy: str = "mirrored"
  worker_hosts: tuple = ()
  task_index: int | None = None
  mixed_precision: str = "none"
  checkpoint_every: int = 200
  eval_batch_size: int = 256
  eval_importance_samples: int = 250
  ema_decay: float = 0.0
  verbose: int = 1

  # Fields that may change between a run and its resumption.
  RESUMABLE_CHANGES = ("epochs", "train_steps", "num_samples", "checkpoint_every",
                       "eval_batch_size", "eval_importance_samples", "verbose", "download", "data_dir", "strategy",
                       "max_train_seconds", "budget_clock", "task_index", "worker_hosts",
                       # The checkpoints hold float32 variables under any policy.
                       "mixed_precision")

  def validate(self):
    """Raises ValueError with a readable message for a bad configuration."""
    checks = [
        (self.batch_size >= 1, f"batch_size must be positive, got {self.batch_size}."),
        (self.train_steps >= 0, f"train_steps must be >= 0, got {self.train_steps}."),
        (self.train_steps > 0 or self.epochs > 0,
         "Give a positive number of epochs or train_steps."),
        (self.learning_rate > 0, f"learning_rate must be positive, got {self.learning_rate}."),
        (self.num_samples >= 0, f"num_samples must be >= 0, got {self.num_samples}."),
        (self.eval_importance_samples >= 1,
         f"eval_importance_samples must be positive, got {self.eval_importance_samples}."),
        (self.checkpoint_every >= 1,
         f"checkpoint_every must be positive, got {self.checkpoint_every}."),
        (0.0 <= self.ema_decay < 1.0,
         f"ema_decay must be in [0, 1) (0 turns Polyak averaging off), got {self.ema_decay}."),
        (self.lr_schedule in LR_SCHEDULES,
         f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}."),
        (self.max_train_seconds >= 0,
         f"max_train_seconds must be >= 0, got {self.max_train_seconds}."),
        (self.budget_clock in BUDGET_CLOCKS,
         f"budget_clock must be one of {BUDGET_CLOCKS}, got {self.budget_clock!r}."),
        (self.strategy in STRATEGIES,
         f"strategy must be one of {STRATEGIES}, got {self.strategy!r}."),
        (self.mixed_precision in MIXED_PRECISION,
         f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}."),
        (not (self.max_train_seconds and self.strategy == "multi_worker"),
         "max_train_seconds cannot be used with multi_worker: each worker's clock would "
         "decide alone when to stop, and the others would wait for it forever."),
        (not self.worker_hosts or self.strategy == "multi_worker",
         "worker_hosts is only used with strategy='multi_worker'."),
        (not self.worker_hosts or (self.task_index is not None and
                                   0 <= self.task_index < len(self.worker_hosts)),
         f"With worker_hosts, task_index must index that list (0 .. "
         f"{len(self.worker_hosts) - 1}), got {self.task_index}."),
    ]
    for ok, message in checks:
      if not ok:
        raise ValueError(message)
    # Unknown models and hyper-parameters fail here, before any data loads.
    models.model_class(self.model).resolve_hparams(self.hparams)


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss."""


_STRATEGY_CACHE = {}


def make_strategy(name, worker_hosts=(), task_index=None):
  """The `tf.distribute` strategy called `name` (see `STRATEGIES`), one per process.

  Each MirroredStrategy numbers its collective operations from the same starting key,
  so a second instance over the same devices collides with the first's collectives
  (a shape-mismatch abort when two different models train in one process). Reusing
  one instance per configuration keeps the keys unique.

  "multi_worker" must be created before any other TensorFlow operation runs in the
  process (collective ops are configured at start-up); `train_and_evaluate` does so.

  Args:
    name: one of `STRATEGIES`.
    worker_hosts: for "multi_worker": every worker's "host:port". Empty: read the
      cluster from the TF_CONFIG environment variable (a single local worker if unset).
    task_index: for "multi_worker" with `worker_hosts`: this worker's index.
  """
  if name not in STRATEGIES:
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}.")
  key = (name, tuple(worker_hosts), task_index)
  if key not in _STRATEGY_CACHE:
    if name == "mirrored":
      # All visible GPUs; with none, MirroredStrategy runs on the CPU.
      strategy = tf.distribute.MirroredStrategy()
    elif name == "one_device":
      device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
      strategy = tf.distribute.OneDeviceStrategy(device)
    else:
      resolver = None
      if worker_hosts:
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec({"worker": list(worker_hosts)}), task_type="worker",
            task_id=int(task_index), rpc_layer="grpc")
      strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    _STRATEGY_CACHE[key] = strategy
  return _STRATEGY_CACHE[key]


def is_chief(strategy):
  """Whether this process writes checkpoints, summaries and outputs."""
  return strategy.extended.should_checkpoint


def _sharded(dataset):
  """Shards by data: each worker keeps its slice of every global batch.

  The order of global batches is then the same as in one process, whatever the number
  of workers (file-based sharding would reorder them, and in-memory sources have no
  files).
  """
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return dataset.with_options(options)


def load_data(config):
  """Loads the dataset of `config`."""
  return data_lib.load(
      config.dataset, data_dir=config.data_dir, image_size=config.image_size,
      num_levels=config.num_levels, reduce_levels=config.reduce_levels,
      binarize=config.binarize, random_flip=config.random_flip,
      split_fractions=config.split_fractions, download=config.download)


def build_model(config, info):
  """Builds the model of `config` for the data described by `info`."""
  num_classes = None
  if config.conditional:
    if info.num_classes is None:
      raise ValueError(
          f"conditional=True needs class labels, but dataset {info.name!r} has none. "
          "Drop --conditional or use a labelled dataset.")
    num_classes = info.num_classes
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(precision_lib.resolve(config.mixed_precision))
  try:
    return models.build(config.model, image_shape=info.image_shape,
                        num_levels=info.num_levels, num_classes=num_classes,
                        **config.hparams)
  finally:  # Layers keep the policy they were built with; later builds are unaffected.
    keras.mixed_precision.set_global_policy(previous)


def sample_labels(num, num_classes):
  """Labels for a sample grid of num_classes columns: class k fills column k."""
  return None if num_classes is None else np.arange(num) % num_classes


def sample_grid(model, num, seed, progress=False):
  """Samples `num` images (class k in column k for p(x | y)) as one uint8 picture."""
  labels = sample_labels(num, model.num_classes)
  # Only autoregressive samplers are slow enough to report progress.
  options = {"progress": progress} if isinstance(model, models.base.AutoregressiveModel) else {}
  samples = model.sample(num, seed=seed, labels=labels, **options).numpy()
  return images_lib.grid(samples, model.num_levels, columns=model.num_classes)


def class_grid(model, per_class, seed):
  """`per_class` samples of each class of a conditional model, row k for class k."""
  labels = np.repeat(np.arange(model.num_classes), per_class)
  samples = model.sample(len(labels), seed=seed, labels=labels).numpy()
  return images_lib.grid(samples, model.num_levels, columns=per_class)


class _CheckpointAndGuard(keras.callbacks.Callback):
  """Counts batches, checkpoints, logs step scalars, and stops on non-finite values.

  The step count is the number of batches consumed, kept in a checkpointed variable
  rather than read from the optimizer: a float16 loss-scale optimizer does not advance
  `iterations` on the steps it skips, and a resumed run must skip exactly the batches
  already trained on. Weights are checked to be finite before every save, so the
  newest checkpoint is always a usable one.
  """

  def __init__(self, manager, batches, every, total, clock, writer, max_seconds=0.0,
               budget_clock="wall", keep=True):
    super().__init__()
    self.manager, self.batches, self.every, self.total = manager, batches, every, total
    self.clock, self.writer, self.keep = clock, writer, keep
    self.max_seconds, self.budget_clock = max_seconds, budget_clock
    self.bad_step = None

  def on_train_batch_end(self, batch, logs=None):
    logs = logs or {}
    self.batches.assign_add(1)
    step = int(self.batches.numpy())
    if not math.isfinite(float(logs.get("loss", 0.0))):
      return self._stop_bad(step)
    due = step % self.every == 0
    if due:
      with self.writer.as_default():
        for key in ("loss", "nll", "bits_per_dim"):
          if key in logs:  # Keras's mean over the epoch so far, at the true step.
            tf.summary.scalar(f"train_step/{key}", float(logs[key]), step=step)
    out_of_time = (self.max_seconds and
                   self.clock.elapsed(self.budget_clock) >= self.max_seconds)
    if due or step >= self.total or out_of_time:
      if not all(np.isfinite(w).all() for w in self.model.get_weights()):
        return self._stop_bad(step)
      self.clock.save_elapsed()
      self.manager.save(checkpoint_number=step)
      if not self.keep:  # A non-chief worker's copy: written, then removed.
        tf.io.gfile.rmtree(self.manager.directory)
    if step >= self.total or out_of_time:
      self.model.stop_training = True

  def _stop_bad(self, step):
    self.bad_step = step
    self.model.stop_training = True


class _Clock(keras.callbacks.Callback):
  """Training wall and CPU time, accumulated across resumed runs in checkpointed variables.

  Validation and sample summaries are excluded, so images/second measures training.
  """

  CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}

  def __init__(self):
    super().__init__()
    self.seconds = {kind: tf.Variable(0.0, dtype=tf.float64, trainable=False)
                    for kind in self.CLOCKS}
    self._started = None

  def resume(self):
    self._started = {kind: now() for kind, now in self.CLOCKS.items()}

  def pause(self):
    if self._started is not None:
      for kind, now in self.CLOCKS.items():
        self.seconds[kind].assign_add(now() - self._started[kind])
      self._started = None

  def elapsed(self, kind="wall"):
    """Seconds of training so far by the "wall" or the "cpu" (this process) clock."""
    running = (self.CLOCKS[kind]() - self._started[kind]) if self._started is not None else 0.0
    return float(self.seconds[kind].numpy()) + running

  def save_elapsed(self):
    self.pause()
    self.resume()

  def on_train_begin(self, logs=None):
    self.resume()

  def on_train_end(self, logs=None):
    self.pause()

  def on_test_begin(self, logs=None):
    self.pause()

  def on_test_end(self, logs=None):
    self.resume()


class _SampleSummary(keras.callbacks.Callback):
  """Writes a grid of samples to TensorBoard every `every` Keras epochs."""

  def __init__(self, writer, clock, batches, seed, every, num=16):
    super().__init__()
    self.writer, self.clock, self.batches = writer, clock, batches
    self.seed, self.every, self.num = seed, every, num

  def on_epoch_end(self, epoch, logs=None):
    if (epoch + 1) % self.every:
      return
    self.clock.pause()
    picture = sample_grid(self.model, self.num, self.seed)
    with self.writer.as_default():
      tf.summary.image("samples", picture[None], step=int(self.batches.numpy()))
    self.clock.resume()


def _check_resume(config_path, config):
  if not os.path.exists(config_path):
    return
  saved = files.read_json(config_path, "run's configuration")
  current = json.loads(json.dumps(dataclasses.asdict(config)))  # Tuples as saved: lists.
  changed = sorted(k for k in current if k not in TrainConfig.RESUMABLE_CHANGES
                   and k in saved and saved[k] != current[k])
  if changed:
    detail = ", ".join(f"{k}: {saved[k]!r} -> {current[k]!r}" for k in changed)
    raise ValueError(
        f"{config_path} belongs to a run with a different configuration ({detail}). "
        "Resume it with the same settings, or pass a new --model_dir to start afresh.")


def _write_latent_figures(model, data, split, workdir, seed):
  """Pictures of an autoencoder's or VAE's latent space, written into `workdir`.

  reconstructions.png (rows of test images over their reconstructions), traversal.png
  (one row per latent dimension, the most used first), and for a 2-D latent space
  latent_scatter.png (test codes coloured by label) and, for a VAE, manifold.png.

  Returns:
    Metrics about the latent space: the use score (KL nats for a VAE, code variance
    for an autoencoder) of each traversed dimension, and the number of active
    dimensions (VAE: KL above 0.01 nats, Burda et al. 2016).
  """
  levels = model.num_levels
  scale = max(1, 64 // model.image_shape[0])

  def save(name, picture):
    files.atomic_write(os.path.join(workdir, name), images_lib.png_bytes(picture, scale=scale))

  dataset = data.dataset(split, 256)
  element = next(iter(data.dataset(split, 16, training=True, seed=seed)))
  images, labels = models.base.unpack_inputs(element)
  labels = labels if model.num_classes else None
  recon = np.round(model.reconstruct(images, labels).numpy()).astype(np.int32)
  save("reconstructions.png", images_lib.grid(np.concatenate([images.numpy(), recon]), levels,
                                              columns=len(recon)))
  first_label = None if labels is None else int(labels[0])
  pictures, dims, scores = latents.default_traversal(model, dataset, labels=first_label)
  rows, steps = pictures.shape[:2]
  save("traversal.png", images_lib.grid(np.round(pictures.reshape((-1,) + model.image_shape))
                                        .astype(np.int32), levels, columns=steps))
  out = {"traversal_dims": [int(d) for d in dims],
         "traversal_dim_scores": [round(float(v), 4) for v in scores]}
  if isinstance(model, vae_lib.VAE):
    score, _, _ = latents.code_statistics(model, dataset)
    out["active_latent_dims"] = int((score > 0.01).sum())
  if model.latent_dim == 2:
    codes, codes_labels = latents.encode_dataset(model, dataset, max_images=5000)
    files.atomic_write(os.path.join(workdir, "latent_scatter.png"),
                       latents.scatter_png(codes, codes_labels, data.info.label_names))
    if isinstance(model, vae_lib.VAE):
      grid = latents.manifold(model, labels=first_label)
      save("manifold.png", images_lib.grid(np.round(grid.reshape((-1,) + model.image_shape))
                                           .astype(np.int32), levels, columns=grid.shape[1]))
  return out


def train_and_evaluate(config, workdir, on_trained=None):
  """Trains `config.model` on `config.dataset`, evaluates, samples, writes `workdir`.

  With strategy "multi_worker", every worker runs this with the same config and
  workdir (a filesystem they share); only the chief (task 0) writes outputs.

  Args:
    config: a `TrainConfig`.
    workdir: output directory; an existing run there is resumed.
    on_trained: optional callable, given the trained Keras model before evaluation
      (on every worker), e.g. to inspect or export it in the same process.

  Returns:
    The metrics dict also written to `workdir/metrics.json`.

  Raises:
    ValueError: for a bad configuration or dataset, or a workdir holding a run with a
      different configuration.
    tfgen.data.DatasetUnavailableError: for a dataset that cannot be had offline.
    NonFiniteLossError: when the loss becomes NaN or infinite (the last good
      checkpoint is kept).
  """
  config.validate()
  # First: a multi-worker strategy must exist before any other TensorFlow op runs.
  strategy = make_strategy(config.strategy, config.worker_hosts, config.task_index)
  chief = is_chief(strategy)
  os.makedirs(workdir, exist_ok=True)
  # The chief writes the directory; the other workers of its cluster only read it.
  with files.RunLock(workdir, log=logging.warning) if chief else contextlib.nullcontext():
    return _train_and_evaluate(config, workdir, strategy, chief, on_trained)


def _say(config, message):
  """A line of progress for a person watching (verbose runs): slow stages say so."""
  if config.verbose:
    print(message, flush=True)


class _Progbar(keras.callbacks.ProgbarLogger):
  """Keras's progress bar, closing on the steps done when training stops mid-epoch
  (Keras's closes on the epoch's full count: "781/781" after 2 steps of a budget)."""

  def _finalize_progbar(self, logs):
    if self.model is not None and self.model.stop_training and self.progbar is not None:
      self.target = self.progbar.target = self.seen
    super()._finalize_progbar(logs)


def _damage(path):
  """What is wrong with checkpoint `path`, or None when every tensor of it reads back."""
  try:
    reader = tf.train.load_checkpoint(path)
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
    return None
  except Exception as e:  # pylint: disable=broad-except  # Damage surfaces as many kinds.
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def _checkpoints_newest_first(checkpoint_dir):
  """The checkpoint prefixes in `checkpoint_dir`, newest first.

  From the `checkpoint` state file, or, where that is damaged or gone, from the
  `ckpt-N.index` files themselves.
  """
  try:
    state = tf.train.get_checkpoint_state(checkpoint_dir)
    paths = list(state.all_model_checkpoint_paths) if state else []
  except Exception:  # pylint: disable=broad-except  # A damaged state file: parse errors.
    paths = []
  if not paths and tf.io.gfile.isdir(checkpoint_dir):
    numbered = [name[:-len(".index")] for name in tf.io.gfile.listdir(checkpoint_dir)
                if name.startswith("ckpt-") and name.endswith(".index")]
    paths = sorted(numbered, key=lambda n: int(n.split("-")[1]) if n.split("-")[1].isdigit()
                   else -1)
  paths = [p if os.path.isabs(p) else os.path.join(checkpoint_dir, p) for p in paths]
  return paths[::-1]


def _restore(checkpoint, checkpoint_dir):
  """Restores the newest intact checkpoint; returns its path, or None for a new run.

  A damaged newest checkpoint (a truncated file, a disk error) is passed over with a
  message for the one before it; the damaged files are left where they are.

  Raises:
    ValueError: when checkpoints exist but none reads back (the message names the
      damaged files and what to do), or when an intact one belongs to another model.
  """
  damaged = []
  for path in _checkpoints_newest_first(checkpoint_dir):
    problem = _damage(path)
    if problem:
      damaged.append(f"{path} ({problem})")
      continue
    if damaged:
      logging.warning("Checkpoint %s is damaged; resuming from the newest intact one, %s.",
                      damaged[0], path)
    try:
      checkpoint.restore(path).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
      raise ValueError(
          f"The checkpoint {path} does not fit this model ({str(e).splitlines()[0]}). "
          "It was written by a different model or version; pass a new --model_dir.") from e
    return path
  if damaged:
    raise ValueError(
        f"Every checkpoint in {checkpoint_dir} is damaged and cannot be resumed from: "
        f"{'; '.join(damaged)}. Restore them from a backup, or move {checkpoint_dir} "
        "away to train this run again from the start (or pass a new --model_dir).")
  return None


def _train_and_evaluate(config, workdir, strategy, chief, on_trained):
  """`train_and_evaluate` once the run directory is this process's."""
  config_path = os.path.join(workdir, "config.json")
  _check_resume(config_path, config)
  data = load_data(config)
  info = data.info
  train_size = info.split_sizes["train"]
  if train_size < config.batch_size:
    raise ValueError(
        f"The training split has {train_size} images, fewer than one batch of "
        f"{config.batch_size}; lower --batch_size.")
  if config.batch_size % strategy.num_replicas_in_sync:
    raise ValueError(
        f"batch_size {config.batch_size} does not split evenly over "
        f"{strategy.num_replicas_in_sync} replicas; use a multiple of that number.")
  eval_split = next((s for s in ("test", "valid") if data.has_split(s)), None)
  if eval_split is None:
    raise ValueError(
        f"Dataset {info.name!r} has no test or validation split to evaluate on (it is too "
        "small for the 80/10/10 split, or its file has only a training split). Add one.")
  steps_per_epoch = train_size // config.batch_size
  total_steps = config.train_steps or max(1, int(round(config.epochs * steps_per_epoch)))

  keras.utils.set_random_seed(config.seed)
  policy = precision_lib.resolve(config.mixed_precision)
  _say(config, f"Training in {policy} ({config.mixed_precision!r}).")
  with strategy.scope():
    model = build_model(config, info)
    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine":
      learning_rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, total_steps)
    elif config.lr_schedule == "exponential":
      learning_rate = keras.optimizers.schedules.ExponentialDecay(
          config.learning_rate, decay_steps=1, decay_rate=EXPONENTIAL_DECAY_RATE)
    ema = {"use_ema": True, "ema_momentum": config.ema_decay} if config.ema_decay else {}
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, **ema))  # Builds it too.
  if chief:  # After the build: a config that cannot build must not block a fixed rerun.
    files.atomic_json(config_path, dataclasses.asdict(config))  # Other workers read it.
  clock = _Clock()
  batches = tf.Variable(0, dtype=tf.int64, trainable=False)
  checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                   train_seconds=clock.seconds["wall"],
                                   train_cpu_seconds=clock.seconds["cpu"], batches=batches)
  # Every worker saves (saving may involve collectives); only the chief's copy is kept,
  # in workdir/checkpoints, which all workers restore from: workdir must be shared.
  checkpoint_dir = os.path.join(workdir, "checkpoints")
  write_dir = checkpoint_dir if chief else os.path.join(
      workdir, f".worker_{strategy.cluster_resolver.task_id}")
  manager = tf.train.CheckpointManager(checkpoint, write_dir, max_to_keep=3)
  latest = _restore(checkpoint, checkpoint_dir)
  start_step = int(batches.numpy())
  if start_step:
    logging.info("Resuming from %s at step %d of %d.", latest, start_step, total_steps)

  tb_dir = os.path.join(workdir, "tensorboard")
  writer = (tf.summary.create_file_writer(os.path.join(tb_dir, "steps")) if chief
            else tf.summary.create_noop_writer())
  guard = _CheckpointAndGuard(manager, batches, config.checkpoint_every, total_steps, clock,
                              writer, config.max_train_seconds, config.budget_clock,
                              keep=chief)
  num_epochs = math.ceil(total_steps / steps_per_epoch)
  if start_step < total_steps:
    train_ds = _sharded(data.dataset("train", config.batch_size, training=True,
                                     seed=config.seed, start_step=start_step))
    valid_ds = (_sharded(data.dataset("valid", config.eval_batch_size))
                if data.has_split("valid") else None)
    callbacks = [clock, guard, _Progbar()]
    if config.ema_decay:  # Validation with the averaged weights, then back.
      callbacks.append(keras.callbacks.SwapEMAWeights())
    if chief:
      # Per-epoch curves; per-step ones come from the guard, at the true step (Keras's
      # own batch counter restarts at 0 when a run resumes).
      callbacks.append(keras.callbacks.TensorBoard(tb_dir, write_graph=False))
    if config.num_samples and chief and hasattr(model, "sample"):
      callbacks.append(_SampleSummary(writer, clock, batches, config.seed,
                                      every=max(1, num_epochs // 5)))
    model.fit(train_ds, epochs=num_epochs,
              initial_epoch=start_step // steps_per_epoch, steps_per_epoch=steps_per_epoch,
              validation_data=valid_ds, callbacks=callbacks, verbose=config.verbose,
              shuffle=False)  # The dataset is shuffled by seed (resumable); Keras cannot.
  train_seconds = clock.elapsed("wall")
  if guard.bad_step is not None:
    last = manager.latest_checkpoint or "none yet"
    raise NonFiniteLossError(
        f"Training stopped at step {guard.bad_step}: the loss became NaN or infinite. The "
        f"last good checkpoint ({last}) is kept and nothing after it was saved. Lower "
        "--learning_rate (or check the data), then run again with a new --model_dir, or "
        "with this one to resume from that checkpoint.")
  steps_done = int(batches.numpy())
  if config.ema_decay:  # From here on (evaluation, samples, model.keras): the average.
    with strategy.scope():
      model.optimizer.finalize_variable_values(model.trainable_variables)
  if policy != "float32":
    # Evaluation, samples and model.keras in float32: the exact NLL of the trained
    # weights, and a saved model that exports and samples like any float32 one.
    with strategy.scope():
      trained = build_model(dataclasses.replace(config, mixed_precision="none"), info)
      trained.set_weights(model.get_weights())
      # The trained optimizer (schedule, moments, EMA) goes with it into model.keras.
      trained.compile(optimizer=model.optimizer)
    model = trained
  if on_trained is not None:
    on_trained(model)

  _say(config, f"Evaluating on the {eval_split} split "
       f"({info.split_sizes.get(eval_split, '?')} images) ...")
  results = model.test_metrics(_sharded(data.dataset(eval_split, config.eval_batch_size)),
                               num_importance_samples=config.eval_importance_samples)
  metrics = {f"{eval_split}_{key}": value for key, value in results.items()}
  metrics.update({
      "train_seconds": train_seconds,
      "train_cpu_seconds": clock.elapsed("cpu"),
      "train_steps": steps_done,
      "train_images_per_second": (steps_done * config.batch_size / train_seconds
                                  if train_seconds > 0 else None),
      "dataset": info.name,
      "model": config.model,
      "num_params": int(model.count_params()),
      "image_shape": list(info.image_shape),
      "num_levels": info.num_levels,
      "num_replicas": strategy.num_replicas_in_sync,
      "resumed_from_step": start_step,
      "precision": policy,
  })
  if not chief:
    return metrics
  _say(config, f"Saving {workdir}/model.keras and the pictures ...")
  with files.atomic_path(os.path.join(workdir, "model.keras")) as partial:
    model.save(partial)
  if isinstance(model, vae_lib.LatentModel):
    metrics.update(_write_latent_figures(model, data, eval_split, workdir, config.seed))
  if config.num_samples and hasattr(model, "sample"):
    picture = sample_grid(model, config.num_samples, config.seed,
                          progress=config.verbose == 1)
    files.atomic_write(os.path.join(workdir, "samples.png"),
                       images_lib.png_bytes(picture, scale=max(1, 128 // info.image_shape[0])))
    with writer.as_default():
      tf.summary.image("final_samples", picture[None], step=steps_done)
    if model.num_classes:
      picture = class_grid(model, max(1, config.num_samples // model.num_classes), config.seed)
      files.atomic_write(os.path.join(workdir, "samples_by_class.png"),
                         images_lib.png_bytes(picture,
                                              scale=max(1, 128 // info.image_shape[0])))
  writer.flush()
  files.atomic_json(os.path.join(workdir, "metrics.json"), metrics)
  return metrics
