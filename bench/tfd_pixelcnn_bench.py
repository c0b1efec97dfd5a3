"""TFP's `tfd.PixelCNN` trained on binarized MNIST for a wall-clock budget: the peer.

  python bench/tfd_pixelcnn_bench.py --max_train_seconds=600 --test_images=1000

The same data, batch and test images as `bench/likelihood_bench.py` (the fixed
binarization in ../shared/data: the 50,000 training images in a shuffled order, and
`--test_images` random test images drawn with seed 0 by `bench_data.subset_npz`, or
the whole test split), so the two print comparable test NLLs after the same budget.
The model is the configuration of `bench/train_speed_bench.py`: 32 filters, 1 resnet
block, 2 hierarchies, binary levels (625,500 parameters), in float32 (its own
tf-keras layers), trained with tf-keras Adam at --learning_rate.

Prints one JSON object: train_steps, train_seconds, train_images_per_second,
test_nll_nats, test_bits_per_dim.
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

_SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "shared", "data")
_DATA = flags.DEFINE_string("data", os.path.join(_SHARED, "binarized_mnist.npz"),
                            "The binarized MNIST npz (train and test splits).")
_SECONDS = flags.DEFINE_float("max_train_seconds", 600.0, "Wall-clock training budget.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Images per step.")
_LR = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (TFP's example: 1e-3).")
_TEST_IMAGES = flags.DEFINE_integer("test_images", None,
                                    "Random test images (seed 0); default the whole split.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the data order.")


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top

  path = bench_data.subset_npz(_DATA.value, _TEST_IMAGES.value) if _TEST_IMAGES.value \
      else _DATA.value
  with np.load(path) as f:
    train, test = f["train"][..., None], f["test"][..., None]  # [N, 28, 28, 1] uint8
  tf.random.set_seed(_SEED.value)
  dist = tfp.distributions.PixelCNN(image_shape=train.shape[1:], num_resnet=1,
                                    num_hierarchies=2, num_filters=32, high=1, low=0)
  dist.log_prob(tf.zeros((1,) + train.shape[1:]))  # Builds the network.
  variables = dist.network.trainable_variables
  optimizer = tf_keras.optimizers.Adam(_LR.value)

  @tf.function
  def step(x):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(dist.log_prob(x))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  @tf.function
  def log_prob(x):
    return dist.log_prob(x)

  rng = np.random.default_rng(_SEED.value)
  batch = _BATCH.value
  steps, order, position = 0, rng.permutation(len(train)), 0
  step(tf.constant(train[:batch], tf.float32))  # Tracing, outside the budget.
  start = time.perf_counter()
  while time.perf_counter() - start < _SECONDS.value:
    if position + batch > len(order):
      order, position = rng.permutation(len(train)), 0
    step(tf.constant(train[order[position:position + batch]], tf.float32)).numpy()
    position += batch
    steps += 1
  seconds = time.perf_counter() - start
  nll = -np.concatenate([log_prob(tf.constant(test[i:i + 500], tf.float32)).numpy()
                         for i in range(0, len(test), 500)])
  print(json.dumps({
      "benchmark": "tfd_pixelcnn", "num_params": int(sum(int(tf.size(v)) for v in variables)),
      "batch_size": batch, "learning_rate": _LR.value, "max_train_seconds": _SECONDS.value,
      "test_images": len(test), "train_steps": steps, "train_seconds": round(seconds, 1),
      "train_images_per_second": round(steps * batch / seconds, 1),
      "test_nll_nats": round(float(nll.mean()), 3),
      "test_bits_per_dim": round(float(nll.mean() / (np.prod(test.shape[1:]) * np.log(2))), 5),
  }))


if __name__ == "__main__":
  app.run(main)
