"""Autoencoders and variational autoencoders, fully connected and convolutional.

A VAE (Kingma and Welling 2014) models

  p(x | y) = integral p(x | z, y) p(z) dz,    p(z) = N(0, I)

with a decoder p(x | z, y) (a pixel head of `tfgen.distributions`: Bernoulli,
categorical, or a Gaussian with learned variance binned onto the levels) and an
encoder q(z | x, y) = N(mu, diag sigma^2). Training maximizes the ELBO

  log p(x) >= E_q[log p(x | z)] - KL(q(z | x) || p(z))

with one reparameterized sample z = mu + sigma * eps and the KL in closed form. The
conditioning on a class label y (a CVAE) concatenates its one-hot code to the
encoder's and the decoder's inputs.

An autoencoder has the same encoder and decoder with a deterministic code and an L2
reconstruction loss; it has no likelihood.

Glossary of tensor shapes:
  B: batch.  H, W: image height and width.  C: colour channels.  K: levels.
  D: latent dimensions (`latent_dim`).  N: number of classes.
  P: decoder parameters per pixel (`head.num_params`).
  S: importance samples in one chunk.
"""

import keras
import numpy as np
import tensorflow as tf

from tfgen import completion
from tfgen import distributions
from tfgen.models import api
from tfgen.models import base


def _widths(text, what):
  """"1000-500-250" -> [1000, 500, 250]."""
  try:
    widths = [int(w) for w in str(text).split("-") if w]
  except ValueError:
    widths = []
  if not widths or min(widths) < 1:
    raise ValueError(
        f"{what} must be positive layer widths joined by '-', e.g. '1000-500-250', got "
        f"{text!r}.")
  return widths


def _dense_stack(widths, out_dim, name):
  """A fully connected stack: ReLU layers of `widths`, then a linear `out_dim` layer."""
  stack = [keras.layers.Dense(w, activation="relu") for w in widths]
  return keras.Sequential(stack + [keras.layers.Dense(out_dim)], name=name)


class EncoderDecoder(base.ImageModel, api.LatentModel):
  """What autoencoders and VAEs share: encoder and decoder sub-models around a code z.

  The encoder maps images (scaled to [-1, 1], with the one-hot label of a conditional
  model) to `encoder_outputs` numbers per image; the decoder maps a code `[B, D]`
  (with the label) to per-pixel parameters `[B, H, W, P]`. Both are plain Keras
  models (`model.encoder`, `model.decoder`) a user can take out.

  Hyper-parameters common to every latent model:
    latent_dim: D.
    architecture: "dense" (layers of `hidden_dims` on the flattened image) or "conv"
      (stride-2 convolutions with `conv_filters`, then `hidden_dims` dense layers; the
      decoder mirrors it with transposed convolutions).
    hidden_dims: dense layer widths, "1000-500-250" (the decoder uses them reversed).
    conv_filters: convolution widths for "conv", "32-64".
  """

  PIXEL_DISTRIBUTION = None  # Set per instance from the `likelihood` hparam.

  def _build_coders(self, encoder_outputs, decoder_params):
    hp = self.hparams
    if hp["latent_dim"] < 1:
      raise ValueError(f"latent_dim must be positive, got {hp['latent_dim']}.")
    if hp["architecture"] not in ("dense", "conv"):
      raise ValueError(f"architecture must be 'dense' or 'conv', got {hp['architecture']!r}.")
    hidden = _widths(hp["hidden_dims"], "hidden_dims")
    h, w, c = self.image_shape
    n = self.num_classes or 0
    if hp["architecture"] == "dense":
      self.encoder = _dense_stack(hidden, encoder_outputs, "encoder")
      self.encoder.build((None, h * w * c + n))
      decoder = _dense_stack(hidden[::-1], h * w * decoder_params, "decoder_mlp")
      decoder.build((None, hp["latent_dim"] + n))
      self.decoder = keras.Sequential(
          [decoder, keras.layers.Reshape((h, w, decoder_params))], name="decoder")
    else:
      filters = _widths(hp["conv_filters"], "conv_filters")
      down = 2 ** len(filters)
      fh, fw = -(-h // down), -(-w // down)  # The smallest map, rounded up.
      self.encoder = keras.Sequential(
          [keras.layers.Conv2D(f, 4, strides=2, padding="same", activation="relu")
           for f in filters] + [keras.layers.Flatten()]
          + [keras.layers.Dense(width, activation="relu") for width in hidden]
          + [keras.layers.Dense(encoder_outputs)], name="encoder")
      self.encoder.build((None, h, w, c + n))
      self.decoder = keras.Sequential(
          [keras.layers.Dense(width, activation="relu") for width in hidden[::-1]]
          + [keras.layers.Dense(fh * fw * filters[-1], activation="relu"),
             keras.layers.Reshape((fh, fw, filters[-1]))]
          + [keras.layers.Conv2DTranspose(f, 4, strides=2, padding="same", activation="relu")
             for f in filters[::-1]]
          + [keras.layers.Conv2D(decoder_params, 3, padding="same"),
             # The transposed stack reaches (fh * down, fw * down) >= (h, w): crop.
             keras.layers.Cropping2D(((0, fh * down - h), (0, fw * down - w)))],
          name="decoder")
      self.decoder.build((None, hp["latent_dim"] + n))

  # ---- the two halves ---------------------------------------------------------------

  def _one_hot(self, labels):
    return None if labels is None else tf.one_hot(labels, self.num_classes)  # [B, N]

  def _encoder_outputs(self, inputs, training=False):
    x = self._scaled_images(inputs)  # [B, H, W, C]
    y = self._one_hot(self._labels(inputs))
    if self.hparams["architecture"] == "dense":
      x = tf.reshape(x, [tf.shape(x)[0], -1])  # [B, H*W*C]
      if y is not None:
        x = tf.concat([x, y], axis=-1)
    elif y is not None:  # A label map: one-hot channels at every position.
      shape = tf.concat([tf.shape(x)[:3], [self.num_classes]], 0)
      x = tf.concat([x, tf.broadcast_to(y[:, None, None, :], shape)], axis=-1)
    return self.encoder(x, training=training)  # [B, encoder_outputs]

  def _decoder_params(self, z, labels=None, training=False):
    """Per-pixel parameters `[B, H, W, P]` of codes `z` `[B, D]`."""
    y = self._one_hot(labels)
    if y is not None:
      z = tf.concat([z, y], axis=-1)
    return self.decoder(z, training=training)

  def _checked(self, images, labels):
    images = self._check_images(images)
    return images, self._check_labels(labels, images.shape[0])

  def _check_codes(self, z, labels):
    z = tf.convert_to_tensor(z, tf.float32)
    if z.shape.rank != 2 or z.shape[-1] != self.latent_dim:
      raise ValueError(
          f"Latent codes must have shape (B, {self.latent_dim}), got {tuple(z.shape)}.")
    if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(z))):
      raise ValueError("Latent codes z hold NaN or inf values.")
    return z, self._check_labels(labels, z.shape[0])

  @property
  def latent_dim(self):
    return self.hparams["latent_dim"]


@keras.saving.register_keras_serializable(package="tfgen")
class Autoencoder(EncoderDecoder):
  """A deterministic autoencoder with an L2 reconstruction loss.

    loss = mean_{i, j, c} (x_ijc - sigmoid(decoder(encoder(x)))_ijc)^2,  x in [0, 1]

  The default is the classic 784-1000-500-250-d stack of Hinton and Salakhutdinov
  (2006) (ReLU rather than their RBM-pretrained logistic units); `latent_dim=2` gives
  codes to plot. `architecture="conv"` (or `build("conv_autoencoder")`) is the
  convolutional variant.

  References:
    [1] Geoffrey E. Hinton, Ruslan R. Salakhutdinov. Reducing the Dimensionality of
        Data with Neural Networks. Science 313, 2006.
  """

  MODEL_NAME = "autoencoder"
  HPARAMS = {"latent_dim": 30, "architecture": "dense", "hidden_dims": "1000-500-250",
             "conv_filters": "32-64"}

  def __init__(self, image_shape, num_levels, num_classes=None, name=None, **hparams):
    super().__init__(image_shape, num_levels, num_classes, name=name, **hparams)
    self._build_coders(self.latent_dim, self.image_shape[-1])
    self.mse_tracker = keras.metrics.Mean(name="reconstruction_mse")
    self._finish_init()

  def call(self, inputs, training=False):
    z = self._encoder_outputs(inputs, training)  # [B, D]
    return self._decoder_params(z, self._labels(inputs), training)  # [B, H, W, C] logits

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    """Mean squared error per pixel, on images scaled to [0, 1], averaged over the
    global batch (`tf.nn.compute_average_loss`, so replicas are not double counted)."""
    del y, sample_weight, training
    images, _ = base.unpack_inputs(x)
    target = tf.cast(images, tf.float32) / (self.num_levels - 1)  # [B, H, W, C]
    # float32 whatever the policy: the loss of a mixed-precision model stays float32.
    reconstruction = tf.sigmoid(tf.cast(y_pred, tf.float32))  # [B, H, W, C]
    error = tf.reduce_mean(tf.square(target - reconstruction), axis=[1, 2, 3])  # [B]
    self.mse_tracker.update_state(error)
    return tf.nn.compute_average_loss(error)

  def test_metrics(self, dataset, **options):
    """`{"reconstruction_mse": ...}` on [0, 1]-scaled pixels (an AE has no likelihood)."""
    del options
    results = self.evaluate(dataset, verbose=0, return_dict=True)
    return {"reconstruction_mse": float(results["reconstruction_mse"])}

  def encode(self, images, labels=None):
    """The codes of `images`, float32 `[B, D]`."""
    images, labels = self._checked(images, labels)
    return self._encoder_outputs(self._inputs(images, labels))

  features = encode

  def decode_mean(self, z, labels=None):
    z, labels = self._check_codes(z, labels)
    logits = tf.cast(self._decoder_params(z, labels), tf.float32)  # [B, H, W, C]
    return tf.sigmoid(logits) * (self.num_levels - 1)

  decode = decode_mean


@keras.saving.register_keras_serializable(package="tfgen")
class ConvAutoencoder(Autoencoder):
  """`Autoencoder` with `architecture="conv"` by default."""

  MODEL_NAME = "conv_autoencoder"
  HPARAMS = dict(Autoencoder.HPARAMS, architecture="conv", hidden_dims="256")


@keras.saving.register_keras_serializable(package="tfgen")
class VAE(EncoderDecoder, api.VariationalModel, api.Completer):
  """A variational autoencoder; with `num_classes`, a conditional VAE p(x | y).

  `call` returns the parameters of both halves for one reparameterized sample,
  `{"posterior": [B, 2D], "z": [B, D], "likelihood": [B, H, W, P]}`; the loss is the
  negative ELBO per image,

    -ELBO = -log p(x | z) + beta_t KL(q(z | x) || N(0, I)),   z = mu + sigma * eps,

  with beta_t = beta * min(1, step / kl_warmup_steps) (KL warm-up, Bowman et al. 2016;
  Sonderby et al. 2016). Reported metrics (nats per image) are always at beta = 1:
  `elbo`, `reconstruction` (E_q log p(x | z)), `kl`, and `neg_elbo`.

  `log_prob(x)` is the importance-weighted estimate (Burda et al. 2016)

    log p(x) ~= log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x),   z_i ~ q(z | x),

  a lower bound in expectation that tightens to log p(x) as k grows (k = 1: the ELBO).

  Hyper-parameters (see also `EncoderDecoder`):
    likelihood: "auto" (Bernoulli for K = 2, else "gaussian"), "bernoulli",
      "categorical" (a softmax over the K levels) or "gaussian" (learned mean and
      variance, binned onto the levels: `distributions.DiscretizedGaussianPixelHead`).
    beta: weight of the KL term in the training loss.
    kl_warmup_steps: steps over which the KL weight rises linearly from 0 to beta.

  References:
    [1] Diederik P. Kingma, Max Welling. Auto-Encoding Variational Bayes. ICLR 2014.
        https://arxiv.org/abs/1312.6114
    [2] Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. Importance Weighted
        Autoencoders. ICLR 2016. https://arxiv.org/abs/1509.00519
    [3] Kihyuk Sohn, Honglak Lee, Xinchen Yan. Learning Structured Output
        Representation using Deep Conditional Generative Models. NeurIPS 2015.
  """

  MODEL_NAME = "vae"
  # The lecture's VAE: 784-dimensional input, 20-dimensional latent.
  HPARAMS = {"latent_dim": 20, "architecture": "dense", "hidden_dims": "500-500",
             "conv_filters": "32-64", "likelihood": "auto", "beta": 1.0,
             "kl_warmup_steps": 0}
  LIKELIHOODS = ("auto", "bernoulli", "categorical", "gaussian")

  def __init__(self, image_shape, num_levels, num_classes=None, name=None, **hparams):
    super().__init__(image_shape, num_levels, num_classes, name=name, **hparams)
    hp = self.hparams
    if hp["likelihood"] not in self.LIKELIHOODS:
      raise ValueError(f"likelihood must be one of {self.LIKELIHOODS}, got {hp['likelihood']!r}.")
    if hp["beta"] < 0 or hp["kl_warmup_steps"] < 0:
      raise ValueError("beta and kl_warmup_steps must be non-negative.")
    likelihood = hp["likelihood"]
    if likelihood == "auto":
      likelihood = "bernoulli" if self.num_levels == 2 else "gaussian"
    self.head = distributions.make_pixel_head(likelihood, self.num_levels,
                                              self.image_shape[-1])
    self.prior = distributions.standard_normal_prior(self.latent_dim)
    self._build_coders(2 * self.latent_dim, self.head.num_params)
    self.trackers = {name: keras.metrics.Mean(name=name)
                     for name in ("neg_elbo", "elbo", "reconstruction", "kl")}
    self._finish_init()

  def call(self, inputs, training=False):
    posterior = self._encoder_outputs(inputs, training)  # [B, 2D]
    q = distributions.gaussian_posterior(posterior)
    # Reparameterized: gradients flow through mu and sigma. A stateful op, so every
    # replica and every step draws fresh noise without a seed to thread through.
    eps = tf.random.normal(tf.shape(q.mean()))  # [B, D]
    z = q.mean() + q.stddev() * eps  # [B, D]
    return {"posterior": posterior, "z": z,
            "likelihood": self._decoder_params(z, self._labels(inputs), training)}

  def _kl_weight(self):
    beta = self.hparams["beta"]
    warmup = self.hparams["kl_warmup_steps"]
    if not warmup or self.optimizer is None:
      return beta
    step = tf.cast(self.optimizer.iterations, tf.float32)
    return beta * tf.minimum(1.0, step / float(warmup))

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    """Negative ELBO in nats per image (with beta and warm-up when training), as sum /
    global batch size so that replicas' gradients add up to the batch mean."""
    del y
    if sample_weight is not None:
      raise ValueError("Sample weights are not supported by likelihood models.")
    images, _ = base.unpack_inputs(x)
    q = distributions.gaussian_posterior(y_pred["posterior"])
    reconstruction = self.head.image_distribution(y_pred["likelihood"]).log_prob(
        tf.cast(images, tf.int32))  # [B]
    kl = distributions.tfd.kl_divergence(q, self.prior)  # [B]
    elbo = reconstruction - kl
    for name, value in (("neg_elbo", -elbo), ("elbo", elbo),
                        ("reconstruction", reconstruction), ("kl", kl)):
      self.trackers[name].update_state(value)
    weight = self._kl_weight() if training else 1.0
    return tf.nn.compute_average_loss(-reconstruction + weight * kl)

  # ---- inference --------------------------------------------------------------------

  def encode(self, images, labels=None):
    """q(z | x, y): a `tfd.MultivariateNormalDiag` with batch shape `[B]`."""
    images, labels = self._checked(images, labels)
    return distributions.gaussian_posterior(
        self._encoder_outputs(self._inputs(images, labels)))

  def features(self, images, labels=None):
    """The posterior mean E_q[z], float32 `[B, D]`."""
    return self.encode(images, labels).mean()

  def decode(self, z, labels=None):
    """p(x | z, y): a `tfd.Distribution` with batch `[B]`, event `[H, W, C]`."""
    z, labels = self._check_codes(z, labels)
    return self.head.image_distribution(self._decoder_params(z, labels))

  def decode_mean(self, z, labels=None):
    z, labels = self._check_codes(z, labels)
    return self.head.mean(self._decoder_params(z, labels))

  def elbo(self, images, labels=None, seed=0):
    """The ELBO of each image (one reparameterized sample, analytic KL), nats `[B]`."""
    return self.log_prob(images, labels, num_importance_samples=1, seed=seed)

  def log_prob(self, images, labels=None, num_importance_samples=1000, seed=0,
               max_elements=2 ** 24):
    """Importance-weighted estimate of log p(x | y) per image, in nats.

      log p(x) ~= logsumexp_i [log p(x | z_i) + log p(z_i) - log q(z_i | x)] - log k

    The k samples are drawn in chunks of S (so at most `max_elements` decoder
    parameters exist at once) and combined by a running logsumexp, so memory stays
    bounded for any k.

    Args:
      images: integer `[B, H, W, C]` levels.
      labels: int `[B]` for a conditional model.
      num_importance_samples: k >= 1. k = 1 is an (unbiased) ELBO estimate.
      seed: int; the same seed gives the same estimate.
      max_elements: bound on S * B * H * W * P.

    Returns:
      float32 `[B]`.
    """
    k = int(num_importance_samples)
    if k < 1:
      raise ValueError(f"num_importance_samples must be positive, got {k}.")
    images, labels = self._checked(images, labels)
    batch = int(images.shape[0])
    if batch == 0:  # Nothing to score (the encoder's layers fail on empty batches).
      return tf.zeros([0], tf.float32)
    per_sample = max(1, batch * self.num_subpixels // self.image_shape[-1]
                     * self.head.num_params)
    chunk = int(max(1, min(k, max_elements // per_sample)))
    fn = self._compiled("iw_log_prob",
                        lambda: tf.function(self._iw_log_prob, reduce_retracing=True))
    return fn(images, labels, tf.constant(k), tf.constant(chunk), tf.constant(int(seed)))

  def _iw_log_prob(self, images, labels, k, chunk, seed):
    q = distributions.gaussian_posterior(
        self._encoder_outputs(self._inputs(images, labels)))  # batch [B]
    batch = tf.shape(images)[0]
    labels_s = None if labels is None else tf.repeat(labels[None], chunk, axis=0)

    def body(i, total):
      size = tf.minimum(chunk, k - i)
      z = q.sample(chunk, seed=tf.stack([seed, i]))  # [S, B, D]
      flat = tf.reshape(z, [-1, self.latent_dim])  # [S*B, D]
      params = self._decoder_params(
          flat, None if labels_s is None else tf.reshape(labels_s, [-1]))
      log_px = self.head.image_distribution(params).log_prob(
          tf.tile(images, [chunk, 1, 1, 1]))  # [S*B]
      log_w = (tf.reshape(log_px, [chunk, batch]) + self.prior.log_prob(z)
               - q.log_prob(z))  # [S, B]
      log_w = tf.where(tf.range(chunk)[:, None] < size, log_w, -np.inf)  # Last chunk.
      return i + chunk, tf.reduce_logsumexp(tf.stack([total, tf.reduce_logsumexp(log_w, 0)]),
                                            axis=0)

    start = tf.fill([batch], tf.constant(-np.inf, tf.float32))  # [B]
    _, total = tf.while_loop(lambda i, _: i < k, body, (tf.constant(0), start))
    return total - tf.math.log(tf.cast(k, tf.float32))

  def test_metrics(self, dataset, num_importance_samples=1000, **options):
    """Test ELBO terms (one sample per image) and the k-sample estimate of -log p(x).

    Returns:
      `{"nll_nats": -IWAE_k, "bits_per_dim": of nll_nats, "neg_elbo_nats",
      "reconstruction_nats": -E_q log p(x|z), "kl_nats"}`, means over the dataset.
    """
    del options
    results = self.evaluate(dataset, verbose=0, return_dict=True)
    total, count = 0.0, 0
    for step, element in enumerate(dataset):
      images, labels = base.unpack_inputs(element)
      labels = labels if self.num_classes else None  # Data may have labels p(x) ignores.
      log_p = self.log_prob(images, labels, num_importance_samples, seed=step)
      total += float(tf.reduce_sum(log_p))
      count += int(log_p.shape[0])
    nll = -total / count
    return {"nll_nats": nll,
            "bits_per_dim": float(distributions.bits_per_dim(nll, self.num_subpixels)),
            "neg_elbo_nats": float(results["neg_elbo"]),
            "reconstruction_nats": -float(results["reconstruction"]),
            "kl_nats": float(results["kl"])}

  # ---- export (used by export/export_lib.py) ----------------------------------------

  # k of the importance-weighted log p(x) in exported graphs (fixed at export time).
  EXPORT_IMPORTANCE_SAMPLES = 100

  def export_noise_specs(self, batch):
    """The randomness an exported sampler takes: z ~ N(0, I) and uniform pixel noise."""
    return {"z": tf.TensorSpec((batch, self.latent_dim), tf.float32),
            "noise": tf.TensorSpec((batch,) + self.image_shape, tf.float32)}

  def sample_from_noise(self, noise, condition, builtin_only=False):
    """Prior draw `z` and inverse-CDF pixel draw in one graph of TFLite builtin ops."""
    del builtin_only  # Always builtin.
    return self.head.image_quantile(self._decoder_params(noise["z"], condition),
                                    noise["noise"])

  def log_prob_graph(self, images, condition):
    """The k = `EXPORT_IMPORTANCE_SAMPLES` estimate of log p(x | y), seed 0."""
    k = self.EXPORT_IMPORTANCE_SAMPLES
    return self._iw_log_prob(images, condition, tf.constant(k), tf.constant(k),
                             tf.constant(0))

  def export_extras(self, batch):
    """`decode` (z, noise -> parameters, mean, a sample) and `encode` (-> mu, sigma)."""
    z_spec = tf.TensorSpec((batch, self.latent_dim), tf.float32, name="z")
    noise_spec = tf.TensorSpec((batch,) + self.image_shape, tf.float32, name="noise")
    image_spec = tf.TensorSpec((batch,) + self.image_shape, tf.int32, name="images")

    def decode(z, noise, labels=None):
      with tf.control_dependencies([tf.debugging.assert_equal(
          tf.shape(z)[0], tf.shape(noise)[0],
          message="z and noise must have the same batch size (one row of z per image)")]):
        params = self._decoder_params(z, labels)  # [B, H, W, P]
      return {"params": params, "mean": self.head.mean(params),
              "levels": self.head.image_quantile(params, noise)}

    def encode(images, labels=None):
      q = distributions.gaussian_posterior(
          self._encoder_outputs(self._inputs(images, labels)))
      return {"mean": q.mean(), "stddev": q.stddev()}

    return {"decode": (decode, [z_spec, noise_spec]), "encode": (encode, [image_spec])}

  # ---- completion -------------------------------------------------------------------

  # Encode/decode steps of `complete` by default, and of the exported completion.
  COMPLETION_STEPS = 50

  def complete(self, images, mask, num_samples=1, seed=None, noise=None, labels=None,
               condition=None, steps=COMPLETION_STEPS):
    """Draws the missing subpixels of `images` by iterated encoding and decoding.

    The missing-data imputation chain of Rezende et al. [4]: the missing subpixels start
    from a draw of the model (z_0 ~ p(z), x_0 ~ p(x | z_0)), and each step re-encodes
    the image and redraws them,

      z_t ~ q(z | x_{t-1}),   x_t,missing ~ p(x_missing | z_t),   x_t,observed = x_observed.

    Were q(z | x) the exact posterior this would be a Gibbs sampler over (z, x_missing),
    whose stationary distribution is p(x_missing | x_observed); with the learned q it is
    an approximation, the closer the better q is. The result is the image after the
    last step.

    Args:
      images: integer `[B, H, W, C]` (or `[B, H, W]` for C=1) levels in `[0, K)`.
      mask: bool or 0/1 of the images' shape, or `[B, H, W]` for whole pixels: true at
        the observed subpixels. Each image needs observed and missing subpixels.
      num_samples: completions per image, `S`.
      seed: int; the same seed gives the same completions. None draws fresh noise.
      noise: optional `{"z": [S, B, T, D] standard normal, "noise": [S, B, T, H, W, C]
        uniform in [0, 1)}` for the T = `steps` steps, instead of a seed.
      labels: int `[B]` (or a scalar) class labels for a conditional VAE.
      condition: refused (a VAE conditions on labels); accepted for the common call.
      steps: T >= 1, the number of decodes (step 1 is the draw from the prior).

    Returns:
      int32 `[S, B, H, W, C]`.

    Raises:
      ValueError: for bad images, mask, labels, noise, `num_samples` or `steps`.

    References:
      [4] Danilo J. Rezende, Shakir Mohamed, Daan Wierstra. Stochastic Backpropagation
          and Approximate Inference in Deep Generative Models. ICML 2014.
          https://arxiv.org/abs/1401.4082
    """
    images = self._check_images(images)
    batch = images.shape[0]
    keep = completion.keep_mask(mask, self.image_shape, batch)
    num_samples = self._check_num(num_samples, "num_samples")
    steps = self._check_num(steps, "steps")
    labels = self._check_condition(labels, condition, batch)
    lead = (num_samples, batch, steps)
    if noise is None:
      noise = {"z": self._normal_noise(lead + (self.latent_dim,), seed, stream=2),
               "noise": self._uniform_noise(lead + self.image_shape, seed, stream=3)}
    if not isinstance(noise, dict) or sorted(noise) != ["noise", "z"]:
      raise ValueError(
          "noise of a VAE's completion must be a dict {'z': standard normal [S, B, steps, "
          "latent_dim], 'noise': uniform [S, B, steps, H, W, C]}, got "
          f"{sorted(noise) if isinstance(noise, dict) else type(noise).__name__}.")
    z = tf.convert_to_tensor(noise["z"], tf.float32)
    if tuple(z.shape) != lead + (self.latent_dim,):
      raise ValueError(f"noise['z'] must have shape {lead + (self.latent_dim,)}, got "
                       f"{tuple(z.shape)}.")
    if not bool(tf.reduce_all(tf.math.is_finite(z))):
      raise ValueError("noise['z'] holds NaN or inf values.")
    uniform = self._check_uniform(noise["noise"], lead + self.image_shape, "noise['noise']")
    num = num_samples * batch
    tile = lambda x: None if x is None else tf.tile(x, [num_samples] + [1] * (x.shape.rank - 1))
    fill = self._compiled("complete", lambda: tf.function(
        lambda x, k, z, u, c: self.complete_from_noise(x, k, {"z": z, "noise": u}, c),
        reduce_retracing=True))
    completed = fill(tile(images), tile(keep),
                     tf.reshape(z, (num, steps, self.latent_dim)),
                     tf.reshape(uniform, (num, steps) + self.image_shape), tile(labels))
    return tf.reshape(completed, (num_samples, batch) + self.image_shape)

  def complete_from_noise(self, images, keep, noise, condition, builtin_only=False):
    """`complete` as a graph of TFLite builtin operators: T = `noise["z"].shape[1]`
    steps of the chain, images and keep `[N, H, W, C]`, z `[N, T, D]`, uniform
    `[N, T, H, W, C]`."""
    del builtin_only  # Always builtin.
    z_noise, uniform = noise["z"], noise["noise"]  # [N, T, D], [N, T, H, W, C]
    observed = tf.where(keep, images, tf.zeros_like(images))  # [N, H, W, C]

    def decode(z, step, x):  # x with its missing subpixels drawn from p(x | z).
      drawn = self.head.image_quantile(self._decoder_params(z, condition),
                                       tf.gather(uniform, step, axis=1))  # [N, H, W, C]
      return tf.where(keep, observed, drawn)

    def body(step, x):
      q = distributions.gaussian_posterior(
          self._encoder_outputs(self._inputs(x, condition)))  # batch [N]
      z = q.mean() + q.stddev() * tf.gather(z_noise, step, axis=1)  # [N, D]
      return step + 1, decode(z, step, x)

    start = decode(z_noise[:, 0], 0, observed)  # From the prior: nothing to encode yet.
    _, x = tf.while_loop(lambda step, _: step < tf.shape(z_noise)[1], body,
                         (tf.constant(1), start))
    return x

  def completion_noise_specs(self, batch):
    """z `[B, T, D]` and uniform noise `[B, T, H, W, C]` for T = `COMPLETION_STEPS`."""
    steps = self.COMPLETION_STEPS
    return {"z": tf.TensorSpec((batch, steps, self.latent_dim), tf.float32),
            "noise": tf.TensorSpec((batch, steps) + self.image_shape, tf.float32)}

  # ---- sampling ---------------------------------------------------------------------

  def sample(self, num, seed=None, labels=None, mean=False, z=None, noise=None):
    """Draws z ~ p(z), then x ~ p(x | z, y) (or the decoder's mean image).

    Sampling from p(x | z) is by inverse CDF from uniform noise, as for every tfgen
    sampler, so it is a deterministic function of (z, noise) and exported samplers can
    be checked against it.

    Args:
      num: number of images.
      seed: int; the same seed gives the same images. None draws fresh randomness.
      labels: int `[num]` (or a scalar) for a conditional model.
      mean: return the decoder's mean image rounded to levels instead of a draw.
      z: optional float `[num, D]` codes instead of prior draws.
      noise: optional float `[num, H, W, C]` uniform noise in [0, 1).

    Returns:
      int32 `[num, H, W, C]` levels.
    """
    num = self._check_num(num)
    labels = self._check_labels(labels, num)
    shape = (num,) + self.image_shape
    if z is None:
      z = self._normal_noise([num, self.latent_dim], seed, stream=0)
    z, _ = self._check_codes(z, labels)
    if mean:
      return tf.cast(tf.round(self.decode_mean(z, labels)), tf.int32)
    if noise is None:
      noise = self._uniform_noise(shape, seed, stream=1)
    noise = self._check_uniform(noise, shape)
    return self.sample_from_noise({"z": z, "noise": noise}, labels)


@keras.saving.register_keras_serializable(package="tfgen")
class ConvVAE(VAE):
  """`VAE` with `architecture="conv"` by default."""

  MODEL_NAME = "conv_vae"
  HPARAMS = dict(VAE.HPARAMS, architecture="conv", hidden_dims="256")


__all__ = ["Autoencoder", "ConvAutoencoder", "ConvVAE", "EncoderDecoder", "VAE"]
