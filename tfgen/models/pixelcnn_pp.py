"""PixelCNN++ (Salimans, Karpathy, Chen, Kingma 2017).

Glossary of tensor shapes:
  B: batch.  H, W: image height and width.  C: colour channels.
  H_s, W_s: height and width at scale s (H_0 = H; H_{s+1} = ceil(H_s / 2)).
  F: `num_filters`, the width of both streams.
  M: `num_mixtures`.  P: parameters per pixel, M (1 + 2C + C (C - 1) / 2).
"""

import types

import keras
import tensorflow as tf

from tfgen import distributions
from tfgen import incremental
from tfgen import layers
from tfgen import sampling
from tfgen.models import base


def concat_elu(x):
  """ELU of x and of -x side by side: `[..., F]` -> `[..., 2F]` (paper, section 2.5).

  A ReLU-like nonlinearity that keeps the information of both signs.
  """
  return tf.nn.elu(tf.concat([x, -x], axis=-1))


@keras.saving.register_keras_serializable(package="tfgen")
class CausalConv2DTranspose(keras.layers.Conv2DTranspose):
  """A stride-2 transposed convolution that keeps the streams causal (up-sampling).

  The paper code's `down_shifted_deconv2d` / `down_right_shifted_deconv2d`. A coarse
  position (i, j) of a valid transposed convolution writes the fine rows
  2i .. 2i + kh - 1 and columns 2j .. 2j + kw - 1. Keeping the first H_fine rows (and,
  for "down", dropping (kw - 1) / 2 columns on the left so the kernel is centred)
  means coarse row i only reaches fine rows r >= 2i; for "down_right" the columns are
  kept from the left too, so coarse (i, j) only reaches fine positions at or after
  (2i, 2j) in raster order. Since the coarse features at (i, j) of the u stream see
  fine rows < 2i, and those of the ul stream fine pixels before (2i, 2j), the
  up-sampled maps stay causal.

  Args:
    filters: `F_out`.
    kernel_size: `(kh, kw)`; kw odd for "down".
    direction: "down" (u stream) or "down_right" (ul stream).
    **kwargs: passed to `keras.layers.Conv2DTranspose`.
  """

  def __init__(self, filters, kernel_size, direction="down", **kwargs):
    kwargs.pop("padding", None)
    kwargs.pop("strides", None)
    super().__init__(filters, kernel_size, strides=2, padding="valid", **kwargs)
    if direction not in ("down", "down_right"):
      raise ValueError(f"direction must be 'down' or 'down_right', got {direction!r}.")
    if direction == "down" and self.kernel_size[1] % 2 == 0:
      raise ValueError(f"A 'down' convolution needs an odd kernel width, got {self.kernel_size}.")
    self.direction = direction

  def call(self, inputs, output_size):
    """Up-samples `[B, H_s, W_s, F_in]` to `[B, H, W, F_out]`, `(H, W) = output_size`."""
    out = super().call(inputs)  # [B, 2 H_s + kh - 2, 2 W_s + kw - 2, F_out]
    height, width = output_size
    left = (self.kernel_size[1] - 1) // 2 if self.direction == "down" else 0
    # tf.slice, whose gradient is a pad; a strided slice's gradient is slow on CPU.
    return tf.slice(out, [0, 0, left, 0], [-1, height, width, -1])  # [B, H, W, F_out]

  def get_config(self):
    config = super().get_config()
    config.update(direction=self.direction)
    return config


@keras.saving.register_keras_serializable(package="tfgen")
class GatedResnet(layers.BuiltByFirstCall, keras.layers.Layer):
  """The gated resnet block of PixelCNN++ (paper, section 2.5 and figure 2):

    c = conv(concat_elu(x)) [+ 1x1 conv(concat_elu(a))]             [..., F]
    c = dropout(concat_elu(c))                                      [..., 2F]
    c = conv(c) [+ class bias]                                      [..., 2F]
    out = x + c_1 * sigmoid(c_2)      (c_1, c_2 the halves of c)    [..., F]

  `conv` is a shifted `CausalConv2D` (2x3 "down" for the u stream, 2x2 "down_right"
  for the ul stream), so the block is as causal as its inputs; the auxiliary input
  `a` enters through a 1x1 convolution, at the same position only.

  Args:
    filters: F, the width of `x` and of the output.
    direction: "down" or "down_right".
    aux: whether the block takes an auxiliary input `a`.
    dropout: dropout rate (training only).
    num_classes: classes of the per-class bias, or None.
    condition_dim: width of a conditioning vector, or None (not with num_classes).
  """

  def __init__(self, filters, direction, aux=False, dropout=0.0, num_classes=None,
               condition_dim=None, **kwargs):
    super().__init__(**kwargs)
    self.filters, self.direction, self.aux = int(filters), direction, bool(aux)
    self.dropout_rate, self.num_classes = float(dropout), num_classes
    self.condition_dim = condition_dim
    size = (2, 3) if direction == "down" else (2, 2)
    self.conv1 = layers.CausalConv2D(filters, size, direction)
    # A small initial gate input, as the paper's init_scale=0.1: each block starts
    # near the identity, so a deep stack trains from the first step.
    self.conv2 = layers.CausalConv2D(2 * filters, size, direction, kernel_initializer=(
        keras.initializers.VarianceScaling(0.1, "fan_avg", "uniform")))
    self.aux_conv = keras.layers.Conv2D(filters, 1) if aux else None
    self.dropout = keras.layers.Dropout(dropout) if dropout > 0 else None
    self.class_bias = (None if num_classes is None and condition_dim is None
                       else layers.ConditionBias(2 * filters, num_classes, condition_dim))

  def call(self, x, aux=None, labels=None, training=False):
    c = self.conv1(concat_elu(x))  # [B, H_s, W_s, F]
    if self.aux_conv is not None:
      c = c + self.aux_conv(concat_elu(aux))
    c = concat_elu(c)  # [B, H_s, W_s, 2F]
    if self.dropout is not None:
      c = self.dropout(c, training=training)
    c = self.conv2(c)  # [B, H_s, W_s, 2F]
    if self.class_bias is not None:
      c = self.class_bias(c, labels)
    gate_in, gate = tf.split(c, 2, axis=-1)  # [B, H_s, W_s, F] each
    return x + gate_in * tf.sigmoid(gate)

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, direction=self.direction, aux=self.aux,
                  dropout=self.dropout_rate, num_classes=self.num_classes,
                  condition_dim=self.condition_dim)
    return config


@keras.saving.register_keras_serializable(package="tfgen")
class PixelCNNPP(base.AutoregressiveModel):
  """PixelCNN++: a two-stream U-net of gated resnet blocks with a logistic mixture.

  Architecture (paper, section 2 and its code's `model_spec`), with
  `conv_u` = down-shifted 2x3 `CausalConv2D` (u stream: rows above) and
  `conv_ul` = down-right-shifted 2x2 `CausalConv2D` (ul stream: rows above and the
  pixels to the left):

    x, ones -> u  = shift_down(2x3 down conv)                      [B, H, W, F]
               ul = shift_down(1x3 down conv) + shift_right(2x1 down_right conv)
    up pass, at each of `num_scales` scales: `num_resnet` gated resnets on u and on
      ul (ul also reads u), every output kept; between scales a stride-2 conv_u /
      conv_ul halves the maps                                       [B, H_s, W_s, F]
    down pass, coarsest first: gated resnets that also read the kept up-pass maps of
      the same scale (u: u_kept; ul: [u, ul_kept]), `num_resnet` at the coarsest
      scale and `num_resnet + 1` at each finer one; between scales a causal stride-2
      transposed conv (`CausalConv2DTranspose`) doubles the maps
    -> ELU -> 1x1 conv (P)                                          [B, H, W, P]

  The gated resnet block is `GatedResnet`.

  Every convolution is a shifted one (no masks): the output at pixel (i, j) depends
  only on pixels strictly before (i, j) in raster order, all channels included, so
  that the within-pixel dependence of the channels is the pixel head's (the
  discretized logistic mixture, `tfgen.distributions.DiscretizedLogisticMixture`).
  The input gets an extra channel of ones so the network can tell the zero padding
  from black pixels.

  With `num_classes`, every gated resnet adds a learned per-class bias to its gate
  input (p(x | y), the paper code's `h`); with `condition_dim`, V^T h of a float
  vector h `[B, D]` instead.

  Hyper-parameters (`HPARAMS`):
    num_filters: F, the width of both streams (160 in the paper).
    num_resnet: gated resnet blocks per scale in the up pass (5 in the paper).
    num_scales: resolutions (3 in the paper: 32, 16, 8).
    num_mixtures: M, logistic mixture components (10 in the paper).
    dropout: dropout rate inside each block, training only (0.5 in the paper for
      CIFAR-10, where it prevents overfitting; 0 suits short runs).

  References:
    [1] Tim Salimans, Andrej Karpathy, Xi Chen, Diederik P. Kingma. PixelCNN++:
        Improving the PixelCNN with Discretized Logistic Mixture Likelihood and Other
        Modifications. ICLR 2017. https://arxiv.org/abs/1701.05517
        Code: https://github.com/openai/pixel-cnn
    [2] Aaron van den Oord, Nal Kalchbrenner, Oriol Vinyals, Lasse Espeholt, Alex
        Graves, Koray Kavukcuoglu. Conditional Image Generation with PixelCNN
        Decoders. NeurIPS 2016. https://arxiv.org/abs/1606.05328
  """

  MODEL_NAME = "pixelcnn_pp"
  PIXEL_DISTRIBUTION = "logistic_mixture"
  # Sized to the default PixelCNN's parameter count (551K for 28x28x1, 2 levels; this
  # is 558K, for any number of levels), so the two compare at equal size. A training
  # step on 16 binary 28x28 images measured 1.7 CPU seconds against the PixelCNN's 2.1
  # (on a loaded 2-core machine): the coarse scales are cheap.
  HPARAMS = {
      "num_filters": 18,
      "num_resnet": 4,
      "num_scales": 3,
      "num_mixtures": 10,
      "dropout": 0.0,
  }

  def __init__(self, image_shape, num_levels, num_classes=None, name=None, **hparams):
    super().__init__(image_shape, num_levels, num_classes, name=name, **hparams)
    hp = self.hparams
    for key in ("num_filters", "num_resnet", "num_scales", "num_mixtures"):
      if hp[key] < 1:
        raise ValueError(f"PixelCNN++ hyper-parameter {key} must be positive, got {hp[key]}.")
    if not 0.0 <= hp["dropout"] < 1.0:
      raise ValueError(f"PixelCNN++ hyper-parameter dropout must be in [0, 1), got "
                       f"{hp['dropout']}.")
    # The base class made the head with its default settings; this one has M components.
    self.head = distributions.make_pixel_head(self.PIXEL_DISTRIBUTION, self.num_levels,
                                              self.image_shape[-1],
                                              num_mixtures=hp["num_mixtures"])
    f, r, s = hp["num_filters"], hp["num_resnet"], hp["num_scales"]
    self.sizes = [tuple(self.image_shape[:2])]
    for _ in range(s - 1):
      h, w = self.sizes[-1]
      self.sizes.append((-(-h // 2), -(-w // 2)))

    conv_u = lambda size=(2, 3), **kw: layers.CausalConv2D(f, size, "down", **kw)
    conv_ul = lambda size=(2, 2), **kw: layers.CausalConv2D(f, size, "down_right", **kw)
    self.input_u = conv_u()
    self.input_ul_above = conv_u((1, 3))
    self.input_ul_left = conv_ul((2, 1))
    self.up_blocks = [[(self._block("down", aux=False), self._block("down_right", aux=True))
                       for _ in range(r)] for _ in range(s)]
    self.downsample = [(conv_u(strides=2), conv_ul(strides=2)) for _ in range(s - 1)]
    self.down_blocks = [[(self._block("down", aux=True), self._block("down_right", aux=True))
                         for _ in range(r if n == 0 else r + 1)] for n in range(s)]
    self.upsample = [(CausalConv2DTranspose(f, (2, 3), "down"),
                      CausalConv2DTranspose(f, (2, 2), "down_right")) for _ in range(s - 1)]
    # The parameters compute in float32 under any mixed-precision policy, so the pixel
    # distribution and its log-likelihood keep full precision.
    self.output_conv = keras.layers.Conv2D(self.head.num_params, 1, dtype="float32")
    self._finish_init()

  def _block(self, direction, aux):
    return GatedResnet(self.hparams["num_filters"], direction, aux=aux,
                       dropout=self.hparams["dropout"], num_classes=self.num_classes,
                       condition_dim=self.condition_dim)

  def call(self, inputs, training=False):
    labels = self._labels(inputs)
    x = self._scaled_images(inputs)  # [B, H, W, C]
    x = tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)  # [B, H, W, C + 1]

    def shift(x, rows, cols):
      x = layers.shift_down(x, rows) if rows else x
      return layers.shift_right(x, cols) if cols else x

    return self._wire(x, types.SimpleNamespace(  # Whole maps [B, H_s, W_s, F].
        conv=lambda layer, x: layer(x),
        shifted=lambda maps: tf.add_n([shift(x, *by) for x, by in maps]),
        block=lambda layer, x, aux: layer(x, aux=tf.concat(aux, -1) if aux else None,
                                          labels=labels, training=training),
        upsample=lambda layer, x, size: layer(x, output_size=size),
        output=lambda layer, x: layer(tf.nn.elu(x))))  # [B, H, W, P]

  def _wire(self, x, ops):
    """The network of the class docstring, written once for both of its executors:
    `call` (whole maps) and the cached sampler's `incremental.Plan` (`_plan`).

    Args:
      x: the input, the images and a channel of ones, in the executor's form.
      ops: the executor: `conv(layer, x)`, `shifted([(x, (rows, cols)), ...])` (the sum
        of maps moved down and right), `block(layer, x, [aux, ...])` (a `GatedResnet`
        whose auxiliary input is the concatenation of the list, none if empty),
        `upsample(layer, x, (H_s, W_s))` and `output(layer, x)` (ELU, 1x1 conv).

    Returns:
      What `ops.output` returns: the per-pixel parameters.
    """
    # u at (i, j) sees rows < i; ul sees rows < i and row i left of j.
    u = ops.shifted([(ops.conv(self.input_u, x), (1, 0))])
    ul = ops.shifted([(ops.conv(self.input_ul_above, x), (1, 0)),
                      (ops.conv(self.input_ul_left, x), (0, 1))])
    kept_u, kept_ul = [u], [ul]
    for scale, blocks in enumerate(self.up_blocks):
      if scale:
        down_u, down_ul = self.downsample[scale - 1]
        kept_u.append(ops.conv(down_u, kept_u[-1]))
        kept_ul.append(ops.conv(down_ul, kept_ul[-1]))
      for block_u, block_ul in blocks:
        kept_u.append(ops.block(block_u, kept_u[-1], []))
        kept_ul.append(ops.block(block_ul, kept_ul[-1], [kept_u[-1]]))
    u, ul = kept_u.pop(), kept_ul.pop()
    for n, blocks in enumerate(self.down_blocks):
      if n:
        up_u, up_ul = self.upsample[n - 1]
        size = self.sizes[len(self.sizes) - 1 - n]
        u, ul = ops.upsample(up_u, u, size), ops.upsample(up_ul, ul, size)
      for block_u, block_ul in blocks:
        u = ops.block(block_u, u, [kept_u.pop()])
        ul = ops.block(block_ul, ul, [u, kept_ul.pop()])
    assert not kept_u and not kept_ul  # Every up-pass map feeds the down pass once.
    return ops.output(self.output_conv, ul)

  # ---- cached sampling --------------------------------------------------------------

  supports_fast_sampling = True
  # Its `tf.TensorArray`s are TensorList ops, which TFLite cannot lower inside the
  # sampling loop: TFLite samplers of PixelCNN++ take the naive path.
  fast_sampler_is_builtin = False

  def incremental_fill(self, images, noise, condition, row_start, row_stop):
    """Samples rows `row_start .. row_stop-1`, computing every activation once.

    The network of `call`, rebuilt as an `incremental.Plan` over the same layers: each
    map's positions are computed at the step at which their inputs exist (the rows
    above for the u stream, the pixel to the left for the ul stream, bursts at the
    coarse scales) and kept, so a whole image costs about one network pass plus a
    per-step overhead, against one pass per subpixel for the naive sampler. Same
    arithmetic per position (float summation order aside), so the same images.

    A chunk starting after row 0 first recomputes the activations the rows already
    drawn imply (no drawing there).

    Args and returns: see `base.AutoregressiveModel.incremental_fill`.
    """
    height, width, channels = self.image_shape
    plan, output = self._plan(condition)

    def pixel_values(levels):  # int [..., C] -> the network's input [..., C + 1]
      x = self._scaled_images(levels)
      return tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)

    def draw(t, params, images):  # params [B, P]
      i, j = t // width, t % width
      pixel = images[:, i, j]  # [B, C]
      for c in range(channels):  # The head's channel order within the pixel.
        levels = sampling.draw(self.head, params, c, noise[:, i, j, c], pixel)  # [B]
        pixel = tf.concat([pixel[:, :c], levels[:, None], pixel[:, c + 1:]], axis=-1)
        images = sampling.set_subpixel(images, t * channels + c, levels)
      return images, pixel_values(pixel)

    batch = tf.shape(images)[0]
    pixels = tf.transpose(tf.reshape(pixel_values(images), [batch, height * width, -1]),
                          [1, 0, 2])  # [H * W, B, C + 1]
    return plan.run(output, pixels, draw, images, row_start * width, row_stop * width)

  def _plan(self, labels):
    """`call`'s network as an `incremental.Plan`: `(plan, output node)`.

    The nodes compute on rows `[M * B, F]`, one per position and image (position-major),
    so each convolution is one 2-D matmul. Kernels and biases are read, cast and
    flattened here, once, outside the sampling loop: inside it, they and
    `tf.tensordot`'s shape arithmetic were repeated for every node, and each operation
    of the loop costs at tracing, export, load and every step.
    """
    f32 = lambda t: tf.cast(t, tf.float32)  # The cached path computes in float32.
    plan = incremental.Plan(self.image_shape[:2], self.image_shape[-1] + 1)

    def dense(kernel, bias):
      """`rows [R, T * F_in] -> [R, F_out]`: kernel `[..., F_in, F_out]` flattened."""
      kernel = f32(kernel)
      kernel = tf.reshape(kernel, [-1, kernel.shape[-1]])  # [T * F_in, F_out]
      bias = f32(bias)
      return lambda x: tf.matmul(x, kernel) + bias

    def rows(patch):  # [M, T, B, F] -> [M * B, T * F]
      _, taps, _, features = patch.shape
      return tf.reshape(tf.transpose(patch, [0, 2, 1, 3]), [-1, taps * features])

    def conv(layer, source, pre=lambda x: x):
      """A `CausalConv2D` (any stride) over `source`: (sources entry, fn of its patch)."""
      taps, shape = incremental.conv_taps(source.shape, layer.kernel_size, layer.strides,
                                          layer.causal_padding)
      apply = dense(layer.kernel, layer.bias)
      return (source, taps), shape, lambda patch: apply(rows(pre(patch)))

    def conv_node(layer, source):
      entry, shape, apply = conv(layer, source)
      return plan.node(shape, layer.filters, [entry], lambda g: apply(g[0]))

    def upsample(layer, source, shape):
      left = (layer.kernel_size[1] - 1) // 2 if layer.direction == "down" else 0
      taps = incremental.transposed_conv_taps(source.shape, shape, layer.kernel_size,
                                              layer.strides, (0, left))
      # [kh, kw, F_out, F_in] -> [kh, kw, F_in, F_out]
      apply = dense(tf.transpose(layer.kernel, [0, 1, 3, 2]), layer.bias)
      return plan.node(shape, layer.filters, [(source, taps)], lambda g: apply(rows(g[0])))

    def block(layer, x, aux):
      """`GatedResnet`: two nodes, concat_elu(conv1 + aux) and the gated residual."""
      first, _, conv1 = conv(layer.conv1, x, pre=concat_elu)
      same = incremental.same_position(x.shape)
      aux_conv = dense(layer.aux_conv.kernel, layer.aux_conv.bias) if aux else None

      def inner(g):  # [M * B, 2F]
        c = conv1(g[0])
        if aux:
          c += aux_conv(concat_elu(tf.concat([rows(v) for v in g[1:]], axis=-1)))
        return concat_elu(c)

      c1 = plan.node(x.shape, 2 * layer.filters, [first] + [(a, same) for a in aux], inner)
      second, _, conv2 = conv(layer.conv2, c1)
      bias = None if layer.class_bias is None else f32(layer.class_bias.bias(labels))  # [B, 2F]
      by_image = None if bias is None else tf.concat([[-1], tf.shape(bias)], 0)  # M, B, 2F

      def gated(g):  # [M * B, F]
        c = conv2(g[0])  # [M * B, 2F]
        if bias is not None:  # The same for every position.
          c = tf.reshape(tf.reshape(c, by_image) + bias, [-1, c.shape[-1]])
        gate_in, gate = tf.split(c, 2, axis=-1)
        return rows(g[1]) + gate_in * tf.sigmoid(gate)

      return plan.node(x.shape, layer.filters, [second, (x, same)], gated)

    def shifted(sources_and_shifts):
      """Sum of maps moved down/right by (rows, cols): `shift_down`, `shift_right`."""
      node = sources_and_shifts[0][0]
      sources = [(n, incremental.shift_taps(n.shape, *shift)) for n, shift in sources_and_shifts]
      return plan.node(node.shape, node.features, sources,
                       lambda g: tf.add_n([v[:, 0] for v in g]))

    def output(layer, x):
      apply = dense(layer.kernel, layer.bias)
      return plan.node(x.shape, self.head.num_params, [(x, incremental.same_position(x.shape))],
                       lambda g: apply(tf.nn.elu(rows(g[0]))))

    return plan, self._wire(plan.pixels, types.SimpleNamespace(
        conv=conv_node, shifted=shifted, block=block, upsample=upsample, output=output))
