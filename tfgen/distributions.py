"""Pixel and latent distributions: where model parameters become TFP distributions.

Every image model in tfgen ends in a layer that emits `P` parameters per pixel; a
*pixel head* owns the layout of those parameters and turns them into
`tfp.distributions` objects. Autoregressive models emit them from a causal network;
VAE decoders from a latent code. The VAE's Gaussian posterior and its prior are made
here too. Models never build distributions themselves.

Glossary of tensor shapes:
  B: batch size.
  H, W: image height and width.
  C: colour channels (1 for grayscale, 3 for RGB).
  K: number of levels of a subpixel (2 for binary images, 256 for 8-bit).
  P: parameters per pixel emitted by the model (`head.num_params`).
  D: latent dimensions of a VAE.

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
    return inverse_cdf(dist.probs_parameter(), uniform)  # [B]

  def image_quantile(self, params, uniform):
    """Inverse-CDF sample of every subpixel at once, for parameters that do not
    depend on the image (a VAE decoder's): `[B, H, W, P]`, uniform `[B, H, W, C]`."""
    probs = tf.nn.softmax(tf.cast(self._logits(params), tf.float32))  # [B, H, W, C, K]
    return inverse_cdf(probs, uniform)  # [B, H, W, C]

  def mean(self, params):
    """E[x] in levels, float `[B, H, W, C]`."""
    probs = tf.nn.softmax(tf.cast(self._logits(params), tf.float32))  # [B, H, W, C, K]
    return tf.reduce_sum(probs * tf.range(self.num_levels, dtype=tf.float32), axis=-1)


def inverse_cdf(probs, uniform):
  """`min{k : CDF(k) >= u}`, the level that uniform noise `u` selects.

  Args:
    probs: float `[..., K]` probabilities.
    uniform: float `[...]` in [0, 1).

  Returns:
    int32 `[...]` levels in `[0, K)`.
  """
  cdf = tf.cumsum(probs, axis=-1)  # [..., K]
  below = tf.cast(cdf < uniform[..., None], tf.int32)  # [..., K]
  # Rounding can leave CDF(K-1) a hair below 1; never return level K.
  return tf.minimum(tf.reduce_sum(below, axis=-1), probs.shape[-1] - 1)


class BernoulliPixelHead:
  """Independent Bernoulli subpixels for binary images (K = 2), given their logits.

    log p(x | z) = sum_{i, j, c} x log sigmoid(l) + (1 - x) log sigmoid(-l)

  Parameter layout: `P = C` logits. For decoders whose parameters do not depend on
  the image (VAEs); an autoregressive model uses `CategoricalPixelHead` with K = 2.

  References:
    [1] Diederik P. Kingma, Max Welling. Auto-Encoding Variational Bayes. ICLR 2014.
        https://arxiv.org/abs/1312.6114 (appendix C.1)
  """

  name = "bernoulli"

  def __init__(self, num_levels, num_channels):
    if num_levels != 2:
      raise ValueError(
          f"The Bernoulli likelihood is for binary images (2 levels), got {num_levels} "
          "levels. Use the categorical or Gaussian likelihood, or binarize the data.")
    self.num_levels = 2
    self.num_channels = int(num_channels)

  @property
  def num_params(self):
    return self.num_channels

  def image_distribution(self, params):
    """`tfd.Distribution`, batch `[B]`, event `[H, W, C]` of int32 levels."""
    logits = tf.cast(params, tf.float32)  # [B, H, W, C]
    return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.int32),
                           reinterpreted_batch_ndims=3)

  def image_quantile(self, params, uniform):
    """Inverse CDF: level 1 where u > P(x = 0)."""
    p_one = tf.sigmoid(tf.cast(params, tf.float32))  # [B, H, W, C]
    return tf.cast(uniform > 1.0 - p_one, tf.int32)

  def mean(self, params):
    return tf.sigmoid(tf.cast(params, tf.float32))  # [B, H, W, C]


class _IndependentLevels(tfd.Independent):
  """`tfd.Independent` over a float-valued discrete distribution that also takes the
  integer levels every other head takes (QuantizedDistribution's dtype is float)."""

  def _log_prob(self, x):
    return super()._log_prob(tf.cast(x, self.dtype))

  def _prob(self, x):
    return super()._prob(tf.cast(x, self.dtype))


class DiscretizedGaussianPixelHead:
  """A Gaussian with learned mean and variance per subpixel, integrated over each level.

  The decoder of the lecture's VAE, p(x | z) = N(mu(z), diag sigma(z)^2), made a
  distribution over the K levels so its log-likelihood is a real number of bits: level
  k gets the Gaussian mass of its bin, and the edge levels get the tails,

    P(x = k) = Phi((k + 1/2 - mu) / sigma) - Phi((k - 1/2 - mu) / sigma),  0 < k < K-1
    P(x = 0) = Phi((1/2 - mu) / sigma),   P(x = K-1) = 1 - Phi((K - 3/2 - mu) / sigma)

  (mu, sigma in level units). This is `tfd.QuantizedDistribution` of a Normal shifted
  by -1/2 (it bins (k-1, k] onto k), which evaluates the differences in log space from
  the side of the median, so tiny sigmas and far-off means stay finite.

  Parameter layout: `P = 2C`: `m` then `s` per channel, with
  mu = (K - 1) (m + 1) / 2 (m = -1..1 spans the levels, like the network's input) and
  sigma = (K - 1) (softplus(s) + 1e-3) / 2.
  """

  name = "gaussian"

  def __init__(self, num_levels, num_channels):
    if num_levels < 2:
      raise ValueError(f"num_levels must be at least 2, got {num_levels}.")
    self.num_levels = int(num_levels)
    self.num_channels = int(num_channels)

  @property
  def num_params(self):
    return 2 * self.num_channels

  def _loc_scale(self, params):
    params = tf.cast(params, tf.float32)
    m, s = tf.split(params, 2, axis=-1)  # [B, H, W, C] each
    half = (self.num_levels - 1) / 2.0
    return half * (m + 1.0), half * (tf.nn.softplus(s) + 1e-3)

  def image_distribution(self, params):
    """`tfd.Distribution`, batch `[B]`, event `[H, W, C]` of levels (float-valued)."""
    loc, scale = self._loc_scale(params)
    binned = tfd.QuantizedDistribution(tfd.Normal(loc - 0.5, scale), low=0.0,
                                       high=float(self.num_levels - 1))
    return _IndependentLevels(binned, reinterpreted_batch_ndims=3)

  def image_quantile(self, params, uniform):
    """Inverse CDF of the binned Gaussian: the level whose bin holds mu + sigma Phi^-1(u)."""
    loc, scale = self._loc_scale(params)
    x = tfd.Normal(loc, scale).quantile(tf.clip_by_value(uniform, 1e-7, 1.0 - 1e-7))
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, self.num_levels - 1.0), tf.int32)

  def mean(self, params):
    """The Gaussian's mean clipped to the level range (not the binned mean)."""
    loc, _ = self._loc_scale(params)
    return tf.clip_by_value(loc, 0.0, self.num_levels - 1.0)  # [B, H, W, C]


_HEADS = {head.name: head for head in
          (CategoricalPixelHead, BernoulliPixelHead, DiscretizedGaussianPixelHead)}


def make_pixel_head(name, num_levels, num_channels):
  """Returns the pixel head called `name` (see `_HEADS`)."""
  if name not in _HEADS:
    raise ValueError(f"Unknown pixel distribution {name!r}; choose one of {sorted(_HEADS)}.")
  return _HEADS[name](num_levels, num_channels)


def gaussian_posterior(params):
  """q(z | x) = N(mu, diag sigma^2) from encoder outputs `[B, 2D]` (mu, then s).

  sigma = softplus(s) + 1e-4: positive and smooth, where exp(s) overflows for large s.
  """
  loc, s = tf.split(tf.cast(params, tf.float32), 2, axis=-1)  # [B, D] each
  return tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.nn.softplus(s) + 1e-4)


def standard_normal_prior(latent_dim):
  """p(z) = N(0, I) over `D = latent_dim` dimensions."""
  return tfd.MultivariateNormalDiag(loc=tf.zeros([latent_dim]))


def bits_per_dim(nll_nats, num_subpixels):
  """Converts nats per image to bits per subpixel: nll / (H * W * C * ln 2)."""
  return nll_nats / (num_subpixels * math.log(2.0))
