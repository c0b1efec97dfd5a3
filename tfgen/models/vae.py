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
from tfgen import layers
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
      decoder.build((None, self.latent_dim + n))
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
      self.decoder.build((None, self.latent_dim + n))

  # ---- the two halves ---------------------------------------------------------------

  def _one_hot(self, labels):
    return None if labels is None else tf.one_hot(labels, self.num_classes)  # [B, N]

  def _encoder_outputs(self, inputs, training=False):
    return self._encode_scaled(self._scaled_images(inputs), self._one_hot(self._labels(inputs)),
                               training)

  def _encode_scaled(self, x, y, training=False):
    """Encoder outputs of images scaled to [-1, 1] `[B, H, W, C]` and one-hot labels."""
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
      # An autoencoder's code comes from its encoder, in the compute dtype of a mixed
      # policy (bfloat16, float16); the one-hot labels are float32.
      z = tf.concat([z, tf.cast(y, z.dtype)], axis=-1)
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
    del y, training
    self._refuse_sample_weight(sample_weight)
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
  `{"posterior": [B, E], "z": [B, D], "log_q": [B], "likelihood": [B, H, W, P]}`; the
  loss is the negative ELBO per image,

    -ELBO = -log p(x | z) + beta_t KL(q(z | x) || p(z)),   z ~ q(z | x) reparameterized,

  with beta_t = beta * min(1, step / kl_warmup_steps) (KL warm-up, Bowman et al. 2016;
  Sonderby et al. 2016). The KL is in closed form for a diagonal Gaussian posterior with
  the standard normal prior, and for categorical latents; otherwise (a flow posterior, a
  learned prior) it is the one-sample Monte Carlo estimate log q(z | x) - log p(z) at the
  same z, unbiased, so the ELBO stays an unbiased estimate. Reported metrics (nats per
  image) are always at beta = 1: `elbo`, `reconstruction` (E_q log p(x | z)), `kl`, and
  `neg_elbo`.

  `log_prob(x)` is the importance-weighted estimate (Burda et al. 2016)

    log p(x) ~= log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x),   z_i ~ q(z | x),

  a lower bound in expectation that tightens to log p(x) as k grows (k = 1: the ELBO).

  The latent variables (hyper-parameters below):
    - posterior q(z | x): "gaussian", N(mu, diag sigma^2); or "iaf", that Gaussian
      pushed through `num_flows` steps of an inverse autoregressive flow whose networks
      (MADEs of `flow_units` hidden units) also read a context of `flow_units` encoder
      outputs (Kingma et al. 2016, `distributions.iaf_bijector`).
    - prior p(z): "normal", N(0, I); "mixture", a learned mixture of
      `prior_components` diagonal Gaussians; or "vamp", the VampPrior (Tomczak and
      Welling 2018), the Gaussian posterior aggregated over `prior_components` learned
      pseudo-inputs (an unconditional VAE with the Gaussian posterior only).
    - latent "categorical": instead of a Gaussian z, `num_latents` categorical
      variables of `num_categories` each (one-hot codes, D = num_latents *
      num_categories) with a uniform prior, trained through the Gumbel-softmax relaxation
      at `temperature` (Jang et al. 2017; Maddison et al. 2017) and evaluated with the
      discrete model's exact terms: the analytic KL to the uniform prior, and discrete
      draws of q in `log_prob` and whenever `call` is not training (so `evaluate`'s
      ELBO is the discrete model's).

  Hyper-parameters (see also `EncoderDecoder`):
    likelihood: "auto" (Bernoulli for K = 2, else "gaussian"), "bernoulli",
      "categorical" (a softmax over the K levels) or "gaussian" (learned mean and
      variance, binned onto the levels: `distributions.DiscretizedGaussianPixelHead`).
    beta: weight of the KL term in the training loss.
    kl_warmup_steps: steps over which the KL weight rises linearly from 0 to beta.
    posterior, num_flows, flow_units, prior, prior_components, latent, num_latents,
      num_categories, temperature: the latent variables, above.

  References:
    [1] Diederik P. Kingma, Max Welling. Auto-Encoding Variational Bayes. ICLR 2014.
        https://arxiv.org/abs/1312.6114
    [2] Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. Importance Weighted
        Autoencoders. ICLR 2016. https://arxiv.org/abs/1509.00519
    [3] Kihyuk Sohn, Honglak Lee, Xinchen Yan. Learning Structured Output
        Representation using Deep Conditional Generative Models. NeurIPS 2015.
    [4] Diederik P. Kingma, Tim Salimans, Rafal Jozefowicz, Xi Chen, Ilya Sutskever, Max
        Welling. Improved Variational Inference with Inverse Autoregressive Flow.
        NeurIPS 2016. https://arxiv.org/abs/1606.04934
    [5] Jakub M. Tomczak, Max Welling. VAE with a VampPrior. AISTATS 2018.
        https://arxiv.org/abs/1705.07120
    [6] Eric Jang, Shixiang Gu, Ben Poole. Categorical Reparameterization with
        Gumbel-Softmax. ICLR 2017. https://arxiv.org/abs/1611.01144
  """

  MODEL_NAME = "vae"
  # The lecture's VAE: 784-dimensional input, 20-dimensional latent.
  HPARAMS = {"latent_dim": 20, "architecture": "dense", "hidden_dims": "500-500",
             "conv_filters": "32-64", "likelihood": "auto", "beta": 1.0,
             "kl_warmup_steps": 0, "posterior": "gaussian", "num_flows": 2,
             "flow_units": 256, "prior": "normal", "prior_components": 100,
             "latent": "gaussian", "num_latents": 20, "num_categories": 10,
             "temperature": 0.5}
  LIKELIHOODS = ("auto", "bernoulli", "categorical", "gaussian")
  POSTERIORS = ("gaussian", "iaf")
  PRIORS = ("normal", "mixture", "vamp")
  LATENTS = ("gaussian", "categorical")

  def __init__(self, image_shape, num_levels, num_classes=None, name=None, **hparams):
    super().__init__(image_shape, num_levels, num_classes, name=name, **hparams)
    hp = self.hparams
    if hp["likelihood"] not in self.LIKELIHOODS:
      raise ValueError(f"likelihood must be one of {self.LIKELIHOODS}, got {hp['likelihood']!r}.")
    if hp["beta"] < 0 or hp["kl_warmup_steps"] < 0:
      raise ValueError("beta and kl_warmup_steps must be non-negative.")
    self._check_latent_hparams()
    likelihood = hp["likelihood"]
    if likelihood == "auto":
      likelihood = "bernoulli" if self.num_levels == 2 else "gaussian"
    self.head = distributions.make_pixel_head(likelihood, self.num_levels,
                                              self.image_shape[-1])
    d = self.latent_dim
    if self.is_categorical:
      encoder_outputs = d  # Logits [N * G].
    elif hp["posterior"] == "iaf":
      encoder_outputs = 2 * d + hp["flow_units"]  # mu, s and the flow's context.
    else:
      encoder_outputs = 2 * d
    self._build_coders(encoder_outputs, self.head.num_params)
    self.flows = []
    if hp["posterior"] == "iaf":
      # float32 under any policy: the log-determinants are part of the likelihood.
      self.flows = [layers.AutoregressiveNetwork(d, hp["flow_units"], name=f"iaf_{n}",
                                                 dtype="float32")
                    for n in range(hp["num_flows"])]
      for flow in self.flows:
        flow.build((None, d), (None, hp["flow_units"]))
    m = hp["prior_components"]
    if hp["prior"] == "mixture":
      self.prior_logits = self.add_weight(shape=(m,), initializer="zeros",
                                          name="prior_logits")
      # Spread-out means, unit scales (softplus(0.5413) = 1): the standard normal's
      # mass, split among the components, to begin with.
      self.prior_locs = self.add_weight(
          shape=(m, d), initializer=keras.initializers.RandomNormal(stddev=1.0),
          name="prior_locs")
      self.prior_scales = self.add_weight(
          shape=(m, d), initializer=keras.initializers.Constant(0.5413),
          name="prior_scales")
    elif hp["prior"] == "vamp":
      # Pseudo-inputs u = tanh(w), in the encoder's [-1, 1] image range; near-grey
      # images to begin with.
      self.pseudo_inputs = self.add_weight(
          shape=(m,) + self.image_shape,
          initializer=keras.initializers.RandomNormal(stddev=0.1), name="pseudo_inputs")
    self.trackers = {name: keras.metrics.Mean(name=name)
                     for name in ("neg_elbo", "elbo", "reconstruction", "kl")}
    self._finish_init()

  def _check_latent_hparams(self):
    hp = self.hparams
    for key, choices in (("posterior", self.POSTERIORS), ("prior", self.PRIORS),
                         ("latent", self.LATENTS)):
      if hp[key] not in choices:
        raise ValueError(f"{key} must be one of {choices}, got {hp[key]!r}.")
    for key in ("num_flows", "flow_units", "prior_components", "num_latents"):
      if hp[key] < 1:
        raise ValueError(f"VAE hyper-parameter {key} must be positive, got {hp[key]}.")
    if hp["num_categories"] < 2:
      raise ValueError(f"num_categories must be at least 2, got {hp['num_categories']}.")
    if hp["temperature"] <= 0:
      raise ValueError(f"temperature must be positive, got {hp['temperature']}.")
    if hp["latent"] == "categorical" and (hp["posterior"], hp["prior"]) != ("gaussian",
                                                                           "normal"):
      raise ValueError(
          "latent='categorical' has its own posterior (a categorical q(z | x)) and prior "
          "(uniform over the categories): drop posterior= and prior=, or use "
          "latent='gaussian' for an IAF posterior or a learned prior.")
    if hp["prior"] == "vamp" and hp["posterior"] != "gaussian":
      raise ValueError(
          "prior='vamp' is a mixture of the encoder's posteriors of the pseudo-inputs, "
          "which needs the Gaussian posterior (a flow posterior's density at a code it "
          "did not draw costs one network pass per latent dimension). Use "
          "posterior='gaussian' with the VampPrior, or prior='mixture' with the IAF.")
    if hp["prior"] == "vamp" and self.num_classes is not None:
      raise ValueError(
          "prior='vamp' encodes unlabelled pseudo-inputs, so it needs an unconditional "
          "VAE: drop num_classes, or use prior='mixture' for a conditional VAE.")

  @property
  def is_categorical(self):
    """Whether the code is `num_latents` one-hot categorical variables."""
    return self.hparams["latent"] == "categorical"

  @property
  def latent_dim(self):
    """D: `latent_dim`, or `num_latents * num_categories` for categorical latents."""
    hp = self.hparams
    return hp["num_latents"] * hp["num_categories"] if self.is_categorical else hp["latent_dim"]

  @property
  def prior_is_standard_normal(self):
    return self.hparams["prior"] == "normal" and not self.is_categorical

  @property
  def posterior_is_diagonal_gaussian(self):
    return self.hparams["posterior"] == "gaussian" and not self.is_categorical

  # ---- the latent distributions ------------------------------------------------------

  def _category_logits(self, params):
    """Encoder outputs `[B, N * G]` as the logits `[B, N, G]` of categorical latents."""
    hp = self.hparams
    return tf.reshape(params, [-1, hp["num_latents"], hp["num_categories"]])

  def posterior_distribution(self, params):
    """q(z | x) of encoder outputs `[B, E]`: event `[D]`, or `[N, G]` one-hot codes."""
    if self.is_categorical:
      return distributions.categorical_posterior(self._category_logits(params))
    if self.flows:
      return distributions.flow_posterior(params, self.flows)
    return distributions.gaussian_posterior(params)

  def prior_distribution(self):
    """p(z): a TFP distribution with event `[D]` (`[N, G]` for categorical latents)."""
    hp = self.hparams
    if self.is_categorical:
      return distributions.uniform_categorical_prior(hp["num_latents"], hp["num_categories"])
    if hp["prior"] == "mixture":
      return distributions.gaussian_mixture_prior(
          self.prior_logits, self.prior_locs, tf.nn.softplus(self.prior_scales) + 1e-4)
    if hp["prior"] == "vamp":
      pseudo = tf.tanh(self.pseudo_inputs)  # [M, H, W, C] in [-1, 1]
      return distributions.vamp_prior(self._encode_scaled(pseudo, None))
    return distributions.standard_normal_prior(self.latent_dim)

  @property
  def _analytic_kl(self):
    return self.prior_is_standard_normal and self.posterior_is_diagonal_gaussian or (
        self.is_categorical)

  def _flat(self, z):
    """Codes as the decoder takes them, `[..., D]` (one-hot `[..., N, G]` flattened)."""
    if not self.is_categorical:
      return z
    return tf.reshape(z, tf.concat([tf.shape(z)[:-2], [self.latent_dim]], 0))

  def _seeded_noise(self, shapes, seed, streams):
    """Noise of each `{name: shape}` from `seed` (stream `streams[name]`): standard
    normal for `z`, uniform in [0, 1) for the others."""
    return {name: (self._normal_noise if name == "z" else self._uniform_noise)(
        shape, seed, stream=streams[name]) for name, shape in shapes.items()}

  def _latent_noise_specs(self, lead):
    """The noise of one draw of z: standard normal `z` `[..., D]` (and a uniform mixture
    `component` `[...]`), or uniform `categories` `[..., N]`."""
    if self.is_categorical:
      return {"categories": lead + (self.hparams["num_latents"],)}
    specs = {"z": lead + (self.latent_dim,)}
    if self.hparams["prior"] != "normal":
      specs["component"] = lead
    return specs

  def _prior_codes(self, noise):
    """Codes `[B, D]` drawn from p(z) by the noise of `_latent_noise_specs`."""
    if self.is_categorical:
      uniform = noise["categories"]  # [B, N]
      probs = tf.fill(tf.concat([tf.shape(uniform), [self.hparams["num_categories"]]], 0),
                      1.0 / self.hparams["num_categories"])  # [B, N, G]
      return self._flat(distributions.categorical_codes(probs, uniform))
    return distributions.prior_codes(self.prior_distribution(), noise["z"],
                                     noise.get("component"))

  def _posterior_codes(self, params, noise):
    """Codes `[B, D]` drawn from q(z | x) by `z` (standard normal) or `categories`
    (uniform) noise, in TFLite builtin operators."""
    q = self.posterior_distribution(params)
    if self.is_categorical:
      return self._flat(distributions.categorical_codes(q.distribution.probs_parameter(),
                                                        noise["categories"]))
    return distributions.reparameterize(q, noise["z"])[0]

  # ---- training -----------------------------------------------------------------------

  def call(self, inputs, training=False):
    params = self._encoder_outputs(inputs, training)  # [B, E]
    out = {"posterior": params}
    if self.is_categorical:
      if training:  # The relaxation, for gradients.
        z = distributions.relaxed_categorical_sample(self._category_logits(params),
                                                     self.hparams["temperature"])
      else:  # Evaluation scores the discrete model: one-hot draws of q.
        z = tf.cast(self.posterior_distribution(params).sample(), tf.float32)
      out["z"] = self._flat(z)  # [B, D]
    else:
      # Reparameterized: gradients flow through the posterior's parameters. A stateful
      # op, so every replica and every step draws fresh noise without a seed to thread.
      eps = tf.random.normal([tf.shape(params)[0], self.latent_dim])  # [B, D]
      out["z"], out["log_q"] = distributions.reparameterize(
          self.posterior_distribution(params), eps)  # [B, D], [B]
    out["likelihood"] = self._decoder_params(out["z"], self._labels(inputs), training)
    return out

  def _kl_weight(self):
    beta = self.hparams["beta"]
    warmup = self.hparams["kl_warmup_steps"]
    if not warmup or self.optimizer is None:
      return beta
    step = tf.cast(self.optimizer.iterations, tf.float32)
    return beta * tf.minimum(1.0, step / float(warmup))

  def _kl(self, outputs):
    """KL(q(z | x) || p(z)) per image `[B]`: closed form, or log q(z) - log p(z) at the
    drawn z (one-sample Monte Carlo) where there is none."""
    if self._analytic_kl:
      return distributions.tfd.kl_divergence(
          self.posterior_distribution(outputs["posterior"]), self.prior_distribution())
    return outputs["log_q"] - self.prior_distribution().log_prob(outputs["z"])

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    """Negative ELBO in nats per image (with beta and warm-up when training), as sum /
    global batch size so that replicas' gradients add up to the batch mean."""
    del y
    self._refuse_sample_weight(sample_weight)
    images, _ = base.unpack_inputs(x)
    reconstruction = self.head.image_distribution(y_pred["likelihood"]).log_prob(
        tf.cast(images, tf.int32))  # [B]
    kl = self._kl(y_pred)  # [B]
    elbo = reconstruction - kl
    for name, value in (("neg_elbo", -elbo), ("elbo", elbo),
                        ("reconstruction", reconstruction), ("kl", kl)):
      self.trackers[name].update_state(value)
    weight = self._kl_weight() if training else 1.0
    return tf.nn.compute_average_loss(-reconstruction + weight * kl)

  # ---- inference --------------------------------------------------------------------

  def encode(self, images, labels=None):
    """q(z | x, y): a TFP distribution with batch shape `[B]`.

    A `tfd.MultivariateNormalDiag` for the Gaussian posterior, a
    `tfd.TransformedDistribution` for the IAF (its `log_prob` inverts the flow, one
    network pass per dimension), and `tfd.Independent(tfd.OneHotCategorical)` with event
    `[N, G]` for categorical latents (the codes are its draws flattened to `[N * G]`).
    """
    images, labels = self._checked(images, labels)
    return self.posterior_distribution(self._encoder_outputs(self._inputs(images, labels)))

  def features(self, images, labels=None):
    """A deterministic code per image, float32 `[B, D]`: the posterior mean E_q[z] of
    the Gaussian posterior, the flow's image f(mu) of the base mean for the IAF (its
    mean has no closed form), and the category probabilities for categorical latents."""
    images, labels = self._checked(images, labels)
    return self._features(self._encoder_outputs(self._inputs(images, labels)))

  def _features(self, params):
    q = self.posterior_distribution(params)
    if self.is_categorical:
      return self._flat(q.distribution.probs_parameter())
    if self.flows:
      return q.bijector.forward(q.distribution.mean())
    return q.mean()

  def dimension_kl(self, posterior):
    """KL(q(z_d | x) || N(0, 1)) of each image and dimension, nats `[B, D]`, of a
    posterior `encode` returned, for the diagonal Gaussian posterior with the standard
    normal prior (where the KL splits over dimensions and scores how much each is
    used)."""
    if not (self.prior_is_standard_normal and self.posterior_is_diagonal_gaussian):
      raise ValueError("The KL splits over code dimensions only for the Gaussian posterior "
                       "with the standard normal prior; rank dimensions by the variance "
                       "of `features` instead.")
    mu, sigma = posterior.mean(), posterior.stddev()  # [B, D]
    return 0.5 * (mu ** 2 + sigma ** 2 - 1.0) - tf.math.log(sigma)

  def decode(self, z, labels=None):
    """p(x | z, y): a `tfd.Distribution` with batch `[B]`, event `[H, W, C]`."""
    z, labels = self._check_codes(z, labels)
    return self.head.image_distribution(self._decoder_params(z, labels))

  def decode_mean(self, z, labels=None):
    z, labels = self._check_codes(z, labels)
    return self.head.mean(self._decoder_params(z, labels))

  def elbo(self, images, labels=None, seed=0):
    """The ELBO of each image (one sample of q, the KL as in `log_prob`'s weights), nats
    `[B]`."""
    return self.log_prob(images, labels, num_importance_samples=1, seed=seed)

  def log_prob(self, images, labels=None, num_importance_samples=1000, seed=0,
               max_elements=2 ** 24):
    """Importance-weighted estimate of log p(x | y) per image, in nats.

      log p(x) ~= logsumexp_i [log p(x | z_i) + log p(z_i) - log q(z_i | x)] - log k

    The k samples are drawn in chunks of S (so at most `max_elements` decoder
    parameters, or mixture-prior terms, exist at once) and combined by a running
    logsumexp, so memory stays bounded for any k. Categorical latents are drawn from
    the discrete q (not its relaxation): the estimate is of the discrete model.

    Args:
      images: integer `[B, H, W, C]` levels.
      labels: int `[B]` for a conditional model.
      num_importance_samples: k >= 1. k = 1 is an (unbiased) ELBO estimate.
      seed: int; the same seed gives the same estimate.
      max_elements: bound on S * B * H * W * P (and S * B * M * D).

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
    per_image = max(self.num_subpixels // self.image_shape[-1] * self.head.num_params,
                    self.latent_dim * (self.hparams["prior_components"]
                                       if self.hparams["prior"] != "normal" else 1))
    chunk = int(max(1, min(k, max_elements // max(1, batch * per_image))))
    fn = self._compiled("iw_log_prob",
                        lambda: tf.function(self._iw_log_prob, reduce_retracing=True))
    return fn(images, labels, tf.constant(k), tf.constant(chunk), tf.constant(int(seed)))

  def _iw_log_prob(self, images, labels, k, chunk, seed):
    q = self.posterior_distribution(
        self._encoder_outputs(self._inputs(images, labels)))  # batch [B]
    prior = self.prior_distribution()
    batch = tf.shape(images)[0]
    labels_s = None if labels is None else tf.repeat(labels[None], chunk, axis=0)

    def body(i, total):
      size = tf.minimum(chunk, k - i)
      z, log_q = distributions.sample_with_log_prob(q, chunk, seed=tf.stack([seed, i]))
      flat = tf.reshape(self._flat(z), [-1, self.latent_dim])  # [S*B, D]
      params = self._decoder_params(
          flat, None if labels_s is None else tf.reshape(labels_s, [-1]))
      log_px = self.head.image_distribution(params).log_prob(
          tf.tile(images, [chunk, 1, 1, 1]))  # [S*B]
      log_w = tf.reshape(log_px, [chunk, batch]) + prior.log_prob(z) - log_q  # [S, B]
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
    """The randomness an exported sampler takes: a draw of z ~ p(z) (standard normal
    `z`, with a uniform `component` for a mixture prior, or uniform `categories`) and
    uniform pixel noise."""
    specs = {name: tf.TensorSpec(shape, tf.float32)
             for name, shape in self._latent_noise_specs((batch,)).items()}
    specs["noise"] = tf.TensorSpec((batch,) + self.image_shape, tf.float32)
    return specs

  def sample_from_noise(self, noise, condition, builtin_only=False):
    """A prior draw of z and an inverse-CDF pixel draw in one graph of TFLite builtin
    ops."""
    del builtin_only  # Always builtin.
    return self.head.image_quantile(self._decoder_params(self._prior_codes(noise), condition),
                                    noise["noise"])

  def log_prob_graph(self, images, condition):
    """The k = `EXPORT_IMPORTANCE_SAMPLES` estimate of log p(x | y), seed 0."""
    k = self.EXPORT_IMPORTANCE_SAMPLES
    return self._iw_log_prob(images, condition, tf.constant(k), tf.constant(k),
                             tf.constant(0))

  def export_extras(self, batch):
    """`decode` (codes z, noise -> parameters, mean, a sample) and `encode` (-> the
    Gaussian posterior's mean and stddev, or for other posteriors the `features`)."""
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
      params = self._encoder_outputs(self._inputs(images, labels))
      if not self.posterior_is_diagonal_gaussian:
        return {"features": self._features(params)}
      q = distributions.gaussian_posterior(params)
      return {"mean": q.mean(), "stddev": q.stddev()}

    return {"decode": (decode, [z_spec, noise_spec]), "encode": (encode, [image_spec])}

  # ---- completion -------------------------------------------------------------------

  # Encode/decode steps of `complete` by default, and of the exported completion.
  COMPLETION_STEPS = 50

  def complete(self, images, mask, num_samples=1, seed=None, noise=None, labels=None,
               condition=None, steps=COMPLETION_STEPS):
    """Draws the missing subpixels of `images` by iterated encoding and decoding.

    The missing-data imputation chain of Rezende et al. [7]: the missing subpixels start
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
      noise: optional dict instead of a seed, for the T = `steps` steps: `{"z": [S, B, T,
        D] standard normal, "noise": [S, B, T, H, W, C] uniform in [0, 1)}`, with
        `"component": [S, B]` uniform (the first step's mixture component) for a learned
        prior, and `"categories": [S, B, T, N]` uniform in place of `z` for categorical
        latents (the names of `completion_noise_specs`).
      labels: int `[B]` (or a scalar) class labels for a conditional VAE.
      condition: refused (a VAE conditions on labels); accepted for the common call.
      steps: T >= 1, the number of decodes (step 1 is the draw from the prior).

    Returns:
      int32 `[S, B, H, W, C]`.

    Raises:
      ValueError: for bad images, mask, labels, noise, `num_samples` or `steps`.

    References:
      [7] Danilo J. Rezende, Shakir Mohamed, Daan Wierstra. Stochastic Backpropagation
          and Approximate Inference in Deep Generative Models. ICML 2014.
          https://arxiv.org/abs/1401.4082
    """
    images = self._check_images(images)
    batch = images.shape[0]
    keep = completion.keep_mask(mask, self.image_shape, batch)
    num_samples = self._check_num(num_samples, "num_samples")
    steps = self._check_num(steps, "steps")
    labels = self._check_condition(labels, condition, batch)
    shapes = {name: (num_samples, batch) + shape[1:]
              for name, shape in self._completion_noise_shapes(None, steps).items()}
    if noise is None:
      noise = self._seeded_noise(shapes, seed, {"z": 2, "noise": 3, "component": 4,
                                                "categories": 5})
    if not isinstance(noise, dict) or sorted(noise) != sorted(shapes):
      raise ValueError(
          f"noise of this VAE's completion must be a dict of {sorted(shapes)} (see "
          "`complete`'s docstring; 'z' standard normal, the others uniform in [0, 1)), got "
          f"{sorted(noise) if isinstance(noise, dict) else type(noise).__name__}.")
    checked = {}
    for name, shape in shapes.items():
      if name != "z":
        checked[name] = self._check_uniform(noise[name], shape, f"noise[{name!r}]")
        continue
      z = tf.convert_to_tensor(noise["z"], tf.float32)
      if tuple(z.shape) != shape:
        raise ValueError(f"noise['z'] must have shape {shape}, got {tuple(z.shape)}.")
      if not bool(tf.reduce_all(tf.math.is_finite(z))):
        raise ValueError("noise['z'] holds NaN or inf values.")
      checked["z"] = z
    num = num_samples * batch
    tile = lambda x: None if x is None else tf.tile(x, [num_samples] + [1] * (x.shape.rank - 1))
    names = sorted(shapes)
    fill = self._compiled("complete", lambda: tf.function(
        lambda x, k, c, *values: self.complete_from_noise(x, k, dict(zip(names, values)), c),
        reduce_retracing=True))
    completed = fill(tile(images), tile(keep), tile(labels),
                     *[tf.reshape(checked[name], (num,) + shapes[name][2:]) for name in names])
    return tf.reshape(completed, (num_samples, batch) + self.image_shape)

  def complete_from_noise(self, images, keep, noise, condition, builtin_only=False):
    """`complete` as a graph of TFLite builtin operators: T = `noise["noise"].shape[1]`
    steps of the chain, images and keep `[N, H, W, C]`, uniform `noise` `[N, T, H, W,
    C]`, and per step the latent draw's noise (`z` `[N, T, D]` or `categories`
    `[N, T, N_latents]`, with `component` `[N]` for the first step of a mixture prior).
    """
    del builtin_only  # Always builtin.
    uniform = noise["noise"]  # [N, T, H, W, C]
    per_step = [name for name in ("z", "categories") if name in noise]
    step_noise = lambda step: {name: tf.gather(noise[name], step, axis=1) for name in per_step}
    observed = tf.where(keep, images, tf.zeros_like(images))  # [N, H, W, C]

    def decode(z, step):  # The observed subpixels, the missing ones drawn from p(x | z).
      drawn = self.head.image_quantile(self._decoder_params(z, condition),
                                       tf.gather(uniform, step, axis=1))  # [N, H, W, C]
      return tf.where(keep, observed, drawn)

    def body(step, x):
      params = self._encoder_outputs(self._inputs(x, condition))  # [N, E]
      return step + 1, decode(self._posterior_codes(params, step_noise(step)), step)

    first = step_noise(0)
    if "component" in noise:  # A mixture prior's component, for the first draw only.
      first["component"] = noise["component"]
    start = decode(self._prior_codes(first), 0)  # From the prior: nothing to encode yet.
    _, x = tf.while_loop(lambda step, _: step < tf.shape(uniform)[1], body,
                         (tf.constant(1), start))
    return x

  def _completion_noise_shapes(self, batch, steps):
    """A latent draw's noise per step (the mixture `component` once), pixel noise per
    step."""
    shapes = {name: shape if name == "component" else (batch, steps) + shape[1:]
              for name, shape in self._latent_noise_specs((batch,)).items()}
    shapes["noise"] = (batch, steps) + self.image_shape
    return shapes

  def completion_noise_specs(self, batch):
    """Per step of T = `COMPLETION_STEPS`: the latent draw's noise (`z` `[B, T, D]`
    standard normal, or `categories` `[B, T, N]` uniform), uniform `noise`
    `[B, T, H, W, C]`; and a uniform `component` `[B]` for a mixture prior."""
    return {name: tf.TensorSpec(shape, tf.float32)
            for name, shape in self._completion_noise_shapes(
                batch, self.COMPLETION_STEPS).items()}

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
      z = self._prior_codes(self._seeded_noise(self._latent_noise_specs((num,)), seed,
                                               {"z": 0, "component": 4, "categories": 5}))
    z, _ = self._check_codes(z, labels)
    if mean:
      return tf.cast(tf.round(self.decode_mean(z, labels)), tf.int32)
    if noise is None:
      noise = self._uniform_noise(shape, seed, stream=1)
    noise = self._check_uniform(noise, shape)
    return self.head.image_quantile(self._decoder_params(z, labels), noise)


@keras.saving.register_keras_serializable(package="tfgen")
class ConvVAE(VAE):
  """`VAE` with `architecture="conv"` by default."""

  MODEL_NAME = "conv_vae"
  HPARAMS = dict(VAE.HPARAMS, architecture="conv", hidden_dims="256")


__all__ = ["Autoencoder", "ConvAutoencoder", "ConvVAE", "EncoderDecoder", "VAE"]
