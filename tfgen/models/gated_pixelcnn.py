"""Gated PixelCNN (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu 2016).

Glossary of tensor shapes:
  B: batch.  H, W: image height and width.  C: colour channels.
  p: `hidden_dim`, the width of both stacks; their convolutions emit 2p features
     (the tanh and the sigmoid halves of the gate).
  s: `skip_dim`.  P: parameters per pixel (C * K for the categorical head).
  kh, kw: `kernel_size // 2 + 1` and `kernel_size`, the vertical stack's kernel.
"""

import typing

import keras
import tensorflow as tf

from tfgen import layers
from tfgen import sampling
from tfgen.models import base


def gate(features, num_colors):
  """The gated activation tanh(f) * sigmoid(g), colour group by colour group.

  `features` `[..., 2p]` hold C groups (`layers.channel_groups(2p, C)`); each group's
  first half is f, its second half g. The result `[..., p]` keeps the group layout
  (`layers.channel_groups(p, C)`), so gated features of group c depend only on
  features of group c: a pair (f, g) never mixes colours, and the masks of the next
  layers stay valid.

  Args:
    features: float `[..., 2p]`, with p a multiple of `num_colors`.
    num_colors: `C`.

  Returns:
    float `[..., p]`.
  """
  width = features.shape[-1] // (2 * num_colors)  # m = p / C
  # Group c occupies features 2mc .. 2m(c+1)-1: f is its first half, g its second.
  # Reshapes and a split, not a gather: on CPU a gather along the channels and its
  # gradient (a scatter and transposes) cost more than the gated layer's convolution.
  outer = tf.shape(features)[:-1]
  if num_colors > 1:
    features = tf.reshape(features, tf.concat([outer, [num_colors, 2 * width]], 0))
  f, g = tf.split(features, 2, axis=-1)  # [..., C, m] each (or [..., m] for C = 1)
  gated = tf.tanh(f) * tf.sigmoid(g)
  if num_colors > 1:
    gated = tf.reshape(gated, tf.concat([outer, [num_colors * width]], 0))
  return gated  # [..., p]


@keras.saving.register_keras_serializable(package="tfgen")
class GatedPixelCNN(base.AutoregressiveModel):
  """The Gated PixelCNN of "Conditional Image Generation with PixelCNN Decoders".

  Two stacks of gated layers remove the blind spot of the masked PixelCNN:

    vertical stack   v_l = gate(V_l * v_{l-1} + b_v[y])             [B, H, W, p]
                     V_l: a "down" CausalConv2D of kh x kw: rows <= i, columns
                     j - k//2 .. j + k//2, so row i of v_l sees rows <= i of the image
                     (the whole of row i: it must never reach the output unshifted).
    horizontal stack h_l = h_{l-1} + R_l gate(H_l * h_{l-1}
                                             + L_l shift_down(V_l * v_{l-1} + b_v[y])
                                             + b_h[y])              [B, H, W, p]
                     H_l: a "down_right" CausalConv2D of 1 x (k//2 + 1): the current
                     row, columns j - k//2 .. j; at the current pixel mask A for the
                     first layer (on the image: a subpixel never sees itself) and mask
                     B after (colour groups, R -> G -> B). L_l: a 1x1 link from the
                     vertical stack, shifted down one row so (i, j) sees rows < i only;
                     unmasked, because rows above may feed every colour group.
                     R_l: 1x1 residual (mask B); the first layer has no residual.
    output           relu(sum_l S_l gate_l) -> 1x1 (output_dim) -> relu -> 1x1 (P),
                     S_l: 1x1 skip connections (mask B).     [B, H, W, P]

  v_{-1} = h_{-1} = x. With num_layers L and kernel k, output (i, j) sees every pixel
  of rows i - 1 - (L * (k//2)) .. i - 1 within L * (k//2) columns either side, and
  the L * (k//2) pixels left of it on its own row: no blind spot.

  With `num_classes`, a learned per-class bias V^T y (one-hot y) is added inside every
  gate of both stacks (paper, eq. 4): p(x | y). With `condition_dim=D` the same term
  V^T h is added for any float vector h `[B, D]` (an embedding, attributes): p(x | h).

  Hyper-parameters (`HPARAMS`):
    hidden_dim: p, the width of both stacks; a multiple of C (colour groups).
    num_layers: number of gated layers.
    kernel_size: k, odd >= 3: the vertical kernel is (k//2 + 1) x k, the horizontal
      1 x (k//2 + 1).
    skip_dim: width of the skip connections.
    output_dim: width of the hidden 1x1 output layer.

  References:
    [1] Aaron van den Oord, Nal Kalchbrenner, Oriol Vinyals, Lasse Espeholt, Alex
        Graves, Koray Kavukcuoglu. Conditional Image Generation with PixelCNN
        Decoders. NeurIPS 2016. https://arxiv.org/abs/1606.05328
    [2] Prajit Ramachandran et al. Fast Generation for Convolutional Autoregressive
        Models. ICLR 2017 workshop. https://arxiv.org/abs/1704.06001 (the cached
        sampler).
  """

  MODEL_NAME = "gated_pixelcnn"
  # hidden_dim 30 divides into 1 or 3 colour groups. With 9 layers of 7-wide kernels
  # the model has 526K parameters on binary 28x28 images (the default PixelCNN: 551K;
  # 543K and 568K for 256 levels) and output (i, j) sees 28 rows up, 27 columns
  # either side: all of a 28x28 image before it.
  HPARAMS = {
      "hidden_dim": 30,
      "num_layers": 9,
      "kernel_size": 7,
      "skip_dim": 64,
      "output_dim": 64,
  }

  def __init__(self, image_shape, num_levels, num_classes=None, name=None, **hparams):
    super().__init__(image_shape, num_levels, num_classes, name=name, **hparams)
    hp = self.hparams
    for key in ("hidden_dim", "num_layers", "skip_dim", "output_dim"):
      if hp[key] < 1:
        raise ValueError(
            f"Gated PixelCNN hyper-parameter {key} must be positive, got {hp[key]}.")
    k = hp["kernel_size"]
    if k < 3 or k % 2 == 0:
      raise ValueError(
          f"Gated PixelCNN kernel_size must be odd and at least 3 (the horizontal kernel "
          f"is 1 x (k//2 + 1) and must reach the pixel to the left), got {k}.")
    colors = self.image_shape[-1]
    p = hp["hidden_dim"]
    if p % colors:
      raise ValueError(
          f"Gated PixelCNN hidden_dim must be a multiple of the {colors} colour channels "
          f"(each colour group gates its own features), got {p}; use e.g. "
          f"hidden_dim={colors * max(1, round(p / colors))}.")
    if min(hp["skip_dim"], hp["output_dim"]) < colors:
      raise ValueError(
          f"Gated PixelCNN skip_dim and output_dim must be at least the {colors} colour "
          f"channels, got {hp['skip_dim']} and {hp['output_dim']}.")
    self.num_colors = colors
    num_layers = hp["num_layers"]

    def horizontal(filters, size, mask="B"):
      return layers.CausalConv2D(filters, size, direction="down_right", mask_type=mask,
                                 num_colors=colors)

    self.vertical_convs = [layers.CausalConv2D(2 * p, (k // 2 + 1, k), direction="down")
                           for _ in range(num_layers)]
    # The vertical stack only sees rows above (after the shift): no mask, every colour
    # group may read it.
    self.links = [layers.CausalConv2D(2 * p, 1, direction="down_right")
                  for _ in range(num_layers)]
    self.horizontal_convs = [horizontal(2 * p, (1, k // 2 + 1), "A" if n == 0 else "B")
                             for n in range(num_layers)]
    # The last layer's residual would feed nothing.
    self.residuals = [horizontal(p, 1) for _ in range(num_layers - 1)]
    self.skips = [horizontal(hp["skip_dim"], 1) for _ in range(num_layers)]
    # The logits layer computes in float32 under any mixed-precision policy.
    self.output_convs = [horizontal(hp["output_dim"], 1),
                         layers.CausalConv2D(self.head.num_params, 1, direction="down_right",
                                             mask_type="B", num_colors=colors,
                                             dtype="float32")]
    self.vertical_biases = self.horizontal_biases = None
    if self.is_conditional:
      self.vertical_biases = [self._condition_bias(2 * p)
                              for _ in range(num_layers)]
      self.horizontal_biases = [self._condition_bias(2 * p)
                                for _ in range(num_layers)]
    self._finish_init()

  # ---- the architecture, written once for the full maps and for cached sampling ----

  def _condition(self, biases, n, features, labels):
    """Adds gate n's class bias (identity for p(x)); features `[..., 2p]`."""
    return features if labels is None else biases[n](features, labels)

  def _vertical_stack(self, x, conv, labels):
    """The vertical stack's pre-gate features of every layer.

    Args:
      x: float `[B, ..., C]`, the scaled image.
      conv: `conv(layer, v)` applies a vertical convolution: on whole maps, or on one
        completed row (cached sampling).
      labels: int32 `[B]` or None.

    Returns:
      list of float `[B, ..., 2p]`, one per layer: V_l * v_{l-1} + b_v[y], which the
      horizontal stack reads one row lower.
    """
    v = x
    pre = []
    for n, layer in enumerate(self.vertical_convs):
      features = self._condition(self.vertical_biases, n, conv(layer, v), labels)  # [..., 2p]
      pre.append(features)
      v = gate(features, self.num_colors)  # [..., p]
    return pre

  def _horizontal_stack(self, x, links, conv, labels):
    """The horizontal stack and the output layers: pixel parameters.

    Args:
      x: float `[B, ..., C]`, the scaled image.
      links: list of float `[B, ..., 2p]`, L_l shift_down(vertical pre-gate features)
        at the same positions.
      conv: `conv(layer, h)` applies a horizontal or 1x1 convolution: on whole maps,
        or at one position `[B, F]` (cached sampling).
      labels: int32 `[B]` or None.

    Returns:
      float `[B, ..., P]`.
    """
    h = x
    skip = None
    for n, layer in enumerate(self.horizontal_convs):
      features = conv(layer, h) + links[n]  # [..., 2p]
      features = self._condition(self.horizontal_biases, n, features, labels)  # [..., 2p]
      gated = gate(features, self.num_colors)  # [..., p]
      out = conv(self.skips[n], gated)  # [..., s]
      skip = out if skip is None else skip + out
      if n < len(self.residuals):
        residual = conv(self.residuals[n], gated)  # [..., p]
        h = residual if n == 0 else h + residual
    out = conv(self.output_convs[0], tf.nn.relu(skip))  # [..., output_dim]
    return conv(self.output_convs[1], tf.nn.relu(out))  # [..., P]

  def _link_maps(self, pre):
    """L_l shift_down(pre_l) on whole maps: row i reads the vertical stack at row i-1."""
    return [link(layers.shift_down(features)) for link, features in zip(self.links, pre)]

  def call(self, inputs, training=False):
    x = self._scaled_images(inputs)  # [B, H, W, C]
    labels = self._labels(inputs)
    apply = lambda layer, h: layer(h)
    links = self._link_maps(self._vertical_stack(x, apply, labels))  # each [B, H, W, 2p]
    return self._horizontal_stack(x, links, apply, labels)  # [B, H, W, P]

  # ---- cached sampling --------------------------------------------------------------

  supports_fast_sampling = True

  def incremental_fill(self, images, noise, condition, row_start, row_stop):
    """Samples rows `row_start .. row_stop-1` with cached activations.

    The vertical stack runs once per row: when row i is complete, each vertical layer
    evaluates row i from a cache of its input on the kh-1 rows above plus the new
    row, and the links turn its pre-gate features into the horizontal stack's input
    for row i+1. The horizontal stack runs once per subpixel at one position: each
    1 x (k//2 + 1) layer keeps its input on the current row; the 1x1 layers need no
    cache. Cost per image grows linearly in H * W, and the images equal those of the
    naive sampler (`fast=False`) for the same noise (the same arithmetic up to float
    summation order).

    The caches start from one full pass over `images`: by causality the activations on
    rows before `row_start` are final, so any row can start a chunk.

    Args and returns: see `base.AutoregressiveModel.incremental_fill`.
    """
    _, width, channels = self.image_shape
    top, side, _ = self.vertical_convs[0].cache_padding  # kh - 1, k // 2
    left = self.horizontal_convs[0].cache_padding[1]  # k // 2

    recorded = []

    def record(layer, v):
      # The cached path computes in float32, whatever the mixed-precision policy.
      recorded.append(tf.cast(v, tf.float32))  # [B, H, W, F_in]
      return layer(v)

    x = self._scaled_images(images)  # [B, H, W, C]
    links = self._link_maps(self._vertical_stack(x, record, condition))
    carry = _Window(
        # Each vertical layer's input on rows row_start-kh+1 .. row_start-1.
        above=tuple(sampling.window_above(v, row_start, top, side)
                    for v in recorded),  # each [B, kh-1, W + 2(k//2), F_in]
        # The horizontal stack's input from above on row row_start.
        links=tuple(tf.cast(tf.gather(link, row_start, axis=1), tf.float32)
                    for link in links))  # each [B, W, 2p]
    widths = [channels] + [self.hparams["hidden_dim"]] * (len(self.horizontal_convs) - 1)
    empty_row = _Row(tuple(tf.zeros([tf.shape(images)[0], width + left, f])
                           for f in widths))  # each [B, W + k//2, F_in]
    index = {id(layer): n for n, layer in enumerate(self.horizontal_convs)}

    def position(i, j, c, images, carry, per_row, row):
      del c, per_row
      written = []

      def conv(layer, h):
        if id(layer) not in index:
          return layer.pointwise(h)  # [B, F_out]
        cached = sampling.set_column(row.inputs[index[id(layer)]], j + left,
                                     h)  # [B, W + k//2, F_in], float32 like the cache
        written.append(cached)
        return layer.horizontal(cached, j)  # [B, 2p]

      x = self._scaled_images(images[:, i, j])  # [B, C]
      at_j = [link[:, j] for link in carry.links]  # each [B, 2p]
      params = self._horizontal_stack(x, at_j, conv, condition)  # [B, P]
      return params, _Row(tuple(written))

    def after_draw(i, j, images, row):
      # The first layer caches the pixel itself, which has just changed. Deeper caches
      # are final: by the masks, no feature at (i, j) sees the subpixel just sampled
      # until the next channel's step recomputes them.
      first = sampling.set_column(row.inputs[0], j + left, self._scaled_images(images[:, i, j]))
      return _Row((first,) + row.inputs[1:])

    def end_row(i, images, carry, per_row, row):
      del per_row, row
      # Row i is complete: run the vertical stack on it, once.
      new_rows = []

      def conv_row(layer, v):
        n = len(new_rows)
        padded = tf.pad(tf.cast(v, tf.float32), [[0, 0], [side, side], [0, 0]])  # [B, W+2s, F]
        new_rows.append(padded)
        return layer.row(tf.concat([carry.above[n], padded[:, None]], axis=1))  # [B, W, 2p]

      pre = self._vertical_stack(self._scaled_images(images[:, i]), conv_row, condition)
      return _Window(
          above=tuple(sampling.roll_window(a, r) for a, r in zip(carry.above, new_rows)),
          links=tuple(link.pointwise(features) for link, features in zip(self.links, pre)))

    return sampling.cached_rows(self.head, images, noise, row_start, row_stop, carry,
                                empty_row, lambda i, carry: None, position, after_draw,
                                end_row)


class _Window(typing.NamedTuple):
  """What a cached Gated PixelCNN row starts from."""
  above: tuple  # Per vertical layer: its input on the kh-1 rows above, [B, kh-1, W+2s, F].
  links: tuple  # Per layer: the horizontal stack's input from above on the row, [B, W, 2p].


class _Row(typing.NamedTuple):
  """The caches of the row being drawn."""
  inputs: tuple  # Per horizontal layer: its input on the row, [B, W + k//2, F_in].
