"""Why the causal layers pad with tf.pad: a padded convolution three ways, fwd + bwd.

  python bench/conv_padding_bench.py

A 4x7 kernel (a 7x7 mask-B layer cut to the rows it uses), 32 -> 32 features, batch
64 at 28x28, padded 3 rows on top and 3 columns either side so the output keeps the
input's size, in float32 and bfloat16. Times one training-style step (forward and
the gradients of input and kernel), median of --steps after 3 warm-up steps, the
three variants interleaved:

  explicit   tf.nn.conv2d with explicit padding [[0,0],[3,0],[3,3],[0,0]]
  pad_valid  tf.pad, then a "VALID" convolution (what `layers.causal_conv` does)
  full_same  the whole 7x7 kernel, masked, "SAME" padding (the layer before the cut)

Prints one JSON object: {dtype: {variant: milliseconds}} and the machine.
"""

import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

_STEPS = flags.DEFINE_integer("steps", 15, "Timed steps per variant and dtype.")


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  mask = np.zeros((7, 7, 32, 32), np.float32)
  mask[:3] = 1.0
  mask[3, :4] = 1.0
  pad = [[0, 0], [3, 0], [3, 3], [0, 0]]
  variants = {
      "explicit": lambda x, k: tf.nn.conv2d(x, k[:4], 1, pad),
      "pad_valid": lambda x, k: tf.nn.conv2d(tf.pad(x, pad), k[:4], 1, "VALID"),
      "full_same": lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"),
  }
  x = tf.Variable(tf.random.normal([64, 28, 28, 32], seed=0))
  k = tf.Variable(tf.random.normal([7, 7, 32, 32], seed=1) * 0.05)
  steps = {}
  for dtype in (tf.float32, tf.bfloat16):
    for name, conv in variants.items():
      @tf.function
      def step(conv=conv, dtype=dtype):
        with tf.GradientTape() as tape:
          kernel = tf.cast(k, dtype) * tf.constant(mask, dtype)
          y = conv(tf.cast(x, dtype), kernel)
          loss = tf.reduce_sum(tf.square(tf.cast(y, tf.float32)))
        return tape.gradient(loss, [x, k])
      for _ in range(3):
        step()
      steps[(dtype.name, name)] = step
  times = {key: [] for key in steps}
  for _ in range(_STEPS.value):
    for key, step in steps.items():
      start = time.perf_counter()
      step()[0].numpy()
      times[key].append(time.perf_counter() - start)
  result = {"machine": {"cpu": platform.processor(), "cores": os.cpu_count(),
                        "tensorflow": tf.__version__}, "milliseconds": {}}
  for (dtype, name), values in times.items():
    result["milliseconds"].setdefault(dtype, {})[name] = round(1000 * float(np.median(values)), 2)
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
