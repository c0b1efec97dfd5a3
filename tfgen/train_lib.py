"""The training driver: `train_and_evaluate(config, workdir)`.

Everything `train_main.py` does lives here; the binary only parses flags. A run is a
sequence of named stages, each a function of the `_Run` state they share:

  prepare    check the configuration and the directory, load the data, plan the steps
  build      the model and its optimizer inside the distribution strategy's scope
  restore    the newest intact checkpoint, if the run is resumed
  fit        Keras `fit` with checkpoints, a NaN guard, TensorBoard, a time budget
  evaluate   the test metrics of the trained (float32, averaged) weights

then the post-training actions that fit the model's declared capabilities
(`tfgen.models.api`), on the chief only (see `ACTIONS`): save model.keras, latent
figures (LatentModel), sample grids (Sampler), completions (Completer), metrics.json,
export (with `outputs.export_dir`). Into `workdir` it writes:

  workdir/config.json         the configuration of the run (`tfgen.config`)
  workdir/checkpoints/        TensorFlow checkpoints (model, optimizer, step, time)
  workdir/tensorboard/        TensorBoard events: loss, nll, bits/dim, sample grids
  workdir/model.keras         the trained model (keras.models.load_model)
  workdir/samples.png         a grid of samples
  workdir/samples_by_class.png  conditional models: one row of samples per class
  workdir/completions.png     test images' bottom halves completed (api.Completer)
  workdir/metrics.json        test NLL, bits/dim, training time and throughput
  workdir/reconstructions.png, traversal.png, latent_scatter.png, manifold.png:
                              latent models' figures

Resuming: running again with the same workdir restores the last checkpoint and
continues; the data stream is a deterministic function of the seed and is skipped to
the restored step, so the run ends where an uninterrupted run would.
"""

import contextlib
import dataclasses
import math
import os
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from tfgen import completion
from tfgen import config as config_lib
from tfgen import data as data_lib
from tfgen import files
from tfgen import images as images_lib
from tfgen import latents
from tfgen import models
from tfgen import precision as precision_lib
from tfgen import runs
from tfgen.models import api

# PixelCNN++'s per-step learning-rate decay (Salimans et al. 2017, code: lr_decay).
EXPONENTIAL_DECAY_RATE = 0.999995


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss."""


_STRATEGY_CACHE = {}


def make_strategy(name, worker_hosts=(), task_index=None):
  """The `tf.distribute` strategy called `name`, one per process.

  Each MirroredStrategy numbers its collective operations from the same starting key,
  so a second instance over the same devices collides with the first's collectives
  (a shape-mismatch abort when two different models train in one process). Reusing
  one instance per configuration keeps the keys unique.

  "multi_worker" must be created before any other TensorFlow operation runs in the
  process (collective ops are configured at start-up); `train_and_evaluate` does so.

  Args:
    name: one of `tfgen.config.STRATEGIES`.
    worker_hosts: for "multi_worker": every worker's "host:port". Empty: read the
      cluster from the TF_CONFIG environment variable (a single local worker if unset).
    task_index: for "multi_worker" with `worker_hosts`: this worker's index.
  """
  if name not in config_lib.STRATEGIES:
    raise ValueError(f"strategy must be one of {config_lib.STRATEGIES}, got {name!r}.")
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


def build_model(config, info):
  """Builds the model of `config` for the data described by `info`."""
  num_classes = None
  if config.model.conditional:
    if info.num_classes is None:
      raise ValueError(
          f"conditional=True needs class labels, but dataset {info.name!r} has none. "
          "Drop --conditional or use a labelled dataset.")
    num_classes = info.num_classes
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(
      precision_lib.resolve(config.runtime.mixed_precision))
  try:
    return models.build(config.model.name, image_shape=info.image_shape,
                        num_levels=info.num_levels, num_classes=num_classes,
                        **config.model.hparams)
  finally:  # Layers keep the policy they were built with; later builds are unaffected.
    keras.mixed_precision.set_global_policy(previous)


def sample_labels(num, num_classes):
  """Labels for a sample grid of num_classes columns: class k fills column k."""
  return None if num_classes is None else np.arange(num) % num_classes


def sample_grid(model, num, seed, progress=False):
  """Samples `num` images (class k in column k for p(x | y)) as one uint8 picture."""
  labels = sample_labels(num, model.num_classes)
  options = {"progress": progress} if model.SAMPLE_REPORTS_PROGRESS else {}
  samples = model.sample(num, seed=seed, labels=labels, **options).numpy()
  return images_lib.grid(samples, model.num_levels, columns=model.num_classes)


def class_grid(model, per_class, seed):
  """`per_class` samples of each class of a conditional model, row k for class k."""
  labels = np.repeat(np.arange(model.num_classes), per_class)
  samples = model.sample(len(labels), seed=seed, labels=labels).numpy()
  return images_lib.grid(samples, model.num_levels, columns=per_class)


def completion_grid(model, images, labels, per_image, seed):
  """The PixelRNN paper's completion figure as one uint8 picture.

  One row per image: the image with its bottom half occluded (grey), `per_image`
  completions of that half by `model.complete` (for an autoregressive model exact
  samples of p(bottom | top); for a VAE its encode/decode chain), and the original.

  Args:
    model: a `tfgen.models.api.Completer`.
    images: int levels `[B, H, W, C]`.
    labels: int `[B]` for a class-conditional model, else None.
    per_image: completions per image.
    seed: int.

  Returns:
    uint8 `[GH, GW, C]`.
  """
  images = np.asarray(images, np.int32)
  keep = completion.bottom_half_missing(images.shape)
  done = model.complete(images, keep, num_samples=per_image, seed=seed, labels=labels).numpy()
  rows = np.concatenate([images[:, None], np.swapaxes(done, 0, 1), images[:, None]], axis=1)
  blank = np.zeros(rows.shape, bool)  # [B, per_image + 2, H, W, C]
  blank[:, 0] = ~keep
  flat = lambda x: x.reshape((-1,) + model.image_shape)
  return images_lib.grid(flat(rows), model.num_levels, columns=per_image + 2, blank=flat(blank))


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
    self.stopped = False  # Reached `total`, ran out of time, or saw a non-finite value.

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
      self._stop()

  def _stop_bad(self, step):
    self.bad_step = step
    self._stop()

  def _stop(self):
    self.stopped = self.model.stop_training = True


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
  try:
    changed = config_lib.changed_fields(saved, config)
  except ValueError as e:
    raise ValueError(f"{config_path} is not a run's configuration ({e}). Restore it, or "
                     "pass a new --model_dir to start afresh.") from e
  if changed:
    detail = ", ".join(f"{name}: {saved!r} -> {new!r}" for name, saved, new in changed)
    raise ValueError(
        f"{config_path} belongs to a run with a different configuration ({detail}). "
        "Resume it with the same settings, or pass a new --model_dir to start afresh.")


def _say(config, message):
  """A line of progress for a person watching (verbose runs): slow stages say so."""
  if config.runtime.verbose:
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


@dataclasses.dataclass
class _Run:
  """What the stages of one run share; each stage fills in its part."""
  config: config_lib.TrainConfig
  workdir: str
  strategy: tf.distribute.Strategy
  chief: bool
  # prepare
  data: data_lib.ImageData = None
  eval_split: str = None
  steps_per_epoch: int = 0
  total_steps: int = 0
  policy: str = "float32"
  # build
  model: keras.Model = None
  clock: "_Clock" = None
  batches: tf.Variable = None
  checkpoint: tf.train.Checkpoint = None
  manager: tf.train.CheckpointManager = None
  writer: object = None
  # restore
  start_step: int = 0
  # fit
  train_seconds: float = 0.0
  steps_done: int = 0
  # evaluate and actions
  metrics: dict = dataclasses.field(default_factory=dict)

  def path(self, name):
    return os.path.join(self.workdir, name)


def _prepare(run):
  """Stage 1: the directory's configuration, the data, the number of steps."""
  config = run.config
  _check_resume(run.path("config.json"), config)
  if config.outputs.export_dir:  # Refused now, not after hours of training.
    from export import export_lib  # pylint: disable=g-import-not-at-top
    export_lib.check_exportable(models.model_class(config.model.name))
  run.data = data_lib.load_config(config.data)
  info = run.data.info
  batch_size = config.optim.batch_size
  train_size = info.split_sizes["train"]
  if train_size < batch_size:
    raise ValueError(
        f"The training split has {train_size} images, fewer than one batch of "
        f"{batch_size}; lower --batch_size.")
  if batch_size % run.strategy.num_replicas_in_sync:
    raise ValueError(
        f"batch_size {batch_size} does not split evenly over "
        f"{run.strategy.num_replicas_in_sync} replicas; use a multiple of that number.")
  run.eval_split = next((s for s in ("test", "valid") if run.data.has_split(s)), None)
  if run.eval_split is None:
    raise ValueError(
        f"Dataset {info.name!r} has no test or validation split to evaluate on (it is too "
        "small for the 80/10/10 split, or its file has only a training split). Add one.")
  run.steps_per_epoch = train_size // batch_size
  run.total_steps = config.optim.train_steps or max(
      1, int(round(config.optim.epochs * run.steps_per_epoch)))
  run.policy = precision_lib.resolve(config.runtime.mixed_precision)


def _learning_rate(optim, total_steps):
  if optim.lr_schedule == "cosine":
    return keras.optimizers.schedules.CosineDecay(optim.learning_rate, total_steps)
  if optim.lr_schedule == "exponential":
    return keras.optimizers.schedules.ExponentialDecay(
        optim.learning_rate, decay_steps=1, decay_rate=EXPONENTIAL_DECAY_RATE)
  return optim.learning_rate


def _build(run):
  """Stage 2: the model, its optimizer (with EMA), the checkpoint and the writers."""
  config = run.config
  keras.utils.set_random_seed(config.runtime.seed)
  _say(config, f"Training in {run.policy} ({config.runtime.mixed_precision!r}).")
  with run.strategy.scope():
    run.model = build_model(config, run.data.info)
    ema = ({"use_ema": True, "ema_momentum": config.optim.ema_decay}
           if config.optim.ema_decay else {})
    run.model.compile(optimizer=keras.optimizers.Adam(
        _learning_rate(config.optim, run.total_steps), beta_2=config.optim.adam_beta2,
        **ema))  # Builds it too.
  if run.chief:  # After the build: a config that cannot build must not block a fixed rerun.
    files.atomic_json(run.path("config.json"), config.to_json())  # Other workers read it.
  run.clock = _Clock()
  run.batches = tf.Variable(0, dtype=tf.int64, trainable=False)
  run.checkpoint = tf.train.Checkpoint(
      model=run.model, optimizer=run.model.optimizer, train_seconds=run.clock.seconds["wall"],
      train_cpu_seconds=run.clock.seconds["cpu"], batches=run.batches)
  # Every worker saves (saving may involve collectives); only the chief's copy is kept,
  # in workdir/checkpoints, which all workers restore from: workdir must be shared.
  write_dir = run.path("checkpoints") if run.chief else run.path(
      f".worker_{run.strategy.cluster_resolver.task_id}")
  run.manager = tf.train.CheckpointManager(run.checkpoint, write_dir, max_to_keep=3)
  run.writer = (tf.summary.create_file_writer(run.path(os.path.join("tensorboard", "steps")))
                if run.chief else tf.summary.create_noop_writer())


def with_initial_model(config):
  """`config` with the model section of its `init_from` run (when that is set).

  A model section left at its defaults becomes the source run's (name,
  hyper-parameters, conditioning); one that was given must be the same model.

  Raises:
    ValueError (tfgen.runs.RunError): for a source that is not a finished run or zoo
      entry, or a model section that differs from the source's.
  """
  mine = config.model
  if not mine.init_from:
    return config
  source_dir = runs.resolve(mine.init_from)
  if not os.path.isfile(os.path.join(source_dir, "config.json")):
    raise runs.RunError(
        f"--init_from={mine.init_from}: {source_dir} has no config.json, so it is not a "
        "finished train_main.py run. Pass a run directory or zoo:NAME "
        "(tfgen.zoo.available() lists them).")
  source = runs.train_config(files.read_json(os.path.join(source_dir, "config.json"),
                                             "run's configuration")).model
  default = config_lib.ModelConfig()
  if (mine.name, mine.hparams, mine.conditional) == (default.name, default.hparams,
                                                     default.conditional):
    return config.replace(model=source.name, hparams=dict(source.hparams),
                          conditional=source.conditional)
  resolved = lambda m: (m.name, models.model_class(m.name).resolve_hparams(m.hparams),
                        m.conditional)
  if resolved(mine) != resolved(source):
    raise runs.RunError(
        f"--init_from={mine.init_from} holds a {source.name} model with hparams "
        f"{dict(source.hparams)}{' (conditional)' if source.conditional else ''}, but this "
        f"run asks for {mine.name} with {dict(mine.hparams)}"
        f"{' (conditional)' if mine.conditional else ''}. Leave --model, --hparams and "
        "--conditional out to fine-tune the source's model.")
  return config


def _initialize_from(run):
  """The weights of the `init_from` run, into the freshly built `run.model`.

  Raises:
    ValueError: when the weights do not fit (other levels, channels or classes).
  """
  source_path = run.config.model.init_from
  source, _ = runs.load_model(source_path)
  theirs, ours = source.get_weights(), run.model.get_weights()
  mismatch = next(((i, a.shape, b.shape) for i, (a, b) in enumerate(zip(theirs, ours))
                   if a.shape != b.shape), None)
  if len(theirs) != len(ours) or mismatch:
    where = (f"weight {mismatch[0]} is {mismatch[1]} there and {mismatch[2]} here"
             if mismatch else f"{len(theirs)} weights there, {len(ours)} here")
    raise ValueError(
        f"The weights of --init_from={source_path} ({source.image_shape[0]}x"
        f"{source.image_shape[1]}x{source.image_shape[2]} images, {source.num_levels} "
        f"levels) do not fit this run's model ({run.model.image_shape[0]}x"
        f"{run.model.image_shape[1]}x{run.model.image_shape[2]}, "
        f"{run.model.num_levels} levels): {where}. Fine-tune on data with the source's "
        "levels and channels (e.g. --binarize=threshold for a binary model, "
        "--reduce_levels), and its image size for a dense model.")
  run.model.set_weights(theirs)
  _say(run.config, f"Initialized from {source_path}.")


def _restore_stage(run):
  """Stage 3: the newest intact checkpoint of a resumed run; for a new run with
  `init_from`, that run's weights."""
  latest = _restore(run.checkpoint, run.path("checkpoints"))
  run.start_step = int(run.batches.numpy())
  if run.start_step:
    logging.info("Resuming from %s at step %d of %d.", latest, run.start_step,
                 run.total_steps)
  elif run.config.model.init_from:
    _initialize_from(run)


def _fit(run):
  """Stage 4: train to `total_steps` (or the time budget), then the weights to evaluate.

  Afterwards `run.model` holds what evaluation, samples and model.keras use: the
  Polyak average where `ema_decay` is set, in float32 whatever the training precision.

  Raises:
    NonFiniteLossError: when the loss or the weights became NaN or infinite.
  """
  config, model = run.config, run.model
  guard = _CheckpointAndGuard(run.manager, run.batches, config.runtime.checkpoint_every,
                              run.total_steps, run.clock, run.writer,
                              config.optim.max_train_seconds, config.optim.budget_clock,
                              keep=run.chief)
  num_epochs = math.ceil(run.total_steps / run.steps_per_epoch)
  if run.start_step < run.total_steps:
    batch_size, eval_batch = config.optim.batch_size, config.outputs.eval_batch_size
    valid_ds = (_sharded(run.data.dataset("valid", eval_batch))
                if run.data.has_split("valid") else None)
    callbacks = [run.clock, guard, _Progbar()]
    if config.optim.ema_decay:  # Validation with the averaged weights, then back.
      callbacks.append(keras.callbacks.SwapEMAWeights())
    if run.chief:
      # Per-epoch curves; per-step ones come from the guard, at the true step (Keras's
      # own batch counter restarts at 0 when a run resumes).
      callbacks.append(keras.callbacks.TensorBoard(run.path("tensorboard"), write_graph=False))
    if config.outputs.num_samples and run.chief and api.implements(model, api.Sampler):
      callbacks.append(_SampleSummary(run.writer, run.clock, run.batches, config.runtime.seed,
                                      every=max(1, num_epochs // 5)))

    def fit(first_step, epoch, epochs, steps_per_epoch):
      model.fit(_sharded(run.data.dataset("train", batch_size, training=True,
                                          seed=config.runtime.seed, start_step=first_step)),
                epochs=epochs, initial_epoch=epoch, steps_per_epoch=steps_per_epoch,
                validation_data=valid_ds, callbacks=callbacks,
                verbose=config.runtime.verbose,
                shuffle=False)  # The dataset is shuffled by seed (resumable); Keras cannot.

    epoch, into_epoch = divmod(run.start_step, run.steps_per_epoch)
    if into_epoch:
      # A run stopped mid-epoch first finishes that epoch alone, so that validation,
      # sample summaries and the epoch curves fall at the steps an uninterrupted run's do.
      fit(run.start_step, epoch, epoch + 1, run.steps_per_epoch - into_epoch)
      epoch += 1
    if epoch < num_epochs and not guard.stopped:
      fit(epoch * run.steps_per_epoch, epoch, num_epochs, run.steps_per_epoch)
  run.train_seconds = run.clock.elapsed("wall")
  if guard.bad_step is not None:
    last = run.manager.latest_checkpoint or "none yet"
    raise NonFiniteLossError(
        f"Training stopped at step {guard.bad_step}: the loss became NaN or infinite. The "
        f"last good checkpoint ({last}) is kept and nothing after it was saved. Lower "
        "--learning_rate (or check the data), then run again with a new --model_dir, or "
        "with this one to resume from that checkpoint.")
  run.steps_done = int(run.batches.numpy())
  if config.optim.ema_decay:  # From here on (evaluation, samples, model.keras): the average.
    with run.strategy.scope():
      model.optimizer.finalize_variable_values(model.trainable_variables)
  if run.policy != "float32":
    # Evaluation, samples and model.keras in float32: the exact NLL of the trained
    # weights, and a saved model that exports and samples like any float32 one.
    with run.strategy.scope():
      trained = build_model(config.replace(mixed_precision="none"), run.data.info)
      trained.set_weights(model.get_weights())
      # The trained optimizer (schedule, moments, EMA) goes with it into model.keras.
      trained.compile(optimizer=model.optimizer)
    run.model = trained


def _evaluate(run):
  """Stage 5: test metrics of the trained model, and what the run measured."""
  config, model, info = run.config, run.model, run.data.info
  _say(config, f"Evaluating on the {run.eval_split} split "
       f"({info.split_sizes.get(run.eval_split, '?')} images) ...")
  results = model.test_metrics(
      _sharded(run.data.dataset(run.eval_split, config.outputs.eval_batch_size)),
      num_importance_samples=config.outputs.eval_importance_samples)
  run.metrics = {f"{run.eval_split}_{key}": value for key, value in results.items()}
  run.metrics.update({
      "train_seconds": run.train_seconds,
      "train_cpu_seconds": run.clock.elapsed("cpu"),
      "train_steps": run.steps_done,
      "train_images_per_second": (run.steps_done * config.optim.batch_size / run.train_seconds
                                  if run.train_seconds > 0 else None),
      "dataset": info.name,
      "model": config.model.name,
      "num_params": int(model.count_params()),
      "image_shape": list(info.image_shape),
      "num_levels": info.num_levels,
      "num_replicas": run.strategy.num_replicas_in_sync,
      "resumed_from_step": run.start_step,
      "precision": run.policy,
  })


# ---- post-training actions (the chief only) ---------------------------------------------


def _save_model(run):
  """model.keras, written atomically: a kill leaves the old file or none, never half."""
  _say(run.config, f"Saving {run.workdir}/model.keras and the pictures ...")
  with files.atomic_path(run.path("model.keras")) as partial:
    run.model.save(partial)


def _latent_figures(run):
  """Pictures of an autoencoder's or VAE's latent space.

  reconstructions.png (rows of test images over their reconstructions), traversal.png
  (one row per latent dimension, the most used first), and for a 2-D latent space
  latent_scatter.png (test codes coloured by label), pca_scatter.png (the same images'
  first two principal components, the linear baseline) and, for a VariationalModel,
  manifold.png. Adds to the metrics the use score (KL nats for a VAE, code variance for
  an autoencoder) of each traversed dimension and the number of active dimensions
  (VAE: KL above 0.01 nats, Burda et al. 2016).
  """
  model, data, split, seed = run.model, run.data, run.eval_split, run.config.runtime.seed
  levels = model.num_levels
  scale = max(1, 64 // model.image_shape[0])

  def save(name, picture):
    files.atomic_write(run.path(name), images_lib.png_bytes(picture, scale=scale))

  dataset = data.dataset(split, 256)
  element = next(iter(data.dataset(split, 16, training=True, seed=seed)))
  images, labels = models.base.unpack_inputs(element)
  labels = labels if model.num_classes else None
  recon = np.round(model.reconstruct(images, labels).numpy()).astype(np.int32)
  save("reconstructions.png", images_lib.grid(np.concatenate([images.numpy(), recon]), levels,
                                              columns=len(recon)))
  first_label = None if labels is None else int(labels[0])
  statistics = latents.code_statistics(model, dataset)  # (use score, mean, std) [D] each
  pictures, dims, scores = latents.default_traversal(model, dataset, labels=first_label,
                                                     statistics=statistics)
  rows, steps = pictures.shape[:2]
  save("traversal.png", images_lib.grid(np.round(pictures.reshape((-1,) + model.image_shape))
                                        .astype(np.int32), levels, columns=steps))
  run.metrics["traversal_dims"] = [int(d) for d in dims]
  run.metrics["traversal_dim_scores"] = [round(float(v), 4) for v in scores]
  variational = api.implements(model, api.VariationalModel)
  if variational and model.prior_is_standard_normal and model.posterior_is_diagonal_gaussian:
    run.metrics["active_latent_dims"] = int((statistics[0] > 0.01).sum())
  if model.latent_dim == 2:
    codes, codes_labels = latents.encode_dataset(model, dataset, max_images=5000)
    files.atomic_write(run.path("latent_scatter.png"),
                       latents.scatter_png(codes, codes_labels, data.info.label_names))
    components, _ = latents.principal_components(dataset, max_images=5000)
    files.atomic_write(run.path("pca_scatter.png"), latents.scatter_png(
        components, codes_labels, data.info.label_names,
        title="The same images' first two principal components", axis="PC"))
    if variational:
      grid = latents.manifold(model, labels=first_label)
      save("manifold.png", images_lib.grid(np.round(grid.reshape((-1,) + model.image_shape))
                                           .astype(np.int32), levels, columns=grid.shape[1]))


def _sample_grids(run):
  """samples.png (and TensorBoard), and for a conditional model samples_by_class.png."""
  config, model = run.config, run.model
  scale = max(1, 128 // model.image_shape[0])
  picture = sample_grid(model, config.outputs.num_samples, config.runtime.seed,
                        progress=config.runtime.verbose == 1)
  files.atomic_write(run.path("samples.png"), images_lib.png_bytes(picture, scale=scale))
  with run.writer.as_default():
    tf.summary.image("final_samples", picture[None], step=run.steps_done)
  if model.num_classes:
    picture = class_grid(model, max(1, config.outputs.num_samples // model.num_classes),
                         config.runtime.seed)
    files.atomic_write(run.path("samples_by_class.png"),
                       images_lib.png_bytes(picture, scale=scale))


def _completions(run):
  """completions.png (and TensorBoard): test images' bottom halves completed."""
  model, seed = run.model, run.config.runtime.seed
  element = next(iter(run.data.dataset(run.eval_split, 8, training=True, seed=seed)))
  images, labels = models.base.unpack_inputs(element)
  picture = completion_grid(model, images.numpy(),
                            labels.numpy() if model.num_classes else None, 4, seed)
  scale = max(1, 64 // model.image_shape[0])
  files.atomic_write(run.path("completions.png"), images_lib.png_bytes(picture, scale=scale))
  with run.writer.as_default():
    tf.summary.image("completions", picture[None], step=run.steps_done)


def _write_metrics(run):
  run.writer.flush()
  files.atomic_json(run.path("metrics.json"), run.metrics)


def _export(run):
  """The exported SavedModel and TFLite samplers (`python -m export` of this run)."""
  from export import export_lib  # pylint: disable=g-import-not-at-top
  out = run.config.outputs.export_dir
  _say(run.config, f"Exporting to {out} ...")
  export_lib.export_run(run.workdir, out, batch_size=run.config.outputs.export_batch_size)
  _say(run.config, f"Exported to {out} (see its README.md).")


# (name, applies(model, config), action), in order. metrics.json comes before the export:
# a failed export loses nothing the run measured.
ACTIONS = (
    ("save_model", lambda model, config: True, _save_model),
    ("latent_figures", lambda model, config: api.implements(model, api.LatentModel),
     _latent_figures),
    ("sample_grids", lambda model, config: (config.outputs.num_samples > 0 and
                                            api.implements(model, api.Sampler)),
     _sample_grids),
    ("completions", lambda model, config: (config.outputs.num_samples > 0 and
                                           api.implements(model, api.Completer)),
     _completions),
    ("write_metrics", lambda model, config: True, _write_metrics),
    ("export", lambda model, config: bool(config.outputs.export_dir), _export),
)


def post_training_actions(model, config):
  """The names of the `ACTIONS` a run of `model` with `config` takes, in order."""
  return [name for name, applies, _ in ACTIONS if applies(model, config)]


def train_and_evaluate(config, workdir, on_trained=None):
  """Trains `config.model` on `config.data`, evaluates, and writes `workdir`.

  With strategy "multi_worker", every worker runs this with the same config and
  workdir (a filesystem they share); only the chief (task 0) writes outputs.

  Args:
    config: a `tfgen.config.TrainConfig`.
    workdir: output directory; an existing run there is resumed.
    on_trained: optional callable, given the trained Keras model before evaluation
      (on every worker), e.g. to inspect it in the same process.

  Returns:
    The metrics dict also written to `workdir/metrics.json`.

  Raises:
    ValueError: for a bad configuration or dataset, or a workdir holding a run with a
      different configuration.
    tfgen.data.DatasetUnavailableError: for a dataset that cannot be had offline.
    NonFiniteLossError: when the loss becomes NaN or infinite (the last good
      checkpoint is kept).
  """
  config = with_initial_model(config)
  config.validate()
  # First: a multi-worker strategy must exist before any other TensorFlow op runs.
  r = config.runtime
  strategy = make_strategy(r.strategy, r.worker_hosts, r.task_index)
  chief = is_chief(strategy)
  os.makedirs(workdir, exist_ok=True)
  # The chief writes the directory; the other workers of its cluster only read it.
  with files.RunLock(workdir, log=logging.warning) if chief else contextlib.nullcontext():
    run = _Run(config, workdir, strategy, chief)
    for stage in (_prepare, _build, _restore_stage, _fit):
      stage(run)
    if on_trained is not None:
      on_trained(run.model)
    _evaluate(run)
    if chief:
      for _, applies, action in ACTIONS:
        if applies(run.model, config):
          action(run)
    return run.metrics
