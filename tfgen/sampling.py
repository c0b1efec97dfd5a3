"""The autoregressive sampling loop shared by every pixel model.

Sampling is inverse-CDF sampling driven by uniform noise of the image's shape, so a
sampler is a deterministic function of (weights, noise, labels). A seed only chooses
the noise. That makes seeded sampling reproducible and lets any other sampler (an
exported graph, a cached incremental one) be checked for exact agreement.

Glossary of tensor shapes:
  B: batch.  H, W: image height and width.  C: colour channels.
  P: parameters per pixel (see `tfgen.distributions`).
  T = H * W * C: subpixels, visited in raster order then channel order.
"""

import tensorflow as tf


def raster_position(t, width, channels):
  """Row, column and channel of subpixel number `t` in the generation order."""
  return t // (width * channels), (t // channels) % width, t % channels


def set_subpixel(images, t, levels):
  """Writes `levels` `[B]` into subpixel `t` of `images` `[B, H, W, C]`.

  Uses a masked select rather than a scatter so the loop body stays within TFLite's
  builtin operators.
  """
  shape = tf.shape(images)
  num = shape[1] * shape[2] * shape[3]
  flat = tf.reshape(images, [shape[0], num])  # [B, T]
  hit = tf.equal(tf.range(num), t)[None, :]  # [1, T]
  flat = tf.where(hit, levels[:, None], flat)  # [B, T]
  return tf.reshape(flat, shape)


def set_column(row, column, value):
  """`row` `[B, W', F]` with column `column` replaced by `value` `[B, F]`.

  The cache update of the incremental samplers: a masked select, not a scatter, so
  the loop body stays within TFLite's builtin operators.
  """
  hit = tf.equal(tf.range(tf.shape(row)[1]), column)[None, :, None]  # [1, W', 1]
  return tf.where(hit, value[:, None, :], row)  # [B, W', F]


def fill_subpixels(params_fn, head, images, noise, start, stop):
  """Samples subpixels `start .. stop-1` of `images`, one network pass each.

  Args:
    params_fn: callable, int32 images `[B, H, W, C]` -> float params `[B, H, W, P]`;
      causal, so the params of subpixel t depend only on subpixels before t.
    head: a pixel head from `tfgen.distributions`.
    images: int32 `[B, H, W, C]`; subpixels before `start` are already sampled.
    noise: float32 `[B, H, W, C]` uniform in [0, 1), the randomness of every subpixel.
    start: int32 scalar.
    stop: int32 scalar.

  Returns:
    int32 `[B, H, W, C]` with subpixels `start .. stop-1` filled in.
  """
  _, width, channels = images.shape[1:]

  def body(t, images):
    i, j, c = raster_position(t, width, channels)
    params = params_fn(images)  # [B, H, W, P]
    levels = head.quantile(params[:, i, j], c, noise[:, i, j, c], images[:, i, j])  # [B]
    return t + 1, set_subpixel(images, t, levels)

  _, images = tf.while_loop(lambda t, _: t < stop, body, (start, images))
  return images
