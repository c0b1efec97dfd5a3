"""Pixel and latent distributions: where model parameters become TFP distributions.

Every image model in tfgen ends in a layer that emits `P` parameters per pixel; a
*pixel head* owns the layout of those parameters and turns them into
`tfp.distributions` objects. Autoregressive models emit them from a causal network;
VAE decoders from a latent code. The VAE's posteriors q(z | x) (diagonal Gaussian,
inverse autoregressive flow, categorical) and priors p(z) (standard normal, Gaussian
mixture, VampPrior, uniform categorical) are made here too. Models never build
distributions themselves.

Glossary of tensor shapes:
  B: batch size.
  H, W: image height and width.
  C: colour channels (1 for grayscale, 3 for RGB).
  K: number of levels of a subpixel (2 for binary images, 256 for 8-bit).
  P: parameters per pixel emitted by the model (`head.num_params`).
  D: latent dimensions of a VAE.
  E: context outputs of an inverse autoregressive flow's encoder.
  N: categorical latent variables of a VAE.  G: categories of each.
  M: mixture components: of the logistic mixture head, of a VAE's mixture prior, or
     a VampPrior's pseudo-inputs.

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
  # Channel-major (above): causality holds per subpixel, as the causality checks ask.
  params_per_pixel = False

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

  def subpixel_log_probs(self, params, images):
    """log p(x_ijc | x_<ijc) of every subpixel of `images`, float32 `[B, H, W, C]`.

    The terms whose sum over (i, j, c) is `image_distribution(params).log_prob(images)`;
    a completion's conditional likelihood sums those of the missing subpixels.
    """
    return self.image_distribution(params).distribution.log_prob(images)  # [B, H, W, C]

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


def normal_cdf(t):
  """The standard normal CDF Phi(t) in TFLite builtin operators (ABS, EXP, DIV, SELECT).

    Phi(t) = erfc(-t / sqrt(2)) / 2,  erfc(x) = r(|x|) for x >= 0, 2 - r(|x|) below,

  with Numerical Recipes' Chebyshev fit `r` of erfc, whose relative error is below
  1.2e-7 everywhere in exact arithmetic; evaluated in float32 here it stays within
  3e-7 of the exact CDF and within 1e-4 relative in the tails out to |t| = 9
  (tests/test_faults.py).

  References:
    [1] W. H. Press et al. Numerical Recipes, 3rd ed., section 6.2.2 (erfcc).
  """
  x = -tf.cast(t, tf.float32) / math.sqrt(2.0)
  a = tf.abs(x)
  s = 1.0 / (1.0 + 0.5 * a)
  poly = 0.17087277
  for c in (-0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418,
            0.37409196, 1.00002368, -1.26551223):
    poly = c + s * poly
  r = s * tf.exp(-a * a + poly)  # erfc(|x|)
  return 0.5 * tf.where(x >= 0.0, r, 2.0 - r)


class _BinnedNormal(tfd.QuantizedDistribution):
  """`tfd.QuantizedDistribution` of a Normal with the mean it lacks.

    E[x] = sum_{k=0}^{K-2} P(x > k) = sum_{k=0}^{K-2} (1 - CDF(k))
  """

  def _mean(self):
    levels = tf.range(self.low, self.high, dtype=self.dtype)  # [K-1]
    shape = tf.concat([[tf.size(levels)], self.batch_shape_tensor()], 0)
    levels = tf.reshape(levels, tf.concat([[-1], tf.ones_like(self.batch_shape_tensor())], 0))
    return tf.reduce_sum(1.0 - self.cdf(tf.broadcast_to(levels, shape)), axis=0)


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
    binned = _BinnedNormal(tfd.Normal(loc - 0.5, scale), low=0.0,
                           high=float(self.num_levels - 1))
    return _IndependentLevels(binned, reinterpreted_batch_ndims=3)

  def image_quantile(self, params, uniform):
    """Inverse CDF of the binned Gaussian from uniform noise, in TFLite builtin ops.

      x = #{k in 0 .. K-2 : Phi((k + 1/2 - mu) / sigma) < u}

    counts the bin edges whose CDF lies below `u`: the smallest level whose CDF
    reaches `u`. `Phi` is `normal_cdf` (no `Ndtri`, no `Erf`: neither is a TFLite
    builtin), so Keras and an exported sampler run the same ops and draw the same
    levels from the same noise.
    """
    loc, scale = self._loc_scale(params)  # [B, H, W, C] each
    edges = tf.range(self.num_levels - 1, dtype=tf.float32) + 0.5  # [K-1]
    cdf = normal_cdf((edges - loc[..., None]) / scale[..., None])  # [B, H, W, C, K-1]
    below = tf.cast(cdf < tf.cast(uniform, tf.float32)[..., None], tf.int32)
    return tf.reduce_sum(below, axis=-1)  # [B, H, W, C]

  def mean(self, params):
    """The Gaussian's mean clipped to the level range (not the binned mean)."""
    loc, _ = self._loc_scale(params)
    return tf.clip_by_value(loc, 0.0, self.num_levels - 1.0)  # [B, H, W, C]


def _discretized_logistic_log_prob(x, loc, log_scale, half_width, is_lowest, is_highest):
  """log P(level) of a logistic binned onto the levels, in forms that stay finite.

  A level at x (scaled to [-1, 1]) owns the bin [x - w, x + w], w = `half_width`; the
  lowest level owns (-inf, x + w] and the highest [x - w, inf). With
  z+- = (x +- w - loc) / scale and the logistic CDF sigmoid:

    lowest:   log sigmoid(z+)
    highest:  log sigmoid(-z-)
    interior: log(sigmoid(z+) - sigmoid(z-))

  The interior difference is taken on the tail side of the mean (sigmoid(a) -
  sigmoid(b) = sigmoid(-b) - sigmoid(-a)), in log space:
  log sigmoid(a) + log(1 - exp(log sigmoid(b) - log sigmoid(a))), so a bin far out
  in a tail keeps its (tiny) mass instead of a difference of two numbers near 1.
  Where the bin is narrow against the scale (z+ - z- < 1e-2) that difference loses
  precision, and the mass is the density at the bin centre times the bin width
  (PixelCNN++'s fallback; relative error below (z+ - z-)^2 / 24 < 5e-6 there).

  Args:
    x: float `[...]`, the level scaled to [-1, 1].
    loc: float `[...]`, the logistic's mean (broadcasts with `x`).
    log_scale: float `[...]`, log of its scale.
    half_width: Python float w, half a bin: 1 / (K - 1).
    is_lowest, is_highest: bool `[...]`, whether x is the lowest / highest level.

  Returns:
    float `[...]` log-probabilities.
  """
  centered = x - loc
  inv_scale = tf.exp(-log_scale)
  z_plus = inv_scale * (centered + half_width)
  z_minus = inv_scale * (centered - half_width)
  width = 2.0 * half_width * inv_scale  # z+ - z-, exactly
  log_lowest = tf.math.log_sigmoid(z_plus)
  log_highest = tf.math.log_sigmoid(-z_minus)
  # Reflect to the tail side of the mean: a > b and b < 0, so sigmoid(b) <= 1/2 and
  # the difference keeps its relative precision however far out the bin lies.
  flip = centered > 0.0
  a = tf.where(flip, -z_minus, z_plus)
  b = tf.where(flip, -z_plus, z_minus)
  # log sigmoid(b) - log sigmoid(a) = -(a - b) + softplus(a) - softplus(b): the exact
  # width, not a difference of two large numbers that could round to zero.
  narrow = width < 1e-2
  log_ratio = -width + tf.nn.softplus(a) - tf.nn.softplus(b)
  # Inside tf.where both branches get gradients: keep the unused one finite.
  log_ratio = tf.where(narrow, -1.0, tf.minimum(log_ratio, -1e-30))
  log_delta = tf.math.log_sigmoid(a) + tf.math.log(-tf.math.expm1(log_ratio))
  z_mid = inv_scale * centered
  log_mid = (z_mid - log_scale - 2.0 * tf.nn.softplus(z_mid)  # log density at the centre
             + math.log(2.0 * half_width))
  log_interior = tf.where(narrow, log_mid, log_delta)
  return tf.where(is_lowest, log_lowest, tf.where(is_highest, log_highest, log_interior))


class DiscretizedLogisticMixture(tfd.Distribution):
  """A mixture of discretized logistics over the C channels of one pixel.

  The PixelCNN++ likelihood of one pixel x = (x_0, ..., x_{C-1}) with levels 0..K-1,
  scaled to [-1, 1] as v_c = 2 x_c / (K - 1) - 1. The mixture indicator k is shared
  by the channels of the pixel, and each channel's mean depends linearly on the
  channels before it:

    p(x) = sum_k pi_k prod_c L(x_c | mu_ck, s_ck)
    mu_ck = m_ck + sum_{c' < c} a_{c c' k} v_{c'}     (R: m; G: m + a r; B: m + b r + g g)

  with L the logistic of mean mu and scale exp(s) integrated over the level's bin
  (the edge levels take the tails; see `_discretized_logistic_log_prob`).

  Sampling one channel at a time given the channels before it (what inverse-CDF
  samplers do) must use the conditional

    p(x_c | x_<c) = sum_k w_ck L(x_c | mu_ck, s_ck),
    w_ck  propto  pi_k prod_{c' < c} L(x_c' | mu_c'k, s_c'k)

  whose weights are the *posterior* of k given the channels already drawn, not the
  prior pi_k; `conditional_log_probs` gives it.

  Args:
    logits: float `[..., M]` mixture logits.
    means: float `[..., C, M]` the m_ck.
    log_scales: float `[..., C, M]` the s_ck (used as given: clamp them beforehand).
    coeffs: float `[..., C, C, M]`; entry [c, c', k] is a_{c c' k}; only c' < c is read.
    num_levels: K.

  Batch shape `[...]`, event shape `[C]`, int32 levels.

  References:
    [1] Tim Salimans, Andrej Karpathy, Xi Chen, Diederik P. Kingma. PixelCNN++:
        Improving the PixelCNN with Discretized Logistic Mixture Likelihood and Other
        Modifications. ICLR 2017. https://arxiv.org/abs/1701.05517 (section 2.1-2.2)
  """

  # The exact mean enumerates all K^C pixels (see `_mean`); above this it refuses.
  MAX_MEAN_ENUMERATION = 4096

  def __init__(self, logits, means, log_scales, coeffs, num_levels, validate_args=False,
               allow_nan_stats=True, name="DiscretizedLogisticMixture"):
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      self._logits = tf.convert_to_tensor(logits, tf.float32)  # [..., M]
      self._means = tf.convert_to_tensor(means, tf.float32)  # [..., C, M]
      self._log_scales = tf.convert_to_tensor(log_scales, tf.float32)  # [..., C, M]
      self._coeffs = tf.convert_to_tensor(coeffs, tf.float32)  # [..., C, C, M]
      self._num_levels = int(num_levels)
      self._num_channels = int(self._means.shape[-2])
      super().__init__(dtype=tf.int32, reparameterization_type=tfd.NOT_REPARAMETERIZED,
                       validate_args=validate_args, allow_nan_stats=allow_nan_stats,
                       parameters=parameters, name=name)

  @classmethod
  def _parameter_properties(cls, dtype, num_classes=None):
    return dict(logits=tfp.util.ParameterProperties(event_ndims=1),
                means=tfp.util.ParameterProperties(event_ndims=2),
                log_scales=tfp.util.ParameterProperties(event_ndims=2),
                coeffs=tfp.util.ParameterProperties(event_ndims=3),
                num_levels=tfp.util.ParameterProperties(event_ndims=None, is_preferred=False))

  @property
  def num_levels(self):
    return self._num_levels

  def _event_shape(self):
    return tf.TensorShape([self._num_channels])

  def _event_shape_tensor(self):
    return tf.constant([self._num_channels], tf.int32)

  def _scaled(self, levels):
    return tf.cast(levels, tf.float32) * (2.0 / (self._num_levels - 1)) - 1.0

  def _locs(self, scaled):
    """mu_ck from the scaled levels `[..., C]` of the pixel: `[..., C, M]`."""
    c = self._num_channels
    strictly_lower = tf.constant([[1.0 if j < i else 0.0 for j in range(c)] for i in range(c)])
    coeffs = self._coeffs * strictly_lower[:, :, None]  # [..., C, C, M]
    return self._means + tf.reduce_sum(coeffs * scaled[..., None, :, None], axis=-2)

  def _level_log_probs(self, levels, locs, log_scales):
    """log L(level | loc, scale) for int `levels` broadcasting against `locs`."""
    return _discretized_logistic_log_prob(
        self._scaled(levels), locs, log_scales, 1.0 / (self._num_levels - 1),
        tf.equal(levels, 0), tf.equal(levels, self._num_levels - 1))

  def component_log_probs(self, levels):
    """log L(x_c | mu_ck, s_ck) of a pixel's levels `[..., C]`: `[..., C, M]`."""
    levels = tf.cast(levels, tf.int32)
    locs = self._locs(self._scaled(levels))  # [..., C, M]
    return self._level_log_probs(levels[..., None], locs, self._log_scales)

  def _log_prob(self, x):
    log_pi = tf.nn.log_softmax(self._logits)  # [..., M]
    joint = log_pi + tf.reduce_sum(self.component_log_probs(x), axis=-2)  # [..., M]
    return tf.reduce_logsumexp(joint, axis=-1)  # [...]

  def conditional_log_probs(self, levels):
    """log p(x_c = l | x_<c) for every channel c and level l: `[..., C, K]`.

    Args:
      levels: int `[..., C]`, the pixel's levels; for channel c only the channels
        before c are read.

    Returns:
      float `[..., C, K]`; row c sums (in probability) to 1.
    """
    levels = tf.cast(levels, tf.int32)
    per_channel = self.component_log_probs(levels)  # [..., C, M]
    # Posterior of k given the channels before c: exclusive cumulative sum over c.
    earlier = tf.cumsum(per_channel, axis=-2, exclusive=True)  # [..., C, M]
    log_w = tf.nn.log_softmax(tf.nn.log_softmax(self._logits)[..., None, :] + earlier)
    locs = self._locs(self._scaled(levels))  # [..., C, M]
    grid = tf.range(self._num_levels)  # [K]
    every = self._level_log_probs(grid, locs[..., None], self._log_scales[..., None])
    return tf.reduce_logsumexp(log_w[..., None] + every, axis=-2)  # [..., C, K]

  def _sample_n(self, n, seed=None):
    # Ancestral: the shared component k, then each channel given the ones before it,
    # as a logistic draw binned onto the levels (exactly the binned distribution).
    seeds = tfp.random.split_seed(seed, n=self._num_channels + 1)
    batch = tf.concat([[n], self._batch_shape_tensor()], 0)
    m = int(self._logits.shape[-1])
    logits = tf.broadcast_to(self._logits, tf.concat([batch, [m]], 0))  # [n, ..., M]
    k = tf.random.stateless_categorical(tf.reshape(logits, [-1, m]), 1, seeds[0])
    one_hot = tf.one_hot(tf.reshape(k, batch), m)  # [n, ..., M]
    scaled = []
    levels = []
    k_max = float(self._num_levels - 1)
    for c in range(self._num_channels):
      prev = tf.stack(scaled + [tf.zeros(batch)] * (self._num_channels - c), axis=-1)
      loc = tf.reduce_sum(self._locs(prev)[..., c, :] * one_hot, -1)  # [n, ...]
      log_scale = tf.reduce_sum(self._log_scales[..., c, :] * one_hot, -1)
      u = tf.random.stateless_uniform(batch, seeds[c + 1], minval=1e-7, maxval=1.0 - 1e-7)
      x = loc + tf.exp(log_scale) * (tf.math.log(u) - tf.math.log1p(-u))
      level = tf.clip_by_value(tf.round((x + 1.0) * (k_max / 2.0)), 0.0, k_max)
      levels.append(tf.cast(level, tf.int32))
      scaled.append(self._scaled(levels[-1]))
    return tf.stack(levels, axis=-1)  # [n, ..., C]

  def _mean(self):
    """E[x] in levels, float `[..., C]`, by enumerating all K^C pixels.

    Exact: with the within-pixel dependence the mean of a later channel is not a
    function of the earlier channels' means. Raises ValueError when K^C exceeds
    `MAX_MEAN_ENUMERATION` (e.g. 8-bit RGB); sample and average there instead.
    """
    k, c = self._num_levels, self._num_channels
    if k ** c > self.MAX_MEAN_ENUMERATION:
      raise ValueError(
          f"The exact mean of a {k}-level, {c}-channel logistic mixture needs {k}^{c} "
          f"terms per pixel (limit {self.MAX_MEAN_ENUMERATION}); estimate it from "
          "samples instead (distribution.sample(n) averaged over n).")
    grid = tf.stack(tf.meshgrid(*[tf.range(k)] * c, indexing="ij"), -1)  # [K, .., K, C]
    grid = tf.reshape(grid, [-1, c])  # [K^C, C]
    rank = self._logits.shape.rank - 1
    pixels = tf.reshape(grid, [k ** c] + [1] * rank + [c])  # [K^C, 1.., C]
    probs = tf.exp(self._log_prob(pixels))  # [K^C, ...]
    return tf.reduce_sum(probs[..., None] * tf.cast(pixels, tf.float32), axis=0)  # [..., C]


class DiscretizedLogisticMixturePixelHead:
  """PixelCNN++'s discretized logistic mixture likelihood of every pixel.

  The image distribution factorises over pixels given the parameters, and within a
  pixel is a `DiscretizedLogisticMixture` over its C channels (shared mixture
  indicator, linear dependence of each channel's mean on the channels before it):

    log p(x) = sum_{i, j} log sum_k pi_ijk prod_c L(x_ijc | mu_ijck, s_ijck)

  The network that emits the parameters of pixel (i, j) sees only the pixels before
  it; the dependence between the channels of a pixel lives here. Parameters of pixel
  (i, j) therefore serve all its channels, which is why they are not channel-major.

  Parameter layout, M = `num_mixtures`: `P = M (1 + 2C + C (C - 1) / 2)`:
    [0, M)                 mixture logits
    [M, M + CM)            means m_ck, channel-major (index M + c M + k)
    [M + CM, M + 2CM)      log-scales s_ck (clamped below at -7, as in the paper)
    [M + 2CM, P)           coefficients a_{c c' k} for c' < c in the order (1, 0),
                           (2, 0), (2, 1), ..., each M wide, squashed by tanh
  For RGB that is the paper's 10 M (pi, 3 means, 3 scales, alpha, beta, gamma).

  Args:
    num_levels: K (at least 2; K = 2 models binary images).
    num_channels: C.
    num_mixtures: M.

  References:
    [1] Tim Salimans, Andrej Karpathy, Xi Chen, Diederik P. Kingma. PixelCNN++:
        Improving the PixelCNN with Discretized Logistic Mixture Likelihood and Other
        Modifications. ICLR 2017. https://arxiv.org/abs/1701.05517
  """

  name = "logistic_mixture"
  # The parameters of a pixel serve all its channels (above): causality holds per pixel.
  params_per_pixel = True
  MIN_LOG_SCALE = -7.0

  def __init__(self, num_levels, num_channels, num_mixtures=10):
    if num_levels < 2:
      raise ValueError(f"num_levels must be at least 2, got {num_levels}.")
    if int(num_mixtures) < 1:
      raise ValueError(f"num_mixtures must be a positive integer, got {num_mixtures}.")
    self.num_levels = int(num_levels)
    self.num_channels = int(num_channels)
    self.num_mixtures = int(num_mixtures)

  @property
  def num_coeffs(self):
    """Within-pixel coefficients per mixture component: C (C - 1) / 2."""
    return self.num_channels * (self.num_channels - 1) // 2

  @property
  def num_params(self):
    """Parameters per pixel, `P`."""
    return self.num_mixtures * (1 + 2 * self.num_channels + self.num_coeffs)

  def pixel_distribution(self, params):
    """`DiscretizedLogisticMixture` with batch `[...]`, event `[C]`, from `[..., P]`."""
    params = tf.cast(params, tf.float32)
    m, c = self.num_mixtures, self.num_channels
    batch = tf.shape(params)[:-1]
    per_channel = lambda p: tf.reshape(p, tf.concat([batch, [c, m]], 0))  # [..., C, M]
    logits, means, log_scales, raw = tf.split(
        params, [m, c * m, c * m, self.num_coeffs * m], axis=-1)
    log_scales = tf.maximum(per_channel(log_scales), self.MIN_LOG_SCALE)
    # [..., n + 1, M]: the coefficients and a zero row for the unused entries c' >= c.
    raw = tf.reshape(raw, tf.concat([batch, [self.num_coeffs, m]], 0))
    padded = tf.concat([tf.tanh(raw), tf.zeros(tf.concat([batch, [1, m]], 0))], axis=-2)
    index, n = [], 0
    for i in range(c):
      index.append([])
      for j in range(c):
        index[-1].append(n if j < i else self.num_coeffs)
        n += j < i
    coeffs = tf.gather(padded, index, axis=-2)  # [..., C, C, M]
    return DiscretizedLogisticMixture(logits, per_channel(means), log_scales, coeffs,
                                      self.num_levels)

  def image_distribution(self, params):
    """The distribution over whole images.

    Args:
      params: float `[B, H, W, P]` model output.

    Returns:
      A `tfd.Distribution` with batch shape `[B]` and event shape `[H, W, C]` whose
      `log_prob(images)` takes int levels and gives nats.
    """
    return tfd.Independent(self.pixel_distribution(params), reinterpreted_batch_ndims=2)

  def subpixel_log_probs(self, params, images):
    """log p(x_ijc | x_ij,<c, x_<ij) of every subpixel, float32 `[B, H, W, C]`.

    The chain rule inside each pixel's mixture (`conditional_log_probs`): the C terms
    of a pixel sum to its joint log-probability, so the whole sum is
    `image_distribution(params).log_prob(images)`.
    """
    images = tf.cast(images, tf.int32)
    conditional = self.pixel_distribution(params).conditional_log_probs(images)  # [B, H, W, C, K]
    return tf.gather(conditional, images[..., None], batch_dims=4)[..., 0]  # [B, H, W, C]

  def subpixel_distribution(self, pixel_params, channel, pixel_levels=None):
    """p(x_c | x_<c) of channel `channel` of one pixel: a `tfd.Categorical` `[B]`.

    Args:
      pixel_params: float `[B, P]`, the parameters of one pixel.
      channel: int scalar (Python or tensor).
      pixel_levels: int `[B, C]`, levels of this pixel sampled so far (channels
        `< channel` are read). May be None only for channel 0.

    Raises:
      ValueError: for a later channel without `pixel_levels`.
    """
    if pixel_levels is None:
      if not (isinstance(channel, int) and channel == 0):
        raise ValueError("Channels after the first depend on the pixel's earlier channels: "
                         "pass pixel_levels.")
      pixel_levels = tf.zeros(tf.concat([tf.shape(pixel_params)[:-1], [self.num_channels]],
                                        0), tf.int32)
    conditional = self.pixel_distribution(pixel_params).conditional_log_probs(pixel_levels)
    return tfd.Categorical(logits=tf.gather(conditional, channel, axis=-2))  # [B, K]

  # Inverse CDF of `subpixel_distribution`, the same for every channel-by-channel head.
  quantile = CategoricalPixelHead.quantile

  def image_quantile(self, params, uniform):
    """Inverse-CDF sample of every pixel at once, channel by channel, for parameters
    that do not depend on the image: `[B, H, W, P]`, uniform `[B, H, W, C]`."""
    dist = self.pixel_distribution(params)
    levels = tf.zeros(tf.shape(uniform), tf.int32)  # [B, H, W, C]
    for c in range(self.num_channels):
      probs = tf.nn.softmax(dist.conditional_log_probs(levels)[..., c, :])  # [B, H, W, K]
      level = inverse_cdf(probs, uniform[..., c])  # [B, H, W]
      levels = tf.where(tf.range(self.num_channels) == c, level[..., None], levels)
    return levels

  def mean(self, params):
    """E[x] in levels, float `[B, H, W, C]` (exact; see `DiscretizedLogisticMixture`)."""
    return self.pixel_distribution(params).mean()


_HEADS = {head.name: head for head in
          (CategoricalPixelHead, BernoulliPixelHead, DiscretizedGaussianPixelHead,
           DiscretizedLogisticMixturePixelHead)}


def make_pixel_head(name, num_levels, num_channels, **options):
  """Returns the pixel head called `name` (see `_HEADS`).

  Args:
    name: a key of `_HEADS`.
    num_levels: K.
    num_channels: C.
    **options: head-specific settings, e.g. `num_mixtures` for "logistic_mixture".

  Raises:
    ValueError: for an unknown name.
  """
  if name not in _HEADS:
    raise ValueError(f"Unknown pixel distribution {name!r}; choose one of {sorted(_HEADS)}.")
  return _HEADS[name](num_levels, num_channels, **options)


# ---- latent variables ----------------------------------------------------------------
#
# A VAE's code z has a posterior q(z | x) (the encoder's parameters made a distribution
# here) and a prior p(z). Continuous codes are drawn by reparameterization, z = f(z0)
# with z0 = mu + sigma * eps, so exported samplers take standard normal `z` noise;
# mixture components and categories are drawn by inverse CDF from uniform noise.


def gaussian_posterior(params):
  """q(z | x) = N(mu, diag sigma^2) from encoder outputs `[B, 2D]` (mu, then s).

  sigma = softplus(s) + 1e-4: positive and smooth, where exp(s) overflows for large s.
  """
  loc, s = tf.split(tf.cast(params, tf.float32), 2, axis=-1)  # [B, D] each
  return tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.nn.softplus(s) + 1e-4)


def iaf_bijector(networks, context):
  """The inverse autoregressive flow z = f_T(... f_1(z0)) of Kingma et al. (2016).

  Each step is an inverted `tfb.MaskedAutoregressiveFlow`: its forward pass is MAF's
  one-pass inverse,

    z_t,d = (z_{t-1},d - m_d(z_{t-1},<d, c)) * sigma_d(z_{t-1},<d, c),
    log |det df_t/dz_{t-1}| = sum_d log sigma_d,

  so drawing z and its density costs one network pass per step (the inverse, needed
  only to score a z the flow did not draw, costs D). The order of z is reversed between
  steps, so every coordinate gets to depend on every other.

  Args:
    networks: T callables `(z [..., D], context) -> (shift, log_scale)`, autoregressive
      in z (`tfgen.layers.AutoregressiveNetwork`).
    context: the encoder's context c `[B, E]`, passed to every network.

  Returns:
    A `tfb.Bijector` from z0 to z (event size D).
  """
  steps = []
  for n, network in enumerate(networks):
    if n:
      size = network.event_size
      steps.append(tfp.bijectors.Permute(permutation=list(range(size - 1, -1, -1))))
    steps.append(tfp.bijectors.Invert(tfp.bijectors.MaskedAutoregressiveFlow(
        shift_and_log_scale_fn=lambda z, network=network: network(z, context))))
  return tfp.bijectors.Chain(steps[::-1])  # A Chain applies its last bijector first.


def flow_posterior(params, networks):
  """q(z | x) of an inverse autoregressive flow on a diagonal Gaussian.

  Args:
    params: encoder outputs `[B, 2D + E]`: mu and s of the Gaussian base (as in
      `gaussian_posterior`), then the context c `[B, E]` of the flow.
    networks: the T autoregressive networks of `iaf_bijector`.

  Returns:
    A `tfd.TransformedDistribution` with batch `[B]`, event `[D]`; `reparameterize`
    draws from it with the density in one pass.
  """
  d = networks[0].event_size
  base = gaussian_posterior(params[..., :2 * d])
  context = tf.cast(params[..., 2 * d:], tf.float32)  # [B, E]
  return tfd.TransformedDistribution(base, iaf_bijector(networks, context))


def _flow_parts(q):
  """(Gaussian base, flow bijector) of a `flow_posterior`; (q, None) for the Gaussian
  and categorical posteriors. (TFP's Gaussians are affine TransformedDistributions, and
  a flow with a closure is a non-composite `_TransformedDistribution` that is not one,
  so the posteriors without a flow are the ones named.)"""
  if isinstance(q, (tfd.MultivariateNormalLinearOperator, tfd.Independent)):
    return q, None
  return q.distribution, q.bijector


def reparameterize(q, eps):
  """A draw z of q(z | x) from standard normal noise, and log q(z | x) exactly.

    z0 = mu + sigma * eps,   z = f(z0),   log q(z) = log N(z0; mu, sigma) - log|det f'(z0)|

  Args:
    q: `gaussian_posterior` (f the identity) or `flow_posterior`, batch `[B]`.
    eps: standard normal `[..., B, D]`.

  Returns:
    `(z [..., B, D], log_q [..., B])`.
  """
  base, flow = _flow_parts(q)
  return _through_flow(base, flow, base.mean() + base.stddev() * eps)  # z0 [..., B, D]


def _through_flow(base, flow, z0):
  """`(f(z0), log base(z0) - log|det f'(z0)|)`: a base draw pushed through the flow
  (none: the identity) with its exact density."""
  log_q = base.log_prob(z0)  # [..., B]
  if flow is None:
    return z0, log_q
  return flow.forward(z0), log_q - flow.forward_log_det_jacobian(z0, event_ndims=1)


def sample_with_log_prob(q, num, seed):
  """`num` draws of a posterior with their log-densities, one network pass per draw.

  A flow posterior is drawn through its base (`reparameterize`'s identity), so the
  density needs no inversion; other distributions by their own `sample` and `log_prob`.

  Args:
    q: a posterior of this module, batch `[B]`.
    num: S.
    seed: a stateless seed, int32 `[2]`.

  Returns:
    `(z [S, B, ...event], log_q [S, B])`.
  """
  base, flow = _flow_parts(q)
  return _through_flow(base, flow, base.sample(num, seed=seed))


def standard_normal_prior(latent_dim):
  """p(z) = N(0, I) over `D = latent_dim` dimensions."""
  return tfd.MultivariateNormalDiag(loc=tf.zeros([latent_dim]))


def gaussian_mixture_prior(logits, locs, scales):
  """A learned prior p(z) = sum_m pi_m N(z; mu_m, diag s_m^2) of M components.

  Args:
    logits: `[M]`, pi = softmax(logits).
    locs: `[M, D]`.
    scales: positive `[M, D]`.

  Returns:
    A `tfd.MixtureSameFamily` with event `[D]`.
  """
  return tfd.MixtureSameFamily(
      tfd.Categorical(logits=tf.cast(logits, tf.float32)),
      tfd.MultivariateNormalDiag(loc=tf.cast(locs, tf.float32),
                                 scale_diag=tf.cast(scales, tf.float32)))


def vamp_prior(pseudo_posterior_params):
  """The VampPrior p(z) = (1/M) sum_m q(z | u_m) of Tomczak and Welling (2018).

  The prior is the approximate posterior aggregated over M learned pseudo-inputs u_m:
  the best prior for a given encoder is its aggregated posterior over the data, and
  the pseudo-inputs learn a cheap stand-in for it.

  Args:
    pseudo_posterior_params: the encoder's Gaussian parameters of the pseudo-inputs,
      `[M, 2D]` (see `gaussian_posterior`).

  Returns:
    A `tfd.MixtureSameFamily` with equal weights and event `[D]`.

  References:
    [1] Jakub M. Tomczak, Max Welling. VAE with a VampPrior. AISTATS 2018.
        https://arxiv.org/abs/1705.07120
  """
  components = gaussian_posterior(pseudo_posterior_params)  # batch [M]
  num = tf.shape(pseudo_posterior_params)[0]
  return tfd.MixtureSameFamily(tfd.Categorical(logits=tf.zeros([num])), components)


def prior_codes(prior, z, component=None):
  """Codes drawn from a prior by explicit noise, in TFLite builtin operators.

  N(0, I) takes its draw `z` as it is; a Gaussian mixture picks a component by inverse
  CDF from `component` and moves `z` to it, mu_k + s_k * z.

  Args:
    prior: `standard_normal_prior`, `gaussian_mixture_prior` or `vamp_prior`.
    z: standard normal `[B, D]`.
    component: uniform `[B]` in [0, 1) for a mixture, else None.

  Returns:
    float32 `[B, D]`.
  """
  if not isinstance(prior, tfd.MixtureSameFamily):
    return z
  probs = prior.mixture_distribution.probs_parameter()  # [M]
  k = inverse_cdf(tf.broadcast_to(probs, tf.concat([tf.shape(component), tf.shape(probs)],
                                                   0)), component)  # [B]
  components = prior.components_distribution
  return tf.gather(components.mean(), k) + tf.gather(components.stddev(), k) * z


def categorical_posterior(logits):
  """q(z | x) of N independent categorical variables of G categories, one-hot codes.

  Args:
    logits: `[B, N * G]` encoder outputs.

  Returns:
    A `tfd.Independent(tfd.OneHotCategorical)` with batch `[B]`, event `[N, G]`.
  """
  return tfd.Independent(tfd.OneHotCategorical(logits=tf.cast(logits, tf.float32)), 1)


def uniform_categorical_prior(num_latents, num_categories):
  """p(z): N independent uniform categorical variables, one-hot, event `[N, G]`."""
  return tfd.Independent(tfd.OneHotCategorical(
      logits=tf.zeros([num_latents, num_categories])), 1)


def relaxed_categorical_sample(logits, temperature):
  """A reparameterized Gumbel-softmax (Concrete) draw of one-hot codes.

  y = softmax((logits + g) / tau) with Gumbel noise g: as tau -> 0 the draws become
  one-hot samples of the categorical; at tau > 0 they are differentiable in the logits
  (Jang et al. 2017; Maddison et al. 2017).

  Args:
    logits: `[B, N, G]`.
    temperature: tau > 0.

  Returns:
    `[B, N, G]` points of the simplex.

  References:
    [1] Eric Jang, Shixiang Gu, Ben Poole. Categorical Reparameterization with
        Gumbel-Softmax. ICLR 2017. https://arxiv.org/abs/1611.01144
    [2] Chris J. Maddison, Andriy Mnih, Yee Whye Teh. The Concrete Distribution: A
        Continuous Relaxation of Discrete Random Variables. ICLR 2017.
        https://arxiv.org/abs/1611.00712
  """
  return tfd.RelaxedOneHotCategorical(temperature, logits=tf.cast(logits, tf.float32)).sample()


def categorical_codes(probs, uniform):
  """One-hot codes `[..., N, G]` drawn by inverse CDF: probs `[..., N, G]`, uniform
  `[..., N]` in [0, 1). Builtin operators only."""
  return tf.one_hot(inverse_cdf(probs, uniform), probs.shape[-1])


def bits_per_dim(nll_nats, num_subpixels):
  """Converts nats per image to bits per subpixel: nll / (H * W * C * ln 2)."""
  return nll_nats / (num_subpixels * math.log(2.0))
