"""Using the latent space of a trained autoencoder or VAE.

Interpolation, latent traversals (ordered by how much each dimension is used),
editing, 2-D code scatter plots (of codes and of principal components) and decoded
manifolds, and encoder features for a downstream classifier: a linear probe, or a
Keras classifier built on the encoder. Every function takes a
`tfgen.models.api.LatentModel` (autoencoder or VAE) and returns arrays (`classifier` a
Keras model); `tfgen.images` turns them into pictures.

Glossary of tensor shapes:
  B: batch.  H, W, C: image shape.  D: latent dimensions.
  S: steps along a path or a traversal.  R: rows of a grid.
"""

import io

import numpy as np
from scipy import stats

from tfgen.models import api
from tfgen.models import base


def _labels_for(model, labels, num):
  if model.num_classes is None:
    return None
  if labels is None:
    raise ValueError(
        f"Model {model.name!r} is class-conditional: pass labels (an int or an array of "
        f"{num} ints in [0, {model.num_classes})).")
  return np.broadcast_to(np.asarray(labels, np.int32), (num,))


def _kl_scores(model):
  """Whether `model`'s dimensions are ranked by their KL (see `code_statistics`)."""
  return (api.implements(model, api.VariationalModel) and model.prior_is_standard_normal
          and model.posterior_is_diagonal_gaussian)


def code_statistics(model, dataset, max_images=2000):
  """Per-dimension use of the latent space over (up to `max_images` of) a dataset.

  Returns:
    `(score [D], mean [D], std [D])` of the codes (`features`: posterior means for a
    Gaussian VAE). The score ranks dimensions by use: for a VAE with a diagonal
    Gaussian posterior and the standard normal prior the mean KL(q(z_d | x) || N(0, 1))
    in nats (unused, collapsed dimensions sit near 0); for other latent models the
    variance of the code.
  """
  codes, kls, seen = [], [], 0
  for element in dataset:
    images, labels = base.unpack_inputs(element)
    labels = labels if model.num_classes else None  # Data may have labels the model ignores.
    if _kl_scores(model):  # One encoder pass: the codes are the posterior means.
      q = model.encode(images, labels)
      kls.append(model.dimension_kl(q).numpy())  # [B, D]
      codes.append(q.mean().numpy())  # [B, D]
    else:
      codes.append(model.features(images, labels).numpy())  # [B, D]
    seen += len(codes[-1])
    if seen >= max_images:
      break
  codes = np.concatenate(codes)  # [N, D]
  score = np.concatenate(kls).mean(0) if kls else codes.var(0)
  return score, codes.mean(0), codes.std(0)


def interpolate(model, image_a, image_b, steps=8, labels=None):
  """Decoded images along the straight line between the codes of two images.

  Args:
    model: a latent model.
    image_a, image_b: integer `[H, W, C]` images.
    steps: S, including both ends.
    labels: the class of a conditional model (one int, used along the whole path).

  Returns:
    float `[S, H, W, C]` mean images in levels.
  """
  labels2 = _labels_for(model, labels, 2)
  codes = model.features(np.stack([image_a, image_b]), labels2).numpy()  # [2, D]
  t = np.linspace(0.0, 1.0, steps)[:, None]  # [S, 1]
  path = (1.0 - t) * codes[0] + t * codes[1]  # [S, D]
  return model.decode_mean(path.astype(np.float32), _labels_for(model, labels, steps)).numpy()


def traversal(model, dims, values, base_code=None, labels=None):
  """Varies one latent dimension at a time with the others fixed.

  Args:
    model: a latent model.
    dims: the R dimensions to traverse, one grid row each (e.g. ordered by
      `code_statistics` score so the informative ones come first).
    values: the S values every dimension takes `[S]`, or per row `[R, S]`.
    base_code: float `[D]`, the fixed code (default zeros: the prior mean of a VAE).
    labels: the class of a conditional model.

  Returns:
    float `[R, S, H, W, C]` mean images in levels.
  """
  values = np.broadcast_to(np.asarray(values, np.float32), (len(dims), np.shape(values)[-1]))
  code = np.zeros(model.latent_dim, np.float32) if base_code is None else np.asarray(
      base_code, np.float32)
  steps = values.shape[1]
  codes = np.repeat(code[None, None], len(dims), 0).repeat(steps, 1)  # [R, S, D]
  for row, dim in enumerate(dims):
    codes[row, :, dim] = values[row]
  flat = codes.reshape(-1, model.latent_dim)
  images = model.decode_mean(flat, _labels_for(model, labels, len(flat))).numpy()
  return images.reshape((len(dims), steps) + model.image_shape)


def default_traversal(model, dataset, max_rows=10, steps=9, labels=None, statistics=None):
  """The traversal `train_main.py` draws: the `max_rows` most used dimensions first.

  The dimensions of a VAE with the standard normal prior run over -3..3 around its
  mean; those of other latent models over their code mean +- 3 standard deviations of
  the codes of `dataset`.

  Args:
    statistics: `code_statistics(model, dataset)` where the caller has it already (a
      pass of the encoder over `dataset` saved); computed here otherwise.

  Returns:
    `(images [R, S, H, W, C] float levels, dims [R], scores [R])`.
  """
  score, mean, std = statistics or code_statistics(model, dataset)
  dims = np.argsort(-score)[:max_rows]
  t = np.linspace(-3.0, 3.0, steps)
  if api.implements(model, api.VariationalModel) and model.prior_is_standard_normal:
    values, base_code = np.broadcast_to(t, (len(dims), steps)), None
  else:
    values, base_code = mean[dims, None] + std[dims, None] * t, mean
  return traversal(model, dims, values, base_code, labels), dims, score[dims]


def edit(model, images, changes, labels=None, relative=False):
  """Encodes images, sets (or shifts) chosen latent dimensions, decodes.

  Args:
    model: a latent model.
    images: integer `[B, H, W, C]`.
    changes: {dimension: value}; the value replaces the code's coordinate, or is added
      to it with `relative=True`.
    labels: int `[B]` for a conditional model.
    relative: add instead of replace.

  Returns:
    `(reconstructions, edited)`, float `[B, H, W, C]` mean images in levels each.

  Raises:
    ValueError: for a dimension outside `[0, D)`.
  """
  bad = [d for d in changes if not 0 <= int(d) < model.latent_dim]
  if bad:
    raise ValueError(f"Latent dimensions {bad} are outside [0, {model.latent_dim}).")
  codes = model.features(images, labels).numpy()  # [B, D]
  edited = codes.copy()
  for dim, value in changes.items():
    edited[:, int(dim)] = edited[:, int(dim)] + value if relative else value
  return (model.decode_mean(codes, labels).numpy(),
          model.decode_mean(edited.astype(np.float32), labels).numpy())


def manifold(model, size=15, labels=None):
  """Decoded mean images on a `size x size` grid of a 2-D latent space.

  The grid points are Gaussian quantiles of evenly spaced probabilities (Kingma and
  Welling 2014, figure 4), so they cover the prior's mass evenly.

  Returns:
    float `[size, size, H, W, C]`; rows run down z_2, columns along z_1.

  Raises:
    ValueError: for a latent space that is not 2-D.
  """
  if model.latent_dim != 2:
    raise ValueError(f"A manifold grid needs a 2-D latent space; this one has "
                     f"{model.latent_dim} dimensions (build with latent_dim=2).")
  q = stats.norm.ppf(np.linspace(0.5 / size, 1.0 - 0.5 / size, size)).astype(np.float32)
  z1, z2 = np.meshgrid(q, q[::-1])
  codes = np.stack([z1.ravel(), z2.ravel()], -1)  # [size*size, 2]
  images = model.decode_mean(codes, _labels_for(model, labels, len(codes))).numpy()
  return images.reshape((size, size) + model.image_shape)


def scatter_png(codes, labels=None, label_names=None, title="Test codes", axis="z"):
  """A PNG scatter plot of 2-D codes `[N, 2]`, coloured by label; axes `{axis}_1`, `_2`."""
  import matplotlib  # Imported here: only plots need it.
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  codes = np.asarray(codes)
  if codes.ndim != 2 or codes.shape[1] != 2:
    raise ValueError(f"A scatter plot needs 2-D codes [N, 2], got shape {codes.shape}.")
  fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
  if labels is None:
    ax.scatter(codes[:, 0], codes[:, 1], s=3, alpha=0.6)
  else:
    labels = np.asarray(labels)
    for k in np.unique(labels):
      name = label_names[k] if label_names is not None else str(k)
      pick = labels == k
      ax.scatter(codes[pick, 0], codes[pick, 1], s=3, alpha=0.6, label=name)
    ax.legend(markerscale=4, fontsize=8, loc="best")
  ax.set_xlabel(f"{axis}_1")
  ax.set_ylabel(f"{axis}_2")
  ax.set_title(title)
  buf = io.BytesIO()
  fig.savefig(buf, format="png", bbox_inches="tight")
  plt.close(fig)
  return buf.getvalue()


def encode_dataset(model, dataset, max_images=None):
  """Features (AE codes or VAE posterior means) and labels of a dataset.

  Returns:
    `(features [N, D], labels [N] or None)` as numpy arrays.
  """
  features, labels, seen = [], [], 0
  for element in dataset:
    images, y = base.unpack_inputs(element)
    features.append(model.features(images, y if model.num_classes else None).numpy())
    if y is not None:
      labels.append(np.asarray(y))
    seen += len(features[-1])
    if max_images and seen >= max_images:
      break
  features = np.concatenate(features)[:max_images]
  labels = np.concatenate(labels)[:max_images] if labels else None
  return features, labels


def classifier(model, num_classes, fine_tune=False, learning_rate=1e-3):
  """A Keras classifier whose body is (a copy of) the trained encoder of `model`.

  The lecture's use of an autoencoder: features to initialize a supervised model,
  trained for the final task, sometimes with few labels. The network is

    images (int levels [B, H, W, C]) -> scaled to [-1, 1] -> encoder -> code -> Dense

  where the code is the encoder's first D outputs: the autoencoder's code, a Gaussian
  VAE's posterior mean mu (before any flow), or categorical latents' logits. The body
  is a copy, so training the classifier never changes `model`.

  Args:
    model: an unconditional `tfgen.models.api.LatentModel` (autoencoder or VAE).
    num_classes: outputs of the final layer (logits).
    fine_tune: train the encoder's weights too; by default they are frozen and only the
      final layer trains (a linear probe trained by gradient descent).
    learning_rate: of the Adam optimizer it is compiled with.

  Returns:
    A compiled `keras.Model` from int images to `[B, num_classes]` logits (sparse
    categorical cross-entropy, `accuracy` metric), for `fit` on labelled images. Its
    body is the layer named "encoder".

  Raises:
    ValueError: for a class-conditional model (its encoder reads the label it would
      have to predict) or a model without a latent code.
  """
  import keras  # pylint: disable=g-import-not-at-top
  if not api.implements(model, api.LatentModel):
    raise ValueError(f"Model {model.name!r} has no encoder; a classifier body needs an "
                     "autoencoder or a VAE.")
  if model.num_classes is not None:
    raise ValueError(
        f"Model {model.name!r} is class-conditional: its encoder reads the label a "
        "classifier would predict. Train an unconditional autoencoder or VAE for features.")
  if int(num_classes) < 2:
    raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
  body = keras.models.clone_model(model.encoder)
  body.set_weights(model.encoder.get_weights())
  body.trainable = bool(fine_tune)
  images = keras.Input(model.image_shape, dtype="int32", name="image")
  x = keras.layers.Rescaling(2.0 / (model.num_levels - 1), offset=-1.0)(images)
  if model.hparams["architecture"] == "dense":
    x = keras.layers.Flatten()(x)
  code = body(x)[:, :model.latent_dim]  # [B, D]
  logits = keras.layers.Dense(int(num_classes), name="logits")(code)
  net = keras.Model(images, logits, name=f"{model.name}_classifier")
  net.compile(optimizer=keras.optimizers.Adam(learning_rate),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
  return net


def principal_components(dataset, max_images=None, num_components=2):
  """The images of a dataset projected on the first principal components of their pixels.

  The linear baseline of a 2-D code: PCA keeps the directions of largest pixel variance,
  where an autoencoder learns a non-linear code (Hinton and Salakhutdinov 2006, figure
  3). The images are taken in the order `encode_dataset` takes them, so the two
  scatter plots show the same images.

  Returns:
    `(components [N, num_components], labels [N] or None)` as numpy arrays.
  """
  pixels, labels, seen = [], [], 0
  for element in dataset:
    images, y = base.unpack_inputs(element)
    pixels.append(np.reshape(np.asarray(images, np.float64), (len(images), -1)))
    if y is not None:
      labels.append(np.asarray(y))
    seen += len(pixels[-1])
    if max_images and seen >= max_images:
      break
  x = np.concatenate(pixels)[:max_images]  # [N, H*W*C]
  x = x - x.mean(0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)  # Rows of vt: principal directions.
  labels = np.concatenate(labels)[:max_images] if labels else None
  return (x @ vt[:num_components].T).astype(np.float32), labels


def linear_probe(train_x, train_y, test_x, test_y, per_class=100, seed=0):
  """Accuracy of a logistic-regression classifier trained on few labelled examples.

  Args:
    train_x, train_y: features `[N, F]` and labels `[N]` to pick the training set from.
    test_x, test_y: held-out features and labels.
    per_class: labelled examples per class (drawn with `seed`).

  Returns:
    Test accuracy in [0, 1].
  """
  from sklearn import linear_model, preprocessing, pipeline
  rng = np.random.default_rng(seed)
  picks = []
  for k in np.unique(train_y):
    members = np.flatnonzero(train_y == k)
    picks.append(rng.choice(members, min(per_class, len(members)), replace=False))
  picks = np.concatenate(picks)
  classifier = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                      linear_model.LogisticRegression(max_iter=2000))
  classifier.fit(train_x[picks], train_y[picks])
  return float(classifier.score(test_x, test_y))
