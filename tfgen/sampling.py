"""The autoregressive sampling loop shared by every pixel model.

Sampling is inverse-CDF sampling driven by uniform noise of the image's shape, so a
sampler is a deterministic function of (weights, noise, labels). A seed only chooses
the noise. That makes seeded sampling reproducible and lets any other sampler (an
exported graph, a cached incremental one) be checked for exact agreement.

Completion rides on the same loops: a subpixel whose noise is `KEEP` (negative, outside
any uniform draw) keeps the level it holds in the image buffer, so an image with its
observed subpixels written in and their noise set to `KEEP` (`clamped_noise`) comes
out of any sampler with those subpixels clamped and the others drawn from the model's
conditionals given everything before them (`tfgen.completion`).

Two loops live here, and every sampler is one of them: `fill_subpixels` reruns the
network for every subpixel (the naive sampler), and `cached_rows` is the skeleton of
every cached sampler (rows, then the subpixels of a row, then the roll of the window
of rows above), which a family plugs its per-position step into.

Glossary of tensor shapes:
  B: batch.  H, W: image height and width.  C: colour channels.
  P: parameters per pixel (see `tfgen.distributions`).
  T = H * W * C: subpixels, visited in raster order then channel order.
  F: features of a cached layer input.  ph, pw: a cached kernel's padding above and to
    each side (`MaskedConv2D.cache_padding`).
"""

import tensorflow as tf


def raster_position(t, width, channels):
  """Row, column and channel of subpixel number `t` in the generation order."""
  return t // (width * channels), (t // channels) % width, t % channels


# The noise of a subpixel that is not drawn but kept as the image holds it.
KEEP = -1.0


def clamped_noise(noise, keep):
  """`noise` `[..., C]` with the subpixels where `keep` is true set to `KEEP`."""
  return tf.where(keep, tf.constant(KEEP, noise.dtype), noise)


def draw(head, pixel_params, channel, uniform, pixel_levels):
  """Subpixel `channel` of one pixel: drawn by inverse CDF, or kept where `uniform` is
  `KEEP`.

  Every sampling loop draws through here, so a completion is any sampler run on
  clamped noise (see the module docstring).

  Args:
    head: a pixel head from `tfgen.distributions`.
    pixel_params: float `[B, P]`, the parameters of the pixel.
    channel: int scalar.
    uniform: float `[B]`, in [0, 1) or `KEEP`.
    pixel_levels: int32 `[B, C]`, the pixel as the image buffer holds it (channels
      before `channel` drawn; `channel` itself the level to keep).

  Returns:
    int32 `[B]` levels in `[0, K)`.
  """
  drawn = head.quantile(pixel_params, channel, tf.maximum(uniform, 0.0), pixel_levels)  # [B]
  kept = tf.gather(pixel_levels, channel, axis=1)  # [B]
  return tf.where(uniform < 0.0, kept, drawn)


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
  return tf.where(hit, tf.cast(value, row.dtype)[:, None, :], row)  # [B, W', F]


def fill_subpixels(params_fn, head, images, noise, start, stop):
  """Samples subpixels `start .. stop-1` of `images`, one network pass each.

  Args:
    params_fn: callable, int32 images `[B, H, W, C]` -> float params `[B, H, W, P]`;
      causal, so the params of subpixel t depend only on subpixels before t.
    head: a pixel head from `tfgen.distributions`.
    images: int32 `[B, H, W, C]`; subpixels before `start` are already sampled.
    noise: float32 `[B, H, W, C]` uniform in [0, 1), the randomness of every subpixel
      (or `KEEP` for a subpixel to keep).
    start: int32 scalar.
    stop: int32 scalar.

  Returns:
    int32 `[B, H, W, C]` with subpixels `start .. stop-1` filled in.
  """
  _, width, channels = images.shape[1:]

  def body(t, images):
    i, j, c = raster_position(t, width, channels)
    params = params_fn(images)  # [B, H, W, P]
    levels = draw(head, params[:, i, j], c, noise[:, i, j, c], images[:, i, j])  # [B]
    return t + 1, set_subpixel(images, t, levels)

  _, images = tf.while_loop(lambda t, _: t < stop, body, (start, images))
  return images


def window_above(x, row, ph, pw):
  """The `ph` rows above `row` of `x` `[B, H, W, F]`, zero padded: `[B, ph, W + 2pw, F]`.

  Rows above the image are zeros, as a masked convolution's padding. A slice of static
  size, so the window keeps its shape through a `tf.while_loop`.
  """
  return tf.slice(tf.pad(x, [[0, 0], [ph, 0], [pw, pw], [0, 0]]), tf.stack([0, row, 0, 0]),
                  [-1, ph, -1, -1])


def roll_window(above, finished):
  """`above` `[B, ph, W', F]` moved down one row onto `finished` `[B, W', F]`."""
  if above.shape[1] == 0:
    return above
  return tf.concat([above[:, 1:], tf.cast(finished, above.dtype)[:, None]], axis=1)


def cached_rows(head, images, noise, row_start, row_stop, carry, empty_row, begin_row,
                position, after_draw, end_row):
  """The skeleton of every cached sampler: draws rows `row_start .. row_stop-1`.

  For each row i: `begin_row` computes what the row needs once (e.g. the part of each
  convolution that reads the rows above); then for each subpixel (i, j, c) in raster,
  then channel order, `position` evaluates the network at (i, j) only, from the
  caches, and the subpixel is drawn by inverse CDF from `noise`; `after_draw` updates
  the caches that hold the pixel itself; when the row is complete, `end_row` makes
  the next row's `carry` (rolls the windows, finishes the states of the row).

  Args:
    head: the pixel head (`tfgen.distributions`) that draws a subpixel from params.
    images: int32 `[B, H, W, C]`, rows before `row_start` sampled.
    noise: float32 `[B, H, W, C]` uniform noise (or `KEEP` for a subpixel to keep).
    row_start, row_stop: int32 scalars.
    carry: what row `row_start` starts from (a NamedTuple of tensors): the caches
      that live from row to row.
    empty_row: the per-row caches at the start of a row (a NamedTuple of tensors).
    begin_row: `(i, carry) -> per_row`, any Python value the row's steps read.
    position: `(i, j, c, images, carry, per_row, row) -> (params [B, P], row)`.
    after_draw: `(i, j, images, row) -> row`, after subpixel (i, j, c) is written.
    end_row: `(i, images, carry, per_row, row) -> carry` for row i + 1.

  Returns:
    int32 `[B, H, W, C]`.
  """
  _, width, channels = images.shape[1:]

  def row_body(i, images, carry):
    per_row = begin_row(i, carry)

    def subpixel_body(t, images, row):
      j, c = t // channels, t % channels
      params, row = position(i, j, c, images, carry, per_row, row)  # [B, P]
      levels = draw(head, params, c, noise[:, i, j, c], images[:, i, j])  # [B]
      images = set_subpixel(images, (i * width + j) * channels + c, levels)
      return t + 1, images, after_draw(i, j, images, row)

    _, images, row = tf.while_loop(lambda t, *_: t < width * channels, subpixel_body,
                                   (tf.constant(0), images, empty_row))
    return i + 1, images, end_row(i, images, carry, per_row, row)

  _, images, _ = tf.while_loop(lambda i, *_: i < row_stop, row_body,
                               (row_start, images, carry))
  return images
