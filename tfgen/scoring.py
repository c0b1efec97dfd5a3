"""Per-image likelihood scores for outlier detection, and how well they separate.

A likelihood model scores an image by how surprising it is:

  score(x) = -log p(x) / (H * W * C * ln 2)      bits per dimension

exact for autoregressive models, the importance-weighted estimate with k samples for
VAEs (`VAE.log_prob`). A conditional model scores unlabelled images by the marginal
over classes with a uniform class prior,

  log p(x) = logsumexp_y [log p(x | y)] - log N,

so it needs no label of an image that may belong to no class at all. Larger scores
mean more anomalous; `auroc` measures how well a score ranks outliers above inliers.

Glossary of tensor shapes:
  B: batch.  H, W, C: image shape.  N: number of classes.
  n_in, n_out: numbers of inlier and outlier images.

References:
  [1] Eric Nalisnick, Akihiro Matsukawa, Yee Whye Teh, Dilan Gorur, Balaji
      Lakshminarayanan. Do Deep Generative Models Know What They Don't Know?
      ICLR 2019. https://arxiv.org/abs/1810.09136 (likelihoods can rank some
      outliers *above* the training data: report the AUROC, don't assume it).
"""

import csv
import math

import numpy as np
import tensorflow as tf

from tfgen import distributions
from tfgen.models import api
from tfgen.models import base

# Synthetic outlier sets made from in-distribution images (`outlier_images`).
OUTLIER_KINDS = ("noise", "flip", "rotate", "invert")


def log_prob(model, images, labels=None, num_importance_samples=250, seed=0):
  """log p(x) (or log p(x | y) given labels) of each image in nats, float64 `[B]`.

  Args:
    model: a tfgen likelihood model (autoregressive or VAE).
    images: integer `[B, H, W, C]` levels.
    labels: int `[B]` for a conditional model, or None to marginalize over classes.
    num_importance_samples: k of a VAE's estimate; exact likelihoods ignore it.
    seed: seed of a VAE's importance samples.

  Raises:
    ValueError: for a model without a likelihood (an autoencoder), or bad images.
  """
  if not api.implements(model, api.LikelihoodModel):
    raise ValueError(
        f"Model {model.name!r} ({type(model).__name__}) has no likelihood to score images "
        "with: an autoencoder is not a density model. Score with a PixelCNN-family "
        "model or a VAE.")
  kwargs = model.likelihood_options(num_importance_samples, seed)
  if model.num_classes is None or labels is not None:
    return model.log_prob(images, labels, **kwargs).numpy().astype(np.float64)
  batch = int(tf.convert_to_tensor(images).shape[0])
  per_class = np.stack([model.log_prob(images, np.full(batch, y, np.int32), **kwargs).numpy()
                        for y in range(model.num_classes)]).astype(np.float64)  # [N, B]
  top = per_class.max(0)
  return top + np.log(np.exp(per_class - top).sum(0)) - math.log(model.num_classes)


def score_dataset(model, dataset, num_importance_samples=250, seed=0, use_labels=True,
                  max_images=None):
  """Scores every image of a `tfgen.data` pipeline.

  Args:
    model: a tfgen likelihood model.
    dataset: a batched `tf.data.Dataset` of {"image", optional "label"}.
    num_importance_samples: k for VAEs.
    seed: base seed of a VAE's importance samples (batch b uses seed + b).
    use_labels: condition a conditional model on the dataset's labels; False (or a
      dataset without labels) marginalizes over classes.
    max_images: stop after this many images.

  Returns:
    dict of numpy arrays `[n]`: "log_prob_nats", "bits_per_dim" and, where the data
    have labels, "label".
  """
  log_p, labels_seen = [], []
  count = 0
  for step, element in enumerate(dataset):
    images, labels = base.unpack_inputs(element)
    if labels is not None:
      labels_seen.append(labels.numpy())
    condition = labels if (use_labels and model.num_classes is not None) else None
    log_p.append(log_prob(model, images, condition, num_importance_samples, seed + step))
    count += len(log_p[-1])
    if max_images is not None and count >= max_images:
      break
  log_p = np.concatenate(log_p) if log_p else np.zeros([0])
  out = {"log_prob_nats": log_p,
         "bits_per_dim": distributions.bits_per_dim(-log_p, model.num_subpixels)}
  if labels_seen:
    out["label"] = np.concatenate(labels_seen)
  if max_images is not None:
    out = {k: v[:max_images] for k, v in out.items()}
  return out


def auroc(inlier_scores, outlier_scores):
  """Area under the ROC curve of a score where larger means more anomalous.

    AUROC = P(s_out > s_in) + 1/2 P(s_out = s_in)

  over independent random pairs, computed from average ranks (the Mann-Whitney U
  statistic), so ties count one half. 1 separates perfectly, 0.5 is chance, and
  below 0.5 the model finds the outliers *more* likely than the inliers.

  Args:
    inlier_scores: float `[n_in]`.
    outlier_scores: float `[n_out]`.

  Returns:
    float in [0, 1].

  Raises:
    ValueError: for an empty set or non-finite scores.
  """
  s_in = np.asarray(inlier_scores, np.float64).ravel()
  s_out = np.asarray(outlier_scores, np.float64).ravel()
  if not len(s_in) or not len(s_out):
    raise ValueError("AUROC needs at least one inlier and one outlier score.")
  if not (np.isfinite(s_in).all() and np.isfinite(s_out).all()):
    raise ValueError("AUROC needs finite scores; some are NaN or infinite.")
  both = np.concatenate([s_in, s_out])
  order = np.argsort(both, kind="mergesort")
  ranks = np.empty(len(both), np.float64)
  ranks[order] = np.arange(1, len(both) + 1)
  # Average the ranks of tied values.
  values, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
  sums = np.bincount(inverse, weights=ranks)
  ranks = (sums / counts)[inverse]
  u = ranks[len(s_in):].sum() - len(s_out) * (len(s_out) + 1) / 2.0
  return float(u / (len(s_in) * len(s_out)))


def outlier_images(images, kind, num_levels, seed=0):
  """Synthetic outliers made from in-distribution images `[B, H, W, C]` of levels.

  Args:
    images: integer numpy `[B, H, W, C]`.
    kind: "noise" (independent uniform levels), "flip" (mirrored left-right: digits
      become letter-like shapes with the same pixel statistics), "rotate" (90 degrees;
      needs H = W) or "invert" (level k -> K - 1 - k).
    num_levels: K.
    seed: seed of "noise".

  Returns:
    integer numpy `[B, H, W, C]`.

  Raises:
    ValueError: for an unknown kind, or "rotate" on non-square images.
  """
  images = np.asarray(images)
  if kind == "noise":
    return np.random.default_rng(seed).integers(0, num_levels, images.shape).astype(images.dtype)
  if kind == "flip":
    return images[:, :, ::-1].copy()
  if kind == "rotate":
    if images.shape[1] != images.shape[2]:
      raise ValueError(f"'rotate' needs square images, got {images.shape[1:3]}.")
    return np.rot90(images, k=1, axes=(1, 2)).copy()
  if kind == "invert":
    return (num_levels - 1 - images).astype(images.dtype)
  raise ValueError(f"Unknown outlier kind {kind!r}; choose one of {OUTLIER_KINDS}.")


def _subset(data, splits, batch_size, max_images, seed):
  """Images (and labels) of some splits: all, or a seeded random subset of `max_images`.

  A random subset, not the first images: stored splits may be sorted by class.
  """
  images, labels = [], []
  for split in splits:
    for element in data.dataset(split, batch_size):
      images.append(element["image"].numpy())
      if "label" in element:
        labels.append(element["label"].numpy())
  images = np.concatenate(images)
  labels = np.concatenate(labels) if labels else None
  if max_images is not None and max_images < len(images):
    keep = np.sort(np.random.default_rng(seed).choice(len(images), max_images, replace=False))
    images, labels = images[keep], None if labels is None else labels[keep]
  return images, labels


def _batches(images, labels, batch_size):
  element = {"image": images} if labels is None else {"image": images, "label": labels}
  return tf.data.Dataset.from_tensor_slices(element).batch(batch_size)


def score_sets(model, data, split="test", kinds=OUTLIER_KINDS, outlier_data=None,
               batch_size=256, num_importance_samples=250, max_images=None, seed=0):
  """Scores a split, synthetic outliers made from it, and optionally another dataset.

  Every set is scored by the marginal log p(x) (no labels), so inliers and outliers
  are treated alike even by a conditional model.

  Args:
    model: a tfgen likelihood model.
    data: the in-distribution `tfgen.data.ImageData`, preprocessed for the model.
    split: its split to score.
    kinds: synthetic outlier sets (`OUTLIER_KINDS`) made from the split's images.
    outlier_data: an `ImageData` of real outliers (same shape and levels), or None;
      every split of it is scored (outliers are never trained on).
    batch_size: images per batch.
    num_importance_samples: k for VAEs.
    max_images: score a random subset (drawn with `seed`) of this many images per set;
      None scores every image.
    seed: seed of the subsets, the synthetic noise and a VAE's importance samples.

  Returns:
    `(scores, summary)`: {set name: `score_dataset` dict}, and {set name: {"images",
    "mean_bits_per_dim", and for outlier sets "auroc" against the inliers}}, the
    inlier set named by `split`.

  Raises:
    ValueError: for outlier data whose images do not match the model.
  """
  if outlier_data is not None:
    info = outlier_data.info
    if tuple(info.image_shape) != tuple(model.image_shape) or info.num_levels != model.num_levels:
      raise ValueError(
          f"Outlier dataset {info.name!r} has images {info.image_shape} with "
          f"{info.num_levels} levels, but the model takes {model.image_shape} with "
          f"{model.num_levels}: preprocess it the same way (image_size, binarize, "
          "reduce_levels).")
  score = lambda images, labels: score_dataset(
      model, _batches(images, labels, batch_size), num_importance_samples, seed,
      use_labels=False)
  inliers, labels = _subset(data, [split], batch_size, max_images, seed)
  scores = {split: score(inliers, labels)}
  for kind in kinds:
    scores[kind] = score(outlier_images(inliers, kind, model.num_levels, seed), None)
  if outlier_data is not None:
    splits = [k for k, size in sorted(info.split_sizes.items()) if size]
    scores[info.name] = score(*_subset(outlier_data, splits, batch_size, max_images, seed))
  summary = {}
  for name, s in scores.items():
    summary[name] = {"images": int(len(s["bits_per_dim"])),
                     "mean_bits_per_dim": float(np.mean(s["bits_per_dim"]))}
    if name != split:
      summary[name]["auroc"] = auroc(scores[split]["bits_per_dim"], s["bits_per_dim"])
  return scores, summary


def write_csv(path, scores):
  """Writes {set name: `score_dataset` dict} as one CSV.

  Columns: set, index (within the set), label (empty where unknown), log_prob_nats,
  bits_per_dim.
  """
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["set", "index", "label", "log_prob_nats", "bits_per_dim"])
    for name, s in scores.items():
      labels = s.get("label")
      for i in range(len(s["log_prob_nats"])):
        writer.writerow([name, i, "" if labels is None else int(labels[i]),
                         f"{s['log_prob_nats'][i]:.6f}", f"{s['bits_per_dim'][i]:.6f}"])
