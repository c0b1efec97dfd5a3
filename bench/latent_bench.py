"""Latent-variable models past the diagonal Gaussian, on binarized MNIST, and features
that initialize a classifier.

  python bench/latent_bench.py                              # every variant, 600 CPU s each
  python bench/latent_bench.py --variants=gaussian,vamp --cpu_seconds=300

Part 1: each variant of the fully connected `vae` (784-500-500, 20-d latent) trains on
the 50,000 training images of `../shared/data/binarized_mnist.npz` for the same
`--cpu_seconds` of process CPU time (`bench/vae_bench.py`'s training), then is scored:
  test_neg_elbo_nats   -ELBO on the whole test split (one z per image)
  iwae_nll_nats        -log p(x), k = --iwae_k importance samples, on --iwae_images
                       random test images; test_neg_elbo_subset_nats on the same images
Variants: gaussian (the default VAE), iaf (posterior="iaf", 2 flow steps), mixture
(prior="mixture", 100 components), vamp (prior="vamp", 100 pseudo-inputs),
categorical (latent="categorical", 20 variables of 10 categories).

Part 2 (with the gaussian variant): classifiers of labelled 8-bit MNIST binarized at 128
(9,000 images to draw labels from, 1,000 held out), with 10 and 100 labels per class:
the encoder's architecture trained from scratch, the linear probe (logistic regression
on posterior means), and the trained encoder fine-tuned (`tfgen.latents.classifier`);
held-out accuracy of each.

Prints one JSON object.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import vae_bench  # noqa: E402  (beside this file; defines the shared flags)

VARIANTS = {
    "gaussian": {},
    "iaf": {"posterior": "iaf"},
    "mixture": {"prior": "mixture"},
    "vamp": {"prior": "vamp"},
    "categorical": {"latent": "categorical"},
}
_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS), f"Of {list(VARIANTS)}.")
_TRANSFER_STEPS = flags.DEFINE_integer("transfer_steps", 500,
                                       "Gradient steps of each classifier (batch 50).")
_PER_CLASS_LIST = flags.DEFINE_list("transfer_per_class", ["10", "100"],
                                    "Labelled images per class in part 2.")


def _transfer(model, seed):
  """Held-out accuracies of the three classifiers for each number of labels per class."""
  import keras
  import numpy as np
  from tfgen import latents
  from tfgen import models

  labelled = vae_bench.labelled_mnist()

  def arrays(split):
    images, labels = zip(*[(e["image"].numpy(), e["label"].numpy())
                           for e in labelled.dataset(split, 500)])
    return np.concatenate(images).astype(np.int32), np.concatenate(labels)

  pool_x, pool_y = arrays("train")
  test_x, test_y = arrays("test")
  pool_f, test_f = (model.features(pool_x).numpy(), model.features(test_x).numpy())
  untrained = models.build(model.MODEL_NAME, model.image_shape, model.num_levels,
                           **model.hparams)
  out = {}
  for per_class in (int(n) for n in _PER_CLASS_LIST.value):
    rng = np.random.default_rng(seed)
    picks = np.concatenate([rng.choice(np.flatnonzero(pool_y == k), per_class, replace=False)
                            for k in range(10)])
    row = {"linear_probe": latents.linear_probe(pool_f, pool_y, test_f, test_y, per_class,
                                                seed)}
    for name, source in (("from_scratch", untrained), ("fine_tuned_encoder", model)):
      keras.utils.set_random_seed(seed)
      net = latents.classifier(source, 10, fine_tune=True)
      batch = min(50, len(picks))
      epochs = max(1, _TRANSFER_STEPS.value * batch // len(picks))
      net.fit(pool_x[picks], pool_y[picks], batch_size=batch, epochs=epochs, verbose=0)
      row[name] = float(net.evaluate(test_x, test_y, verbose=0, return_dict=True)["accuracy"])
    out[f"{per_class}_per_class"] = {k: round(v, 4) for k, v in row.items()}
  return out


def main(argv):
  del argv
  unknown = sorted(set(_VARIANTS.value) - set(VARIANTS))
  if unknown:
    raise app.UsageError(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}.")
  results = {"benchmark": "latent_models_binarized_mnist",
             "cpu_seconds": vae_bench._CPU_SECONDS.value, "variants": {}}
  for name in _VARIANTS.value:
    config, metrics, model = vae_bench.train("vae", VARIANTS[name],
                                             vae_bench._CPU_SECONDS.value)
    results["variants"][name] = {
        "hparams": VARIANTS[name],
        "num_params": metrics["num_params"],
        "train_steps": metrics["train_steps"],
        "epochs": round(metrics["train_steps"] * config.optim.batch_size / 50000, 2),
        "train_seconds": round(metrics["train_seconds"], 1),
        "test_neg_elbo_nats": round(metrics["test_neg_elbo_nats"], 3),
        "test_kl_nats": round(metrics["test_kl_nats"], 3),
        **vae_bench.iwae_subset(model),
    }
    print(json.dumps({name: results["variants"][name]}), file=sys.stderr, flush=True)
    if name == "gaussian":
      results["transfer"] = _transfer(model, vae_bench._SEED.value)
  results["cpu_count"] = os.cpu_count()
  print(json.dumps(results))


if __name__ == "__main__":
  app.run(main)
