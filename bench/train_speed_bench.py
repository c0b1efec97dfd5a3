"""Training speed of every family against TFP's `tfd.PixelCNN`, side by side, one run.

  python bench/train_speed_bench.py                     # every family, float32 and bf16
  python bench/train_speed_bench.py --models=pixelcnn,tfd_pixelcnn --precisions=float32

Builds every model of --models at its default size for binary 28x28 images (and
`pixelcnn_pp_peer`, PixelCNN++ at the peer's own architecture: num_filters=32,
num_resnet=1, num_scales=2, num_mixtures=2), under every Keras policy of
--precisions, plus `tfd_pixelcnn` (TensorFlow Probability's PixelCNN++, 32 filters, 1
resnet block, 2 hierarchies, 625K parameters; float32 only, its own layers). Each
takes --warmup training steps on a fixed batch of --batch_size random binary images
(tracing), then --rounds rounds each time every model by --steps steps, the models
interleaved within a round so that the machine's drift falls on all of them alike;
figures are medians over rounds. The same rounds time a plain 7x7, 32->32
`tf.nn.conv2d` at batch 64, 28x28, in float32 and bfloat16: this machine's conv
throughput at the time.

Prints one JSON object (and writes it to --out):

  machine: CPU model, cores, TensorFlow/Keras versions, date
  command: the command line
  auto_policy: the policy `--mixed_precision=auto` picks on this machine
  conv_gflops: {float32, bfloat16}: the plain convolution's GFLOP/s (2 flops per MAC)
  results: a list of {model, precision, num_params, step_seconds, images_per_second,
    useful_gflop_per_image, achieved_gflops, fraction_of_conv_peak, vs_tfd_pixelcnn}
    useful_gflop_per_image  3 x the forward pass's multiply-adds x 2 of the taps the
                            causal structure uses (a masked kernel's non-zero taps; a
                            shifted kernel's taps; LSTM state kernels once per pixel):
                            the work a step cannot avoid, backward pass included (~2x
                            the forward pass)
    achieved_gflops         useful_gflop_per_image * images_per_second
    fraction_of_conv_peak   achieved_gflops / conv_gflops of the policy's compute dtype
    vs_tfd_pixelcnn         images_per_second / the peer's images_per_second
  input_images_per_second: the tfgen input pipeline on binarized MNIST, when the data
    file is there (it must stay far above every training speed)

With --op_profile, each result also gets `op_profile`, from a TensorFlow profiler trace
of --steps further steps taken after the timed rounds (the profiler slows a step, so
these steps are not timed):

  op_profile:
    op_ms_per_step      kernel time of the step's operations, summed over the threads
                        that ran them (two operations may run at once)
    ops_per_step        operations executed per step (a loop body's once per iteration)
    shares              {class: fraction of op_ms_per_step}, classes of `OP_CLASSES`
    top                 the 10 costliest operations: [name, ms per step, runs per step]

Run it alone: a second TensorFlow process on the two cores slows both several times.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import bench_data  # noqa: E402  (beside this file)

ALL = ["pixelcnn", "gated_pixelcnn", "pixelcnn_pp", "pixelcnn_pp_peer", "row_lstm",
       "diagonal_bilstm", "tfd_pixelcnn"]
PEER_PP = dict(num_filters=32, num_resnet=1, num_scales=2, num_mixtures=2)
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                    "shared", "data", "binarized_mnist.npz")

_MODELS = flags.DEFINE_list("models", ALL, f"Models, of {ALL}.")
_PRECISIONS = flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"],
                                "Keras dtype policies for the tfgen models.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Images per training step.")
_SIDE = flags.DEFINE_integer("side", 28, "Image side.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps per model first.")
_STEPS = flags.DEFINE_integer("steps", 4, "Timed steps per model per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved rounds; medians are reported.")
_OUT = flags.DEFINE_string("out", None, "Also write the JSON here.")
_OP_PROFILE = flags.DEFINE_bool("op_profile", False,
                                "Also profile --steps steps of each model by operation.")

# Operation classes of --op_profile, by substring of the kernel's name, first match
# wins; anything else is "other". Data movement copies or rearranges values without
# arithmetic (the shifts, crops and pads of causal layers, their gradients).
OP_CLASSES = (
    ("convolution", ("Conv2D", "Conv3D", "DepthwiseConv")),
    ("matmul", ("MatMul", "Einsum")),
    ("data_movement", ("Slice", "Concat", "Pad", "Split", "Transpose", "Reverse", "Tile",
                       "Gather", "Scatter", "Pack", "Unpack", "Identity", "Reshape",
                       "TensorList", "TensorArray", "Fill", "ZerosLike", "OnesLike")),
    # Before element-wise, whose short names they contain: AssignAddVariableOp is the
    # optimizer's, SparseSoftmaxCrossEntropyWithLogits a reduction.
    ("optimizer", ("Apply", "Assign", "ReadVariable")),
    ("reduction", ("Sum", "Mean", "Prod", "Softmax", "CrossEntropy", "ArgMax", "ArgMin")),
    ("elementwise", ("Elu", "Relu", "Sigmoid", "Tanh", "Softplus", "Exp", "Log", "Mul",
                     "Add", "Sub", "Neg", "Div", "Square", "Sqrt", "Rsqrt", "Maximum",
                     "Minimum", "Select", "Cast", "BiasAdd", "Abs", "Sign", "Pow",
                     "Greater", "Less", "Equal", "Floor", "Where")),
)


def _useful_macs(model, images):
  """Multiply-adds per image of one forward pass, counting only the taps used.

  Every layer with a kernel is wrapped for one eager forward pass to record its
  input and output shapes; a masked kernel counts its non-zero taps, a transposed
  convolution its input positions, an LSTM state kernel one application per pixel.
  """
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  macs = []
  originals = []
  for layer in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
    kernel = getattr(layer, "kernel", None)
    if kernel is None or not hasattr(layer, "call"):
      continue
    original = layer.call

    def counting(*args, __layer=layer, __original=original, **kwargs):
      out = __original(*args, **kwargs)
      kernel = np.asarray(__layer.kernel)
      mask = getattr(__layer, "mask", None)
      taps = int(np.count_nonzero(np.asarray(mask))) if mask is not None else kernel.size
      shape = (args[0].shape if isinstance(__layer, keras.layers.Conv2DTranspose)
               else out.shape)
      macs.append(int(np.prod(shape[:-1])) * taps)
      return out

    layer.call = counting
    originals.append((layer, original))
  try:
    model({"image": images})
  finally:
    for layer, original in originals:
      layer.call = original
  total = sum(macs)
  height, width = model.image_shape[:2]
  for layer in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
    state = getattr(layer, "state_kernel", None)
    if state is not None:  # Inside a tf.scan: once per pixel of every image.
      total += int(images.shape[0]) * height * width * int(np.prod(state.shape))
  return total / int(images.shape[0])


def _tfgen_step(name, precision, images):
  import keras  # pylint: disable=g-import-not-at-top
  from tfgen import models  # pylint: disable=g-import-not-at-top
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(precision)
  try:
    hparams = PEER_PP if name == "pixelcnn_pp_peer" else {}
    model = models.build(name.replace("_peer", ""), images.shape[1:], 2, **hparams)
  finally:
    keras.mixed_precision.set_global_policy(previous)
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  useful = _useful_macs(model, images)
  return model.count_params(), useful, lambda: model.train_on_batch(images)


def _tfd_step(images):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  dist = tfp.distributions.PixelCNN(image_shape=tuple(images.shape[1:]), num_resnet=1,
                                    num_hierarchies=2, num_filters=32, high=1, low=0)
  x = tf.cast(images, tf.float32)
  dist.log_prob(x)  # Builds the network (weight-norm data init).
  variables = dist.network.trainable_variables
  optimizer = tf_keras.optimizers.Adam(1e-3)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(dist.log_prob(x))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  params = sum(int(tf.size(v)) for v in variables)
  return params, None, step


def _conv_flops(dtype):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  x = tf.random.normal([64, 28, 28, 32], dtype=tf.float32)
  w = tf.random.normal([7, 7, 32, 32], dtype=tf.float32) * 0.05
  x, w = tf.cast(x, dtype), tf.cast(w, dtype)

  @tf.function
  def conv(x, w):
    for _ in range(10):
      x = tf.nn.conv2d(x, w, 1, "SAME")
    return x

  flops = 10 * 2 * 64 * 28 * 28 * 7 * 7 * 32 * 32
  return lambda: conv(x, w).numpy(), flops


def _op_class(name):
  for label, parts in OP_CLASSES:
    if any(part in name for part in parts):
      return label
  return "other"


def _op_profile(step, steps):
  """Kernel time by operation of `steps` calls of `step`, from a profiler trace."""
  import collections  # pylint: disable=g-import-not-at-top
  import glob  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from tensorflow.python.profiler.internal import _pywrap_profiler_plugin
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    try:
      for _ in range(steps):
        out = step()
      if hasattr(out, "numpy"):
        out.numpy()
    finally:
      tf.profiler.experimental.stop()
    data, _ = _pywrap_profiler_plugin.xspace_to_tools_data(
        glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")),
        "trace_viewer@", {})
  # Kernels are the events that say whether they ran eagerly; the others are the
  # executor's and the thread pools' spans around them, or work inside a kernel.
  kernels = [e for e in json.loads(data)["traceEvents"]
             if e.get("ph") == "X" and "is_eager" in e.get("args", {})]
  micros, runs = collections.Counter(), collections.Counter()
  for event in kernels:
    micros[event["name"]] += event["dur"]
    runs[event["name"]] += 1
  total = sum(micros.values())
  shares = collections.Counter()
  for name, value in micros.items():
    shares[_op_class(name)] += value / total
  return {"op_ms_per_step": round(total / 1e3 / steps, 1),
          "ops_per_step": round(sum(runs.values()) / steps),
          "shares": {k: round(v, 3) for k, v in shares.most_common()},
          "top": [[name, round(value / 1e3 / steps, 1), round(runs[name] / steps)]
                  for name, value in micros.most_common(10)]}


def _timed(fn, steps):
  start = time.perf_counter()
  for _ in range(steps):
    out = fn()
  if hasattr(out, "numpy"):
    out.numpy()
  return (time.perf_counter() - start) / steps


def _input_speed(batch):
  from tfgen import data as data_lib  # pylint: disable=g-import-not-at-top
  if not os.path.exists(DATA):
    return None
  data = data_lib.load(f"npz:{DATA}")
  dataset = data.dataset("train", batch, training=True, seed=0)
  it = iter(dataset)
  next(it)
  start, count = time.perf_counter(), 0
  for _ in range(200):
    count += int(next(it)["image"].shape[0])
  return count / (time.perf_counter() - start)


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  bad = sorted(set(_MODELS.value) - set(ALL))
  if bad:
    raise app.UsageError(f"Unknown --models {bad}; choose from {ALL}.")
  side, batch = _SIDE.value, _BATCH.value
  images = tf.constant(np.random.default_rng(0).integers(0, 2, (batch, side, side, 1)),
                       tf.int32)
  runs = {}  # key -> (model, precision, params, useful macs, step fn)
  for name in _MODELS.value:
    if name == "tfd_pixelcnn":
      # Its multiply-adds are not counted (its layers are tf-keras'): the comparison
      # with it is images per second.
      runs[(name, "float32")] = _tfd_step(images)
      continue
    for precision in _PRECISIONS.value:
      runs[(name, precision)] = _tfgen_step(name, precision, images)
  convs = {"float32": _conv_flops(tf.float32), "bfloat16": _conv_flops(tf.bfloat16)}
  for key, (_, _, step) in runs.items():
    for _ in range(_WARMUP.value):
      step()
    print(f"warmed up {key}", file=sys.stderr, flush=True)
  for fn, _ in convs.values():
    fn()
  times = {key: [] for key in runs}
  conv_times = {key: [] for key in convs}
  for r in range(_ROUNDS.value):
    for key, (fn, _) in convs.items():
      conv_times[key].append(_timed(fn, 3))
    for key, (_, _, step) in runs.items():
      times[key].append(_timed(step, _STEPS.value))
    print(f"round {r + 1} done", file=sys.stderr, flush=True)
  median = lambda values: float(np.median(values))
  conv_gflops = {k: convs[k][1] / median(v) / 1e9 for k, v in conv_times.items()}
  peer = times.get(("tfd_pixelcnn", "float32"))
  peer_ips = batch / median(peer) if peer else None
  results = []
  for (name, precision), (params, useful, _) in runs.items():
    seconds = median(times[(name, precision)])
    ips = batch / seconds
    row = {"model": name, "precision": precision, "num_params": int(params),
           "step_seconds": round(seconds, 4), "step_seconds_rounds":
           [round(t, 4) for t in times[(name, precision)]],
           "images_per_second": round(ips, 2),
           "vs_tfd_pixelcnn": round(ips / peer_ips, 3) if peer_ips else None}
    if useful is not None:
      gflop = 3 * 2 * useful / 1e9
      compute = "bfloat16" if "bfloat16" in precision else "float32"
      row.update(useful_gflop_per_image=round(gflop, 4),
                 achieved_gflops=round(gflop * ips, 1),
                 fraction_of_conv_peak=round(gflop * ips / conv_gflops[compute], 3))
    if _OP_PROFILE.value:
      row["op_profile"] = _op_profile(runs[(name, precision)][2], _STEPS.value)
      print(f"profiled {name} {precision}", file=sys.stderr, flush=True)
    results.append(row)
  from tfgen import precision  # pylint: disable=g-import-not-at-top
  report = {"machine": bench_data.machine(), "command": bench_data.command(),
            "auto_policy": precision.auto_policy(),
            "batch_size": batch, "side": side,
            "rounds": _ROUNDS.value, "steps_per_round": _STEPS.value,
            "conv_gflops": {k: round(v, 1) for k, v in conv_gflops.items()},
            "results": results, "input_images_per_second": _input_speed(batch)}
  text = json.dumps(report, indent=2)
  print(text)
  if _OUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  app.run(main)
