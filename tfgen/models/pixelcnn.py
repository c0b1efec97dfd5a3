"""PixelCNN (van den Oord, Kalchbrenner, Kavukcuoglu 2016, section 3.5).

Glossary of tensor shapes:
  B: batch.  H, W: image height and width.  C: colour channels.
  h: `hidden_dim`; the residual stream has 2h features.
  P: parameters per pixel (C * K for the categorical head).
"""

import typing

import keras
import tensorflow as tf

from tfgen import layers
from tfgen import sampling
from tfgen.models import base


@keras.saving.register_keras_serializable(package="tfgen")
class PixelCNN(base.AutoregressiveModel):
  """The PixelCNN of "Pixel Recurrent Neural Networks", section 3.5 and figure 5.

  Architecture (all convolutions masked, so that the output at subpixel t depends
  only on subpixels before t in raster-then-channel order):

    x -> 7x7 conv, mask A, 2h                          [B, H, W, 2h]
      -> num_blocks x residual block:
           2h -> ReLU -> 1x1 conv (h) -> ReLU -> 3x3 conv (h) -> ReLU -> 1x1 conv (2h), + input
      -> ReLU -> 1x1 conv (output_dim), mask B -> ReLU -> 1x1 conv (P), mask B
                                                       [B, H, W, P]

  With `num_classes`, a learned per-class bias is added after every convolution
  (p(x | y) with a one-hot y, van den Oord et al. 2016b, eq. 4); with `condition_dim`,
  V^T h of a float vector h `[B, D]` in the same places.

  Hyper-parameters (`HPARAMS`):
    hidden_dim: h.
    num_blocks: number of residual blocks.
    output_dim: width of the hidden 1x1 output layer.
    input_kernel_size: size of the mask-A input convolution.
    kernel_size: size of the masked convolution inside each residual block.

  References:
    [1] Aaron van den Oord, Nal Kalchbrenner, Koray Kavukcuoglu. Pixel Recurrent
        Neural Networks. ICML 2016. https://arxiv.org/abs/1601.06759
    [2] Aaron van den Oord, Nal Kalchbrenner, Oriol Vinyals, Lasse Espeholt, Alex
        Graves, Koray Kavukcuoglu. Conditional Image Generation with PixelCNN
        Decoders. NeurIPS 2016. https://arxiv.org/abs/1606.05328
  """

  MODEL_NAME = "pixelcnn"
  # Sized so one epoch of binarized MNIST (batch 64) fits in ~7 minutes on 2 CPU cores.
  # Measured there after one epoch (test NLL, nats): 3x3 kernels 89.9-92.2 whatever
  # the width; 7x7 kernels 87.4. The blocks' kernel sets how wide the cone of visible
  # rows above opens (k//2 columns per row), which the 3x3 of the paper's CIFAR model
  # leaves narrow on 28x28 digits.
  HPARAMS = {
      "hidden_dim": 32,
      "num_blocks": 10,
      "output_dim": 64,
      "input_kernel_size": 7,
      "kernel_size": 7,
  }
  ODD_HPARAMS = ("input_kernel_size", "kernel_size")

  def __init__(self, image_shape, num_levels, num_classes=None, name=None, **hparams):
    super().__init__(image_shape, num_levels, num_classes, name=name, **hparams)
    hp = self.hparams
    for key in ("hidden_dim", "num_blocks", "output_dim"):
      if hp[key] < 1:
        raise ValueError(f"PixelCNN hyper-parameter {key} must be positive, got {hp[key]}.")
    colors = self.image_shape[-1]
    h = hp["hidden_dim"]

    def conv(filters, size, mask="B"):
      return layers.MaskedConv2D(filters, size, mask_type=mask, num_colors=colors)

    self.input_conv = conv(2 * h, hp["input_kernel_size"], mask="A")
    self.blocks = [(conv(h, 1), conv(h, hp["kernel_size"]), conv(2 * h, 1))
                   for _ in range(hp["num_blocks"])]
    # The logits layer computes in float32 under any mixed-precision policy, so the
    # pixel distribution and its log-likelihood keep full precision.
    logits = layers.MaskedConv2D(self.head.num_params, 1, num_colors=colors, dtype="float32")
    self.output_convs = [conv(hp["output_dim"], 1), logits]
    self.class_biases = None
    if self.is_conditional:
      widths = [2 * h] + [w for _ in self.blocks for w in (h, h, 2 * h)] + [hp["output_dim"]]
      self.class_biases = [self._condition_bias(w) for w in widths]
    self._finish_init()

  def call(self, inputs, training=False):
    x = self._scaled_images(inputs)  # [B, H, W, C]
    return self._network(x, lambda layer, h: layer(h), self._condition_fn(self._labels(inputs)))

  def _condition_fn(self, labels):
    """`condition(features)`: adds the next layer's class bias (identity for p(x))."""
    if labels is None:
      return lambda features: features
    biases = iter(self.class_biases)
    return lambda features: next(biases)(features, labels)

  def _network(self, x, conv, condition):
    """The architecture, written once for two executors.

    `conv(layer, h)` applies a masked convolution: on whole maps `[B, H, W, F]` for
    training and naive sampling, or at one position `[B, F]` for cached sampling.
    """
    h = condition(conv(self.input_conv, x))  # [..., 2h]
    for reduce, spatial, expand in self.blocks:
      r = condition(conv(reduce, tf.nn.relu(h)))  # [..., h]
      r = condition(conv(spatial, tf.nn.relu(r)))  # [..., h]
      h = h + condition(conv(expand, tf.nn.relu(r)))  # [..., 2h]
    out = condition(conv(self.output_convs[0], tf.nn.relu(h)))  # [..., output_dim]
    return conv(self.output_convs[1], tf.nn.relu(out))  # [..., P]

  # ---- cached sampling --------------------------------------------------------------

  supports_fast_sampling = True

  def incremental_fill(self, images, noise, condition, row_start, row_stop):
    """Samples rows `row_start .. row_stop-1` with cached activations.

    Each spatial (kxk) layer keeps the last ph = k//2 rows of its input and the
    current row; a subpixel step evaluates every layer at one position only: the
    vertical part of each spatial layer once per row, the horizontal part and the 1x1
    layers once per subpixel. Cost per image grows linearly in H * W instead of
    quadratically, and the result equals `sampling.fill_subpixels` with a full pass
    per subpixel (same arithmetic up to float summation order).

    The caches start from one full pass over `images`: by causality the activations
    on rows before `row_start` are final, so any row can start a chunk.

    Args and returns: see `base.AutoregressiveModel.incremental_fill`.

    References:
      [1] Prajit Ramachandran, Tom Le Paine, Pooya Khorrami, Mohammad Babaeizadeh,
          Shiyu Chang, Yang Zhang, Mark Hasegawa-Johnson, Roy Campbell, Thomas Huang.
          Fast Generation for Convolutional Autoregressive Models. ICLR 2017 workshop.
          https://arxiv.org/abs/1704.06001
    """
    spatial = [self.input_conv] + [block[1] for block in self.blocks]
    index = {id(layer): n for n, layer in enumerate(spatial)}
    pads = [layer.cache_padding for layer in spatial]

    recorded = [None] * len(spatial)

    def record(layer, h):
      if id(layer) in index:
        # The cached path computes in float32, whatever the mixed-precision policy
        # (so under a 16-bit policy it matches the naive sampler only approximately).
        recorded[index[id(layer)]] = tf.cast(h, tf.float32)  # [B, H, W, F_in]
      return layer(h)

    self._network(self._scaled_images(images), record, self._condition_fn(condition))
    carry = _Window(tuple(sampling.window_above(h, row_start, ph, pw)
                          for h, (ph, pw) in zip(recorded, pads)))  # [B, ph, W + 2pw, F_in]
    empty_row = _Row(tuple(tf.zeros_like(tf.pad(h[:, 0], [[0, 0], [pw, pw], [0, 0]]))
                           for h, (_, pw) in zip(recorded, pads)))  # [B, W + 2pw, F_in]

    def begin_row(i, carry):
      del i
      # The part of each spatial layer that reads the rows above: once per row.
      return [layer.vertical(rows) for layer, rows in zip(spatial, carry.above)]  # [B, W, F]

    def position(i, j, c, images, carry, verticals, row):
      del c, carry
      written = []

      def conv(layer, h):
        if id(layer) not in index:
          return layer.pointwise(h)  # [B, F_out]
        n = index[id(layer)]
        # set_column casts to the float32 cache: a class bias under a 16-bit policy
        # returns 16 bits.
        cached = sampling.set_column(row.inputs[n], j + pads[n][1], h)  # [B, W+2pw, F]
        written.append(cached)
        out = layer.horizontal(cached, j)  # [B, F_out]
        return out if verticals[n] is None else out + verticals[n][:, j]

      x = self._scaled_images(images[:, i, j])  # [B, C]
      params = self._network(x, conv, self._condition_fn(condition))  # [B, P]
      return params, _Row(tuple(written))

    def after_draw(i, j, images, row):
      # The input layer caches the pixel itself, which has just changed. Deeper caches
      # are final: by the masks, no feature at (i, j) sees the subpixel just sampled
      # until the next channel's step recomputes them.
      first = sampling.set_column(row.inputs[0], j + pads[0][1],
                                  self._scaled_images(images[:, i, j]))
      return _Row((first,) + row.inputs[1:])

    def end_row(i, images, carry, verticals, row):
      del i, images, verticals
      return _Window(tuple(sampling.roll_window(above, finished)
                           for above, finished in zip(carry.above, row.inputs)))

    return sampling.cached_rows(self.head, images, noise, row_start, row_stop, carry,
                                empty_row, begin_row, position, after_draw, end_row)


class _Window(typing.NamedTuple):
  """What a cached PixelCNN row starts from."""
  above: tuple  # Per spatial layer: its input on the ph rows above, [B, ph, W + 2pw, F_in].


class _Row(typing.NamedTuple):
  """The caches of the row being drawn."""
  inputs: tuple  # Per spatial layer: its input on the row, zero padded, [B, W + 2pw, F_in].
