"""Checks every autoregressive model must pass; model test files call these.

- `causality_leaks`: the gradient of the parameters of subpixel t with respect to the
  input is exactly zero at t and at every later subpixel (raster, then channel order).
- `pixel_causality_leaks`: the same per pixel, for heads whose parameters serve every
  channel of a pixel: zero at every subpixel of the pixel and of later pixels.
- `total_probability`: exp(log p(x)) summed over every image of a tiny shape is 1.
- `sampler_p_value`: a chi-square test that the sampler draws images at the rate
  exp(log p(x)).
- `cached_sampler_images`: the cached sampler draws exactly the naive sampler's images.

Glossary of tensor shapes: B batch, H/W height/width, C colours, P params per pixel,
T = H*W*C subpixels.
"""

import itertools

import numpy as np
import tensorflow as tf


def randomize(model, seed=0, scale=1.0):
  """Adds Gaussian noise to every weight, biases included.

  Fresh models have zero biases and near-uniform outputs; noise makes probabilities far
  from uniform (normalization tests bite) and keeps ReLUs from being dead by chance
  (causality tests see every real dependence).
  """
  rng = np.random.default_rng(seed)

  def std(w):  # He-style: unit-scale activations, so logits stay of order one.
    return scale / np.sqrt(np.prod(w.shape[:-1])) if w.ndim > 1 else scale

  model.set_weights([w + rng.normal(0, std(w), w.shape) for w in model.get_weights()])
  return model


def random_images(model, seed=0):
  """One image of the model's shape, levels uniform at random: int32 `[H, W, C]`."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, model.num_levels, model.image_shape).astype(np.int32)


def cached_sampler_images(model, num, seeds=(0,)):
  """Asserts the cached sampler draws exactly the naive sampler's images for each seed,
  and so do row chunks (the progress bar, which rebuild the caches from the rows
  already drawn) for the first; a class-conditional model draws classes 0, 1, 2, ...
  in turn. Returns the naive images of the first seed."""
  assert model.supports_fast_sampling
  labels = np.arange(num) % model.num_classes if model.num_classes else None
  naive = [model.sample(num, seed=s, labels=labels, fast=False).numpy() for s in seeds]
  for seed, images in zip(seeds, naive):
    np.testing.assert_array_equal(model.sample(num, seed=seed, labels=labels,
                                               fast=True).numpy(), images)
  np.testing.assert_array_equal(
      model.sample(num, seed=seeds[0], labels=labels, progress=True).numpy(), naive[0])
  return naive[0]


def _params_of_subpixel(model, params, t):
  """The parameters that drive subpixel t (a channel's slice for channel-major heads)."""
  _, w, c = model.image_shape
  i, j, ch = t // (w * c), (t // c) % w, t % c
  per_channel = params.shape[-1] // c
  return params[i, j, ch * per_channel:(ch + 1) * per_channel]


def _params_of_pixel(model, params, p):
  """All the parameters of pixel p (raster order), for heads whose parameters serve
  every channel of a pixel (the within-pixel dependence lives in the head)."""
  w = model.image_shape[1]
  return params[p // w, p % w]


def input_gradients(model, images, labels=None, per_pixel=False, condition=None):
  """Gradient of each subpixel's parameters w.r.t. every input subpixel.

  The image is replicated T times; copy t differentiates only subpixel t's parameters,
  so one backward pass gives all T gradients (copies do not interact).

  Args:
    model: an autoregressive model.
    images: int `[H, W, C]`, the input the gradients are taken at.
    labels: an int class label for a conditional model, else None.
    per_pixel: differentiate all parameters of each pixel (H * W rows) instead of
      each subpixel's channel-major slice (T rows).
    condition: a float vector `[D]` for a model built with `condition_dim`, else None.

  Returns:
    numpy `[T, T]` (`[H * W, T]` with `per_pixel`): entry [t, s] is the summed
    |gradient| of the params of subpixel (or pixel) t with respect to input
    subpixel s (flattened in generation order).
  """
  h, w, c = model.image_shape
  num = h * w * c
  rows = h * w if per_pixel else num
  x = tf.cast(tf.repeat(tf.convert_to_tensor(images)[None], rows, axis=0), tf.float32)
  extra = {}
  if labels is not None:
    extra["label"] = tf.fill([rows], labels)
  if condition is not None:
    extra["condition"] = tf.repeat(tf.constant(condition, tf.float32)[None], rows, axis=0)
  select = _params_of_pixel if per_pixel else _params_of_subpixel
  with tf.GradientTape() as tape:
    tape.watch(x)
    inputs = {"image": x, **extra}
    params = model(inputs, training=False)  # [rows, H, W, P]
    width = params.shape[-1] // (1 if per_pixel else c)
    # Random weights per parameter, so no cancellation can hide a dependence.
    target = tf.add_n([
        tf.reduce_sum(select(model, params[t], t) *
                      tf.random.stateless_normal([width], seed=[t, 7]))
        for t in range(rows)])
  grads = tape.gradient(target, x)  # [rows, H, W, C]
  return np.abs(grads.numpy().reshape(rows, num))


def causality_leaks(model, images, labels=None, condition=None):
  """Pairs (t, s) with s >= t where subpixel t's params depend on input subpixel s."""
  g = input_gradients(model, images, labels, condition=condition)
  t_idx, s_idx = np.nonzero(np.triu(g) != 0.0)  # upper triangle incl. diagonal: s >= t
  return list(zip(t_idx.tolist(), s_idx.tolist()))


def pixel_causality_leaks(model, images, labels=None, condition=None):
  """Pairs (p, s) where the params of pixel p depend on an input subpixel s of pixel
  p itself or a later one: for models whose per-pixel parameters serve all channels
  of the pixel (PixelCNN++), which must see only the pixels strictly before."""
  g = input_gradients(model, images, labels, per_pixel=True, condition=condition)  # [H*W, T]
  c = model.image_shape[-1]
  pixel_of = np.arange(g.shape[1]) // c  # [T]
  p_idx, s_idx = np.nonzero((g != 0.0) & (pixel_of[None, :] >= np.arange(g.shape[0])[:, None]))
  return list(zip(p_idx.tolist(), s_idx.tolist()))


def all_images(image_shape, num_levels):
  """Every image of `image_shape` with `num_levels` levels: int32 `[K**T, H, W, C]`."""
  num = int(np.prod(image_shape))
  grid = np.array(list(itertools.product(range(num_levels), repeat=num)), np.int32)
  return grid.reshape((-1,) + tuple(image_shape))


def total_probability(model, labels=None):
  """sum_x p(x) over all images of the model's (tiny) shape, in float64."""
  images = all_images(model.image_shape, model.num_levels)
  lab = None if labels is None else np.full(len(images), labels, np.int32)
  log_p = model.log_prob(images, lab).numpy().astype(np.float64)
  return float(np.exp(log_p).sum())


# Significance level of the sampler tests: a correct sampler fails one in a thousand
# seeds; the seeds are fixed, so a pass is reproducible, and a broken sampler's p-values
# are far below it.
ALPHA = 1e-3


def chi_square_p_value(counts, p):
  """Pearson's chi-square goodness-of-fit p-value of `counts` `[N]` against `p` `[N]`.

  Cells with an expected count below 5 are pooled into one (the chi-square
  approximation needs it), and that pooled cell takes part in the test.
  """
  from scipy import stats  # pylint: disable=import-outside-toplevel
  counts, p = np.asarray(counts, np.float64), np.asarray(p, np.float64)
  p = p / p.sum()
  expected = counts.sum() * p
  small = expected < 5
  obs = np.append(counts[~small], counts[small].sum())
  exp = np.append(expected[~small], expected[small].sum())
  if exp[-1] == 0:
    obs, exp = obs[:-1], exp[:-1]
  return float(stats.chisquare(obs, exp).pvalue)


def image_counts(images, num_levels):
  """How often each image of the enumeration order of `all_images` occurs, `[K**T]`."""
  flat = np.asarray(images).reshape(len(images), -1)
  index = np.zeros(len(flat), np.int64)
  for col in range(flat.shape[1]):
    index = index * num_levels + flat[:, col]
  return np.bincount(index, minlength=num_levels ** flat.shape[1])


def sampler_p_value(model, num, seed, labels=None, fast=None):
  """The chi-square p-value of `num` samples against exp(log p(x)) over every image.

  A correct sampler gives p-values uniform in [0, 1]: assert `> ALPHA`.
  """
  images = all_images(model.image_shape, model.num_levels)
  lab = None if labels is None else np.full(len(images), labels, np.int32)
  p = np.exp(model.log_prob(images, lab).numpy().astype(np.float64))
  samples = model.sample(num, seed=seed, fast=fast,
                         labels=None if labels is None else np.full(num, labels)).numpy()
  return chi_square_p_value(image_counts(samples, model.num_levels), p)
