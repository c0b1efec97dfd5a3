"""VAE on binarized MNIST: test ELBO and importance-weighted NLL after a CPU budget,
and linear-probe accuracy of its features with few labels.

  python bench/vae_bench.py                                  # FC VAE, 20-d latent
  python bench/vae_bench.py --model=conv_vae --cpu_seconds=900

Trains with `tfgen.train_lib` on the 50,000 training images of
`../shared/data/binarized_mnist.npz` until `--cpu_seconds` of process CPU time are
spent, then prints one JSON object:
  test_neg_elbo_nats      -ELBO on the whole test split (one z per image, analytic KL)
  iwae_nll_nats           -log p(x) estimated with k = --iwae_k importance samples on
                          --iwae_images test images drawn at random (the split is
                          sorted by class); test_neg_elbo_subset_nats is the ELBO on
                          the same images, for a like-for-like gap
  iwae_seconds_per_1000_images, and default_k_seconds_per_10000_images: the cost of
                          train_main's default --eval_importance_samples on the test split
  probe_accuracy_*        logistic regression on 100 labelled images per class from the
                          8-bit MNIST test set (binarized at 128; 9,000 pool / 1,000
                          held out): VAE posterior means against raw pixels
"""

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHARED = os.path.join(os.path.dirname(_REPO), "shared", "data")
_DATA_DIR = flags.DEFINE_string("data_dir", _SHARED, "Directory holding the .npz files.")
_MODEL = flags.DEFINE_string("model", "vae", "vae or conv_vae.")
_HPARAMS = flags.DEFINE_string("hparams", "", "Model hyper-parameters, key=value,...")
_CPU_SECONDS = flags.DEFINE_float("cpu_seconds", 600.0, "Training budget, CPU seconds.")
_BATCH = flags.DEFINE_integer("batch_size", 100, "Batch size.")
_LR = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (constant).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of initialization, data order, subsets.")
_IWAE_K = flags.DEFINE_integer("iwae_k", 5000, "Importance samples k.")
_IWAE_IMAGES = flags.DEFINE_integer("iwae_images", 1000, "Test images for the k estimate.")
_PER_CLASS = flags.DEFINE_integer("probe_per_class", 100, "Labelled images per class.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: a temp dir).")


def train(model_name, hparams, cpu_seconds, workdir=None):
  """Trains on binarized MNIST for a CPU budget; (config, metrics, model)."""
  import keras
  from tfgen import config as config_lib
  from tfgen import train_lib
  config = config_lib.TrainConfig.from_flat(
      model=model_name, hparams=hparams,
      dataset=f"npz:{os.path.join(_DATA_DIR.value, 'binarized_mnist.npz')}",
      batch_size=_BATCH.value, epochs=1e6, learning_rate=_LR.value, lr_schedule="constant",
      max_train_seconds=cpu_seconds, budget_clock="cpu", num_samples=0, verbose=2,
      seed=_SEED.value, checkpoint_every=1000, eval_importance_samples=1)
  workdir = workdir or tempfile.mkdtemp(prefix="tfgen_vae_bench_")
  metrics = train_lib.train_and_evaluate(config, workdir)
  return config, metrics, keras.models.load_model(os.path.join(workdir, "model.keras"))


def iwae_subset(model):
  """-log p(x) by k = --iwae_k importance samples, and -ELBO, on --iwae_images random
  test images; and the seconds the estimate took per 1,000 images."""
  import numpy as np
  test = np.load(os.path.join(_DATA_DIR.value, "binarized_mnist.npz"))["test"][..., None]
  rng = np.random.default_rng(_SEED.value)
  subset = test[rng.choice(len(test), _IWAE_IMAGES.value, replace=False)].astype(np.int32)
  log_p, elbo = [], []
  start = time.perf_counter()
  for i in range(0, len(subset), 50):
    log_p.append(model.log_prob(subset[i:i + 50], num_importance_samples=_IWAE_K.value,
                                seed=i).numpy())
  seconds = time.perf_counter() - start
  for i in range(0, len(subset), 500):
    elbo.append(model.elbo(subset[i:i + 500], seed=i).numpy())
  return {"iwae_k": _IWAE_K.value, "iwae_images": _IWAE_IMAGES.value,
          "iwae_nll_nats": round(-float(np.concatenate(log_p).mean()), 3),
          "test_neg_elbo_subset_nats": round(-float(np.concatenate(elbo).mean()), 3),
          "iwae_seconds_per_1000_images": round(seconds * 1000 / len(subset), 1)}


def labelled_mnist():
  """The labelled 8-bit MNIST test images binarized at 128 like the training data:
  9,000 to pick labels from ("train"), 1,000 held out ("test")."""
  from tfgen import data as data_lib
  return data_lib.load(f"npz:{os.path.join(_DATA_DIR.value, 'mnist_test.npz')}",
                       binarize="threshold", split_fractions=(0.9, 0.0, 0.1))


def main(argv):
  del argv
  import numpy as np
  import tensorflow as tf
  from tfgen import hparams_parser
  from tfgen import latents
  from tfgen import config as config_lib

  config, metrics, model = train(_MODEL.value, hparams_parser.parse(_HPARAMS.value),
                                 _CPU_SECONDS.value, _WORKDIR.value)
  subset = iwae_subset(model)
  test = np.load(os.path.join(_DATA_DIR.value, "binarized_mnist.npz"))["test"][..., None]
  config_default_k = config_lib.TrainConfig().outputs.eval_importance_samples
  start = time.perf_counter()
  for i in range(0, 1000, 250):  # The cost of train_main's default k.
    model.log_prob(test[i:i + 250].astype(np.int32), num_importance_samples=config_default_k)
  default_k_seconds = (time.perf_counter() - start) * 10

  # Linear probe on labelled 8-bit MNIST, binarized like the training data.
  labelled = labelled_mnist()
  train_x, train_y = latents.encode_dataset(model, labelled.dataset("train", 500))
  test_x, test_y = latents.encode_dataset(model, labelled.dataset("test", 500))

  def raw(split):
    pixels = [tf.reshape(e["image"], [len(e["image"]), -1]).numpy()
              for e in labelled.dataset(split, 500)]
    return np.concatenate(pixels).astype(np.float32)

  probe = latents.linear_probe(train_x, train_y, test_x, test_y, _PER_CLASS.value, _SEED.value)
  probe_raw = latents.linear_probe(raw("train"), train_y, raw("test"), test_y,
                                   _PER_CLASS.value, _SEED.value)
  result = {
      "benchmark": "vae_binarized_mnist",
      "model": config.model.name,
      "hparams": dict(model.hparams),
      "num_params": metrics["num_params"],
      "cpu_seconds": _CPU_SECONDS.value,
      "train_cpu_seconds": round(metrics["train_cpu_seconds"], 1),
      "train_seconds": round(metrics["train_seconds"], 1),
      "train_steps": metrics["train_steps"],
      "epochs": round(metrics["train_steps"] * config.optim.batch_size / 50000, 2),
      "test_neg_elbo_nats": round(metrics["test_neg_elbo_nats"], 3),
      "test_kl_nats": round(metrics["test_kl_nats"], 3),
      "active_latent_dims": metrics.get("active_latent_dims"),
      **subset,
      "default_k": config_default_k,
      "default_k_seconds_per_10000_images": round(default_k_seconds, 1),
      "probe_per_class": _PER_CLASS.value,
      "probe_accuracy_vae_features": round(probe, 4),
      "probe_accuracy_raw_pixels": round(probe_raw, 4),
      "cpu_count": os.cpu_count(),
  }
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
