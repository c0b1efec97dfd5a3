"""Pixel distributions: the one place where model parameters become TFP distributions.

Every autoregressive model in tfgen ends in a 1x1 layer that emits `P` parameters per
pixel; a *pixel head* owns the layout of those parameters and turns them into
`tfp.distributions` objects. Models never build distributions themselves.

Glossary of tensor shapes:
  B: batch size.
  H, W: image height and width.
  C: colour channels (1 for grayscale, 3 for RGB).
  K: number of levels of a subpixel (2 for binary images, 256 for 8-bit).
  P: parameters per pixel emitted by the model (`head.num_params`).

Generation order: pixels in raster order (row by row, left to right) and, within a
pixel, channels in order (R, then G, then B). The parameters of channel `c` may depend
on the levels of channels `< c` of the same pixel; the head gets them when sampling.
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


class CategoricalPixelHead:
  """A softmax over the K levels of every subpixel.

  The image distribution factorises over subpixels given the parameters:

    log p(x) = sum_{i, j, c} log softmax(logits[i, j, c])[x_ijc]

  where `logits[i, j, c]` is computed by a causal network from the subpixels before
  (i, j, c) in the generation order. For K=256 this is the "softmax over
  [0, 1, ..., 255]" of van den Oord et al. (2016).

  Parameter layout: `P = C * K`, channel-major, so that the K logits of channel c are
  parameters `c*K ... (c+1)*K - 1`. This matches the channel groups of
  `tfgen.layers.MaskedConv2D` (group of feature `f` of `n` is `f * C // n`).

  References:
    [1] Aaron van den Oord, Nal Kalchbrenner, Koray Kavukcuoglu. Pixel Recurrent
        Neural Networks. ICML 2016. https://arxiv.org/abs/1601.06759
  """

  name = "categorical"

  def __init__(self, num_levels, num_channels):
    if num_levels < 2:
      raise ValueError(f"num_levels must be at least 2, got {num_levels}.")
    self.num_levels = int(num_levels)
    self.num_channels = int(num_channels)

  @property
  def num_params(self):
    """Parameters per pixel, `P`."""
    return self.num_channels * self.num_levels

  def _logits(self, params):
    # [..., P] -> [..., C, K]
    shape = tf.concat([tf.shape(params)[:-1], [self.num_channels, self.num_levels]], 0)
    return tf.reshape(params, shape)

  def image_distribution(self, params):
    """The distribution over whole images.

    Args:
      params: float `[B, H, W, P]` model output.

    Returns:
      A `tfd.Distribution` with batch shape `[B]` and event shape `[H, W, C]` whose
      `log_prob(images)` is the log-likelihood of each image in nats.
    """
    logits = tf.cast(self._logits(params), tf.float32)  # [B, H, W, C, K]
    return tfd.Independent(tfd.Categorical(logits=logits), reinterpreted_batch_ndims=3)

  def subpixel_distribution(self, pixel_params, channel, pixel_levels=None):
    """The distribution of channel `channel` of one pixel.

    Args:
      pixel_params: float `[B, P]`, the parameters of one pixel.
      channel: int scalar (Python or tensor), the channel to sample.
      pixel_levels: int `[B, C]`, levels of this pixel sampled so far (channels
        `< channel` are valid). Unused: the network already conditioned on them.

    Returns:
      A `tfd.Categorical` with batch shape `[B]`.
    """
    del pixel_levels
    logits = tf.cast(self._logits(pixel_params), tf.float32)  # [B, C, K]
    return tfd.Categorical(logits=tf.gather(logits, channel, axis=1))  # [B, K]

  def quantile(self, pixel_params, channel, uniform, pixel_levels=None):
    """Inverse-CDF sample of one subpixel from uniform noise.

    Inverse-CDF sampling turns the randomness into an explicit input, so a sampler
    is a deterministic function of `uniform`: seeded sampling, exported samplers and
    fast (cached) samplers all give the same images for the same noise.

      x = min{k : CDF(k) >= u} = #{k : CDF(k) < u}

    Args:
      pixel_params: float `[B, P]`.
      channel: int scalar.
      uniform: float `[B]` in [0, 1).
      pixel_levels: int `[B, C]`, see `subpixel_distribution`.

    Returns:
      int32 `[B]` levels in `[0, K)`.
    """
    dist = self.subpixel_distribution(pixel_params, channel, pixel_levels)
    cdf = tf.cumsum(dist.probs_parameter(), axis=-1)  # [B, K]
    below = tf.cast(cdf < uniform[:, None], tf.int32)  # [B, K]
    # Rounding can leave CDF(K-1) a hair below 1; never return level K.
    return tf.minimum(tf.reduce_sum(below, axis=-1), self.num_levels - 1)


_HEADS = {CategoricalPixelHead.name: CategoricalPixelHead}


def make_pixel_head(name, num_levels, num_channels):
  """Returns the pixel head called `name` (see `_HEADS`)."""
  if name not in _HEADS:
    raise ValueError(f"Unknown pixel distribution {name!r}; choose one of {sorted(_HEADS)}.")
  return _HEADS[name](num_levels, num_channels)


def bits_per_dim(nll_nats, num_subpixels):
  """Converts nats per image to bits per subpixel: nll / (H * W * C * ln 2)."""
  return nll_nats / (num_subpixels * math.log(2.0))
