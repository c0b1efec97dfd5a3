"""Image completion: the missing subpixels of an image drawn given the observed ones.

A mask marks the observed subpixels ("keep"); the rest are missing. An autoregressive
model factorises p(x) = prod_t p(x_t | x_<t) over the generation order (raster order,
then channels), and completion walks that order, keeping each observed subpixel and
drawing each missing one from p(x_t | x_<t) (`tfgen.sampling.clamped_noise`: any
sampler, naive, cached or exported, does this when the observed subpixels' noise is
`KEEP`).

When the missing subpixels are a suffix of the generation order (the bottom rows, the
right part of the last observed row), every missing subpixel comes after every
observed one, so

  p(x_missing | x_observed) = prod_{t missing} p(x_t | x_<t)

and the walk is an exact sample; its log-likelihood is the sum of those conditionals
(`conditional_log_prob`). For any other mask the walk ignores the observations that
come after a missing subpixel: it samples a distribution other than
p(x_missing | x_observed), and that conditional has no closed form (it needs p of the
observed part, a sum over the missing subpixels before it). `gibbs` then refines the
walk's images with Gibbs sweeps: each missing subpixel in turn is redrawn from

  p(x_t | x_-t) = p(x_t, x_-t) / sum_k p(x_t = k, x_-t),

the K candidate images scored by one batched `log_prob`. The chain leaves
p(x_missing | x_observed) invariant and converges to it; each sweep costs
K * (missing positions) image likelihoods per image, bounded by
`MAX_GIBBS_IMAGE_EVALUATIONS` per call.

Glossary of tensor shapes:
  S: completions per image.  B: images.  N = S * B.  H, W, C: image height, width,
  channels.  T = H * W * C: subpixels in the generation order.  K: levels.
"""

import numpy as np
import tensorflow as tf

from tfgen import distributions
from tfgen import sampling

# The most image likelihoods one call's Gibbs sweeps may evaluate (sweeps x missing
# positions x K x images): about an hour of a default 28x28 PixelCNN's forward passes
# on a 2-core CPU. Past it a call is refused before it starts, with its cost.
MAX_GIBBS_IMAGE_EVALUATIONS = 10 ** 6


def keep_mask(mask, image_shape, batch):
  """The observed subpixels as bool `[B, H, W, C]`, from a user's mask.

  Args:
    mask: bool or 0/1 integers, of the images' shape `[B, H, W, C]`, or `[B, H, W]`
      to mark whole pixels (broadcast over the channels). True (1) = observed.
    image_shape: `(H, W, C)`.
    batch: B.

  Returns:
    bool `[B, H, W, C]`.

  Raises:
    ValueError: for another shape or dtype, values other than 0 and 1, or an image
      with nothing missing or nothing observed.
  """
  mask = np.asarray(mask)
  shape = (batch,) + tuple(image_shape)
  if not (mask.dtype == bool or np.issubdtype(mask.dtype, np.integer)):
    raise ValueError(
        f"mask must be boolean or 0/1 integers (True/1 = observed, kept), got dtype "
        f"{mask.dtype}.")
  if mask.shape == shape[:-1]:
    mask = np.broadcast_to(mask[..., None], shape)
  if mask.shape != shape:
    raise ValueError(
        f"mask must have the images' shape {shape}, or {shape[:-1]} to mark whole pixels, "
        f"got {mask.shape}.")
  if mask.dtype != bool:
    if mask.size and (mask.min() < 0 or mask.max() > 1):
      raise ValueError(f"mask must hold 0 (missing) and 1 (observed), got values in "
                       f"[{mask.min()}, {mask.max()}].")
    mask = mask.astype(bool)
  flat = mask.reshape(batch, -1)
  for what, bad in (("nothing missing (use log_prob to score it)", flat.all(axis=1)),
                    ("nothing observed (use sample to draw whole images)", ~flat.any(axis=1))):
    if bad.any():
      raise ValueError(f"mask marks {what} for image(s) {np.flatnonzero(bad)[:10].tolist()}: "
                       "each image needs observed and missing subpixels.")
  return tf.constant(mask)


def bottom_half_missing(shape):
  """The mask of the PixelRNN completion figure: bool `shape` `[B, H, W, C]`, the top
  half of every image observed (rows `< H // 2`), the bottom half missing: a suffix."""
  keep = np.zeros(shape, bool)
  keep[:, :shape[1] // 2] = True
  return keep


def missing_is_suffix(keep):
  """Per image, whether the missing subpixels are a suffix of the generation order.

  Args:
    keep: bool `[B, H, W, C]`.

  Returns:
    bool numpy `[B]`.
  """
  flat = np.asarray(keep).reshape(len(keep), -1).astype(np.int8)  # [B, T]
  return np.all(flat[:, 1:] <= flat[:, :-1], axis=1)


def first_row_to_draw(keep):
  """The first image row (over the batch) with a missing subpixel: int32 scalar; H if
  none. The rows above are wholly observed, so a sampler may start there."""
  rows = tf.reduce_any(tf.logical_not(keep), axis=[0, 2, 3])  # [H]
  return tf.where(tf.reduce_any(rows), tf.cast(tf.argmax(tf.cast(rows, tf.int32)), tf.int32),
                  tf.shape(keep)[1])


def gibbs_evaluations(keep, sweeps, num_levels):
  """Image likelihoods the Gibbs sweeps over `keep` `[N, H, W, C]` evaluate."""
  positions = int(np.sum(~np.asarray(keep).reshape(len(keep), -1).all(axis=0)))
  return int(sweeps) * positions * int(num_levels) * len(keep)


def gibbs(log_prob_fn, images, keep, condition, uniform, num_levels):
  """Gibbs sweeps over the missing subpixels of `images`, in the generation order.

  Each missing subpixel t is redrawn by inverse CDF from
  p(x_t = k | x_-t) = softmax_k(log p(x with x_t = k)), observed subpixels stay.

  Args:
    log_prob_fn: `(images [M, H, W, C], condition [M, ...] or None) -> [M]`, log p(x).
    images: int32 `[N, H, W, C]`, observed subpixels in place.
    keep: bool `[N, H, W, C]`.
    condition: what the model conditions on, `[N]` or `[N, D]`, or None.
    uniform: float32 `[sweeps, T, N]` in [0, 1): the draw of subpixel t at each sweep.
    num_levels: K.

  Returns:
    int32 `[N, H, W, C]`.
  """
  shape = tf.shape(images)
  num, size = shape[0], tf.reduce_prod(shape[1:])
  flat_keep = tf.reshape(keep, [num, size])  # [N, T]
  # Positions missing in at least one image: only those are visited.
  positions = tf.cast(tf.where(tf.logical_not(tf.reduce_all(flat_keep, axis=0)))[:, 0],
                      tf.int32)  # [P]
  sweeps = tf.shape(uniform)[0]
  levels = tf.range(num_levels, dtype=tf.int32)  # [K]
  repeat = lambda c: None if c is None else tf.tile(c, [num_levels] + [1] * (c.shape.rank - 1))
  candidate_condition = repeat(condition)  # [K * N, ...]

  def body(step, flat):  # flat [N, T]
    t = positions[step % tf.size(positions)]
    at_t = tf.equal(tf.range(size), t)  # [T]
    candidates = tf.where(at_t[None, None, :], levels[:, None, None], flat[None])  # [K, N, T]
    log_p = log_prob_fn(tf.reshape(candidates, tf.concat([[num_levels * num], shape[1:]], 0)),
                        candidate_condition)  # [K * N]
    probs = tf.nn.softmax(tf.transpose(tf.reshape(log_p, [num_levels, num])))  # [N, K]
    drawn = distributions.inverse_cdf(probs, uniform[step // tf.size(positions), t])  # [N]
    new = tf.where(flat_keep[:, t], flat[:, t], drawn)  # [N]
    return step + 1, tf.where(at_t[None, :], new[:, None], flat)

  _, flat = tf.while_loop(lambda step, _: step < sweeps * tf.size(positions), body,
                          (tf.constant(0), tf.reshape(images, [num, size])))
  return tf.reshape(flat, shape)


def clamped_start(images, keep, noise):
  """The image buffer and noise a sampler completes from: observed levels in place
  (missing ones zero), the observed subpixels' noise `KEEP`."""
  return (tf.where(keep, images, tf.zeros_like(images)),
          sampling.clamped_noise(noise, keep))
