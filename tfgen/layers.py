"""Layers shared by the models: masked and shifted convolutions, biases, a MADE.

Two ways to make a convolution causal live here, one of each:
- `MaskedConv2D` (PixelCNN): a centred kxk kernel whose future taps are zeroed.
- `CausalConv2D` (Gated PixelCNN, PixelCNN++): a kernel padded asymmetrically so it
  only reaches rows above ("down") or rows above and columns to the left
  ("down_right"); `shift_down` / `shift_right` then move the map by one row or
  column so a position stops seeing its own row or itself.

Glossary of tensor shapes:
  B: batch size.  H, W: image height and width.
  F_in, F_out: feature channels into and out of a layer.
  C: colour channels of the image (sets the number of channel groups).
  kh, kw: kernel height and width.
"""

import keras
import numpy as np
import tensorflow as tf


def channel_groups(num_features, num_colors):
  """Colour group of each feature: feature `f` of `n` belongs to group `f * C // n`.

  Contiguous, near-equal groups, so any width `n >= C` works; the categorical pixel
  head lays out its `C * K` logits the same way.
  """
  return np.arange(num_features) * num_colors // num_features


def causal_mask(kernel_size, in_features, out_features, mask_type, num_colors=1):
  """The PixelCNN kernel mask.

  A kernel position is kept when it lies strictly before the centre in raster order
  (rows above, or the centre row left of the centre). At the centre, output group g
  (colour channel g of the current pixel) sees input group g' when

    mask "A":  g' <  g     (first layer: a subpixel never sees itself)
    mask "B":  g' <= g     (later layers: features of g already exclude subpixel g)

  Args:
    kernel_size: `(kh, kw)`, odd sizes.
    in_features: `F_in`.
    out_features: `F_out`.
    mask_type: "A" or "B".
    num_colors: `C`.

  Returns:
    float32 numpy array `[kh, kw, F_in, F_out]` of zeros and ones.

  Raises:
    ValueError: for an even kernel size, an unknown mask type, or fewer features than
      colour channels.
  """
  kh, kw = kernel_size
  if kh % 2 == 0 or kw % 2 == 0:
    raise ValueError(f"Masked kernels need odd sizes, got {kernel_size}.")
  centre = pixel_mask(in_features, out_features, mask_type, num_colors)
  ci, cj = kh // 2, kw // 2
  mask = np.zeros((kh, kw, in_features, out_features), np.float32)
  mask[:ci] = 1.0
  mask[ci, :cj] = 1.0
  mask[ci, cj] = centre
  return mask


def pixel_mask(in_features, out_features, mask_type, num_colors=1):
  """The mask of the tap at the current pixel: `[F_in, F_out]` of zeros and ones.

  Output group g (colour channel g) sees input group g' when g' < g (mask "A") or
  g' <= g (mask "B").

  Raises:
    ValueError: for an unknown mask type or fewer features than colour channels.
  """
  if mask_type not in ("A", "B"):
    raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}.")
  if min(in_features, out_features) < num_colors:
    raise ValueError(
        f"A masked layer with {num_colors} colour channels needs at least {num_colors} "
        f"features in and out, got {in_features} in and {out_features} out.")
  g_in = channel_groups(in_features, num_colors)[:, None]  # [F_in, 1]
  g_out = channel_groups(out_features, num_colors)[None, :]  # [1, F_out]
  return ((g_in < g_out) if mask_type == "A" else (g_in <= g_out)).astype(np.float32)


@keras.saving.register_keras_serializable(package="tfgen")
class MaskedConv2D(keras.layers.Conv2D):
  """A 'same'-padded convolution whose kernel is multiplied by a causal mask.

  The mask multiplies the kernel in every forward pass (never assigned into the
  variable), so gradients of masked weights are exactly zero, the optimizer state
  stays consistent, and exported graphs carry the mask as a constant.

  Args:
    filters: `F_out`.
    kernel_size: int or `(kh, kw)`, odd.
    mask_type: "A" (first layer) or "B" (every later layer), see `causal_mask`.
    num_colors: `C`, the number of channel groups.
    **kwargs: passed to `keras.layers.Conv2D` (activation, initializers, ...).
  """

  def __init__(self, filters, kernel_size, mask_type="B", num_colors=1, **kwargs):
    kwargs.pop("padding", None)
    super().__init__(filters, kernel_size, padding="same", **kwargs)
    self.mask_type = mask_type
    self.num_colors = int(num_colors)

  def build(self, input_shape):
    super().build(input_shape)
    # A NumPy array, made a constant in whichever graph the forward pass is traced.
    self.mask = causal_mask(self.kernel_size, int(input_shape[-1]), self.filters,
                            self.mask_type, self.num_colors)

  def convolution_op(self, inputs, kernel):
    kernel = kernel * tf.constant(self.mask, kernel.dtype)  # [kh, kw, F_in, F_out]
    if tuple(self.strides) != (1, 1):
      return super().convolution_op(inputs, kernel)
    # Only the taps the mask keeps are computed: the kernel is cut to the bounding
    # box of its non-zero taps (for mask A/B the rows down to the centre, a
    # (k//2 + 1) x k kernel) and the input padded to match, so a 7x7 layer does the
    # work of a 4x7 one. A 1x1 layer is a matrix product.
    (top, bottom), (left, right) = self.used_rows_and_columns
    (ci, cj), (dh, dw) = self.cache_padding, self.dilation_rate
    kernel = kernel[top:bottom + 1, left:right + 1]
    padding = [[dh * (ci - top), dh * (bottom - ci)], [dw * (cj - left), dw * (right - cj)]]
    return causal_conv(inputs, kernel, padding, self.dilation_rate)

  @property
  def used_rows_and_columns(self):
    """`((first_row, last_row), (first_col, last_col))`: the smallest box of kernel taps
    that holds the centre and every non-zero tap of the mask."""
    rows, cols = np.nonzero(np.asarray(self.mask).any(axis=(2, 3)))
    ci, cj = self.cache_padding
    rows, cols = np.append(rows, ci), np.append(cols, cj)
    return (int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))

  def get_config(self):
    config = super().get_config()
    config.update(mask_type=self.mask_type, num_colors=self.num_colors)
    return config

  # ---- incremental evaluation (cached sampling) -----------------------------------
  #
  # A causal kxk convolution at (i, j) splits into a *vertical* part, rows i-ph..i-1,
  # which are final once row i starts, and a *horizontal* part, row i up to column j.
  # Caching the last ph rows of the layer's input and the current row makes the cost
  # of one position independent of the image size (Ramachandran et al. 2017).

  @property
  def cache_padding(self):
    """`(ph, pw)`: rows above and columns either side that a position reads."""
    return self.kernel_size[0] // 2, self.kernel_size[1] // 2

  def _masked_kernel(self):
    # The incremental path runs outside Keras's autocast: it computes in the
    # variables' dtype (float32), whatever the layer's mixed-precision policy.
    kernel = tf.convert_to_tensor(self.kernel)
    return kernel * tf.constant(self.mask, kernel.dtype)  # [kh, kw, F_in, F_out]

  def pointwise(self, x):
    """A 1x1 layer at one position: `[B, F_in]` -> `[B, F_out]`."""
    if self.kernel_size != (1, 1):
      raise ValueError(f"pointwise() needs a 1x1 layer, {self.name} is {self.kernel_size}.")
    kernel = self._masked_kernel()
    out = tf.matmul(tf.cast(x, kernel.dtype), kernel[0, 0])
    return out + self.bias if self.use_bias else out

  def vertical(self, rows):
    """Contribution of the rows above to a whole row.

    Args:
      rows: `[B, ph, W + 2 pw, F_in]`, the layer's input on the ph rows above, zero
        padded left and right.

    Returns:
      `[B, W, F_out]`, without the bias.
    """
    ph, _ = self.cache_padding
    if ph == 0:
      return None
    kernel = self._masked_kernel()[:ph]  # [ph, kw, F_in, F_out]
    return tf.nn.conv2d(tf.cast(rows, kernel.dtype), kernel, strides=1, padding="VALID")[:, 0]

  def horizontal(self, row, j):
    """Contribution of the current row, columns j-pw..j, plus the bias.

    Args:
      row: `[B, W + 2 pw, F_in]`, the layer's input on the current row, zero padded;
        columns after j are ignored (masked).
      j: int32 scalar column.

    Returns:
      `[B, F_out]`.
    """
    ph, pw = self.cache_padding
    kernel = self._masked_kernel()[ph, :pw + 1]  # [pw+1, F_in, F_out]
    window = tf.slice(row, tf.stack([0, j, 0]), tf.stack([-1, pw + 1, -1]))  # [B, pw+1, F_in]
    out = tf.einsum("bwf,wfo->bo", tf.cast(window, kernel.dtype), kernel)
    return out + self.bias if self.use_bias else out


def causal_conv(inputs, kernel, padding, dilation_rate=(1, 1)):
  """A stride-1 convolution with zero padding `[[top, bottom], [left, right]]`.

  The one place the causal layers run their convolutions. The input is padded by
  `tf.pad` and convolved "VALID": on CPU (TF 2.21, oneDNN) a convolution with the
  same explicit padding ran 1.8x slower in float32 and 26x in bfloat16, forward and
  backward (bench/conv_padding_bench.py). A 1x1
  kernel is a matrix product over the channels.

  Args:
    inputs: `[B, H, W, F_in]`.
    kernel: `[kh, kw, F_in, F_out]`, in the inputs' dtype.
    padding: `[[top, bottom], [left, right]]`, with `top + bottom = dh (kh - 1)` and
      `left + right = dw (kw - 1)` for an output of the input's size.
    dilation_rate: `(dh, dw)`.

  Returns:
    `[B, H', W', F_out]`.
  """
  kh, kw, f_in, f_out = kernel.shape
  padded = any(any(p) for p in padding)
  if (kh, kw) == (1, 1) and not padded:
    flat = tf.matmul(tf.reshape(inputs, [-1, f_in]), kernel[0, 0])  # [B H W, F_out]
    return tf.reshape(flat, tf.concat([tf.shape(inputs)[:-1], [f_out]], 0))
  if padded:
    inputs = tf.pad(inputs, [[0, 0]] + [list(p) for p in padding] + [[0, 0]])
  return tf.nn.conv2d(inputs, kernel, strides=1, padding="VALID",
                      dilations=list(dilation_rate))


def shift_down(x, rows=1):
  """Moves a map `[B, H, W, F]` down by `rows`, zero-filling the top.

  After a "down" `CausalConv2D` (rows <= i), output (i, j) then reads rows < i only.
  Written as a slice then a pad, which are each other's gradients; a strided slice
  (`x[:, :H]`) has a gradient that costs as much as a convolution on CPU.
  """
  height = x.shape[1]
  kept = tf.slice(x, [0, 0, 0, 0], [-1, height - rows, -1, -1])  # [B, H - rows, W, F]
  return tf.pad(kept, [[0, 0], [rows, 0], [0, 0], [0, 0]])  # [B, H, W, F]


def shift_right(x, cols=1):
  """Moves a map `[B, H, W, F]` right by `cols`, zero-filling the left."""
  width = x.shape[2]
  kept = tf.slice(x, [0, 0, 0, 0], [-1, -1, width - cols, -1])  # [B, H, W - cols, F]
  return tf.pad(kept, [[0, 0], [0, 0], [cols, 0], [0, 0]])  # [B, H, W, F]


@keras.saving.register_keras_serializable(package="tfgen")
class CausalConv2D(keras.layers.Conv2D):
  """A convolution padded so that each output reads only positions up to its own.

  With stride s, output (i, j) reads input rows s*i - kh + 1 .. s*i and

    direction "down":        columns s*j - (kw-1)/2 .. s*j + (kw-1)/2   (kw odd)
    direction "down_right":  columns s*j - kw + 1 .. s*j

  (zero padding outside the image), so an output map has the size of a "same"
  convolution, ceil(H / s) x ceil(W / s). "down" reads the current row at columns
  on both sides: it is causal only once followed by `shift_down`. "down_right" reads
  the current pixel itself; `mask_type` masks that tap by colour group (see
  `pixel_mask`), or `shift_right` excludes it.

  Args:
    filters: `F_out`.
    kernel_size: int or `(kh, kw)`.
    direction: "down" or "down_right".
    mask_type: None, "A" or "B"; only for "down_right".
    num_colors: `C`, the number of channel groups `mask_type` uses.
    **kwargs: passed to `keras.layers.Conv2D` (strides, activation, ...).

  References:
    [1] Tim Salimans, Andrej Karpathy, Xi Chen, Diederik P. Kingma. PixelCNN++:
        Improving the PixelCNN with Discretized Logistic Mixture Likelihood and Other
        Modifications. ICLR 2017. https://arxiv.org/abs/1701.05517
  """

  def __init__(self, filters, kernel_size, direction="down", mask_type=None, num_colors=1,
               **kwargs):
    kwargs.pop("padding", None)
    super().__init__(filters, kernel_size, padding="valid", **kwargs)
    if direction not in ("down", "down_right"):
      raise ValueError(f"direction must be 'down' or 'down_right', got {direction!r}.")
    if direction == "down" and self.kernel_size[1] % 2 == 0:
      raise ValueError(f"A 'down' convolution needs an odd kernel width, got {self.kernel_size}.")
    if mask_type is not None and direction != "down_right":
      raise ValueError("mask_type applies to 'down_right' convolutions only.")
    self.direction = direction
    self.mask_type = mask_type
    self.num_colors = int(num_colors)
    self.mask = None

  @property
  def causal_padding(self):
    """`[[top, bottom], [left, right]]` zero padding of the input."""
    kh, kw = self.kernel_size
    if self.direction == "down":
      return [[kh - 1, 0], [(kw - 1) // 2, (kw - 1) // 2]]
    return [[kh - 1, 0], [kw - 1, 0]]

  def build(self, input_shape):
    super().build(input_shape)
    if self.mask_type is not None:
      # A NumPy array, made a constant in whichever graph the forward pass is traced.
      # Only the bottom-right tap, the current pixel itself, is masked.
      kh, kw = self.kernel_size
      self.mask = np.ones((kh, kw, int(input_shape[-1]), self.filters), np.float32)
      self.mask[kh - 1, kw - 1] = pixel_mask(int(input_shape[-1]), self.filters,
                                             self.mask_type, self.num_colors)

  def convolution_op(self, inputs, kernel):
    if self.mask is not None:
      kernel = kernel * tf.constant(self.mask, kernel.dtype)
    if tuple(self.strides) == (1, 1):
      return causal_conv(inputs, kernel, self.causal_padding, self.dilation_rate)
    inputs = tf.pad(inputs, [[0, 0]] + self.causal_padding + [[0, 0]])
    return super().convolution_op(inputs, kernel)

  def compute_output_shape(self, input_shape):
    sh, sw = self.strides
    size = lambda n, s: None if n is None else -(-n // s)
    return (input_shape[0], size(input_shape[1], sh), size(input_shape[2], sw), self.filters)

  def get_config(self):
    config = super().get_config()
    config.update(direction=self.direction, mask_type=self.mask_type,
                  num_colors=self.num_colors)
    return config

  # ---- incremental evaluation (cached sampling) -----------------------------------
  #
  # Output (i, j) reads input rows i-kh+1 .. i. The rows above (the *vertical* part)
  # are final once row i starts; row i itself (the *horizontal* part) is read at
  # padded columns j .. j+kw-1, i.e. image columns j-left .. j+right with
  # `(left, right)` from `cache_padding`. A cache of the layer's input on the last
  # kh-1 rows and on the current row, zero padded left and right, then gives any
  # output position or row without the rest of the map (Ramachandran et al. 2017).
  # Stride 1 only; computed in the variables' dtype (float32) outside Keras's
  # autocast, like `MaskedConv2D`.

  @property
  def cache_padding(self):
    """`(rows, left, right)`: input rows above and columns left and right one output reads."""
    (top, _), (left, right) = self.causal_padding
    return top, left, right

  def _incremental_kernel(self):
    if tuple(self.strides) != (1, 1) or tuple(self.dilation_rate) != (1, 1):
      raise ValueError(
          f"Incremental evaluation of {self.name} needs strides and dilation 1, got "
          f"strides {self.strides}, dilation {self.dilation_rate}.")
    if self.activation is not keras.activations.linear:
      raise ValueError(
          f"Incremental evaluation of {self.name} needs a linear layer (its vertical and "
          "horizontal parts are summed); apply the activation outside the layer.")
    kernel = tf.convert_to_tensor(self.kernel)
    if self.mask is not None:
      kernel = kernel * tf.constant(self.mask, kernel.dtype)
    return kernel  # [kh, kw, F_in, F_out]

  def pointwise(self, x):
    """A 1x1 layer at any set of positions: `[..., F_in]` -> `[..., F_out]`."""
    if tuple(self.kernel_size) != (1, 1):
      raise ValueError(f"pointwise() needs a 1x1 layer, {self.name} is {self.kernel_size}.")
    kernel = self._incremental_kernel()[0, 0]  # [F_in, F_out]
    x = tf.cast(x, kernel.dtype)
    # tensordot keeps the static shape, which tf.while_loop state needs.
    out = tf.matmul(x, kernel) if x.shape.rank == 2 else tf.tensordot(x, kernel, 1)
    return out + self.bias if self.use_bias else out  # [..., F_out]

  def vertical(self, rows):
    """Contribution of the kh-1 rows above to a whole output row, without the bias.

    Args:
      rows: `[B, kh-1, W + left + right, F_in]`, the layer's input on the rows above,
        zero padded left and right (see `cache_padding`).

    Returns:
      `[B, W, F_out]`, or None for a one-row kernel.
    """
    kernel = self._incremental_kernel()[:-1]  # [kh-1, kw, F_in, F_out]
    if kernel.shape[0] == 0:
      return None
    return tf.nn.conv2d(tf.cast(rows, kernel.dtype), kernel, strides=1, padding="VALID")[:, 0]

  def horizontal(self, row, j):
    """Contribution of the current row to output column j, plus the bias.

    Args:
      row: `[B, W + left + right, F_in]`, the layer's input on the current row, zero
        padded; only padded columns j .. j+kw-1 are read.
      j: int32 scalar column.

    Returns:
      `[B, F_out]`.
    """
    kernel = self._incremental_kernel()[-1]  # [kw, F_in, F_out]
    kw = kernel.shape[0]
    window = tf.slice(row, tf.stack([0, j, 0]), tf.stack([-1, kw, -1]))  # [B, kw, F_in]
    out = tf.einsum("bwf,wfo->bo", tf.cast(window, kernel.dtype), kernel)
    return out + self.bias if self.use_bias else out

  def row(self, rows):
    """A whole output row from the kh input rows it reads (the last is its own row).

    For a "down" convolution, whose current-row taps reach columns to the right, this
    is how a row is evaluated once it is complete.

    Args:
      rows: `[B, kh, W + left + right, F_in]`, the layer's input on rows i-kh+1 .. i,
        zero padded left and right.

    Returns:
      `[B, W, F_out]`, bias included.
    """
    kernel = self._incremental_kernel()
    out = tf.nn.conv2d(tf.cast(rows, kernel.dtype), kernel, strides=1, padding="VALID")[:, 0]
    return out + self.bias if self.use_bias else out


class BuiltByFirstCall:
  """Mixin for a layer (or model) whose variables are all its sublayers': `build()`
  creates nothing, and each sublayer builds itself on the layer's first call.

  Without a `build()` of its own, Keras builds such a layer by first tracing its `call`
  on symbolic inputs, and the real first call then runs it again: for PixelCNN++, with
  52 gated resnet blocks, most of the time of building or loading the model. List it
  before the Keras base class. `tests/test_contract.py` checks that building no family
  traces a layer so.
  """

  def build(self, input_shape):  # One argument: Keras passes the first input's shape.
    del input_shape


@keras.saving.register_keras_serializable(package="tfgen")
class ConditionBias(BuiltByFirstCall, keras.layers.Layer):
  """A learned bias from the conditioning added to a feature map: h + V^T y.

  The conditioning of van den Oord et al. (2016b), eq. (4). `y` is either a class
  label, read as a one-hot vector (so V^T y is a lookup of one row of V), or any
  float vector `[B, D]` (an embedding, attributes): the same term, a matrix product.
  Give exactly one of `num_classes` and `condition_dim`.

  Args:
    filters: `F`, the width of the feature map it is added to.
    num_classes: number of class labels; `call` then takes int labels `[B]`.
    condition_dim: `D`; `call` then takes float vectors `[B, D]`.
  """

  def __init__(self, filters, num_classes=None, condition_dim=None, **kwargs):
    super().__init__(**kwargs)
    if (num_classes is None) == (condition_dim is None):
      raise ValueError("ConditionBias needs exactly one of num_classes and condition_dim.")
    self.filters = int(filters)
    self.num_classes = None if num_classes is None else int(num_classes)
    self.condition_dim = None if condition_dim is None else int(condition_dim)
    # Zero init: the conditional model starts as the unconditional one.
    if self.num_classes is not None:
      self.projection = keras.layers.Embedding(self.num_classes, self.filters,
                                               embeddings_initializer="zeros")
    else:
      self.projection = keras.layers.Dense(self.filters, use_bias=False,
                                           kernel_initializer="zeros")

  def bias(self, condition):
    """V^T y: `[B]` labels or `[B, D]` vectors -> `[B, F]`, in the compute dtype."""
    if self.num_classes is None:
      condition = tf.cast(condition, self.compute_dtype)
    return self.projection(condition)

  def call(self, features, condition):
    bias = tf.cast(self.bias(condition), features.dtype)  # [B, F]
    # Broadcast over the spatial axes of [B, ..., F]: maps and single positions alike.
    shape = [-1] + [1] * (features.shape.rank - 2) + [self.filters]
    return features + tf.reshape(bias, shape)

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, num_classes=self.num_classes,
                  condition_dim=self.condition_dim)
    return config


def made_masks(event_size, hidden_units):
  """The connectivity masks of a one-hidden-layer MADE (Germain et al. 2015).

  Input d (1-based degree d) reaches hidden unit u of degree m(u) when m(u) >= d, and
  hidden unit u reaches output d when d > m(u), so output d depends on inputs < d only
  (output 1 on none). Hidden degrees cycle through 1 .. D-1.

  Returns:
    `(input_to_hidden [D, U], hidden_to_output [U, D])` float32 0/1 masks.
  """
  inputs = np.arange(1, event_size + 1)  # [D]
  hidden = np.arange(hidden_units) % max(1, event_size - 1) + 1  # [U]
  first = (hidden[None, :] >= inputs[:, None]).astype(np.float32)  # [D, U]
  second = (inputs[None, :] > hidden[:, None]).astype(np.float32)  # [U, D]
  return first, second


class AutoregressiveNetwork(keras.layers.Layer):
  """A MADE with a context input: (shift, log-scale) of z whose entry d depends only on
  z_<d and the context, the network inside an inverse autoregressive flow.

    h = relu((W_1 * M_1) z + V_1 c + b_1),   [m, s] = (W_2 * M_2) h + V_2 c + b_2

  The masks multiply the kernels (`kernel * mask`, which TFLite converts) and the context
  c (the encoder's extra outputs, Kingma et al. 2016) enters unmasked, so even z_1's
  transform depends on the image. The scale is sigma = sigmoid(s + 2) in (0, 1), the
  stable "forget gate" form of the IAF paper (sigma near 0.88 at initialization, where
  the output kernels are zero), returned as the log-scale -log sigma that
  `tfb.MaskedAutoregressiveFlow` divides by.

  Args:
    event_size: D, the size of z.
    hidden_units: U, the width of the hidden layer.

  Call args:
    z: float `[..., D]`.
    context: float `[..., E]` broadcasting against z's leading axes, or None.

  Returns:
    `(shift [..., D], log_scale [..., D])`.

  References:
    [1] Mathieu Germain, Karol Gregor, Iain Murray, Hugo Larochelle. MADE: Masked
        Autoencoder for Distribution Estimation. ICML 2015.
        https://arxiv.org/abs/1502.03509
    [2] Diederik P. Kingma, Tim Salimans, Rafal Jozefowicz, Xi Chen, Ilya Sutskever, Max
        Welling. Improved Variational Inference with Inverse Autoregressive Flow.
        NeurIPS 2016. https://arxiv.org/abs/1606.04934
  """

  def __init__(self, event_size, hidden_units, **kwargs):
    super().__init__(**kwargs)
    self.event_size = int(event_size)
    self.hidden_units = int(hidden_units)
    if self.event_size < 1 or self.hidden_units < 1:
      raise ValueError(f"AutoregressiveNetwork needs positive sizes, got event_size="
                       f"{event_size}, hidden_units={hidden_units}.")
    first, second = made_masks(self.event_size, self.hidden_units)
    self._mask_in = first  # [D, U]
    self._mask_out = np.concatenate([second, second], axis=1)  # [U, 2D]: m and s alike.

  def build(self, z_shape, context_shape=None):
    d, u = self.event_size, self.hidden_units
    self.kernel_in = self.add_weight(name="kernel_in", shape=(d, u),
                                     initializer="glorot_uniform")
    self.bias_in = self.add_weight(name="bias_in", shape=(u,), initializer="zeros")
    # Zero output kernels: every flow step starts as the same fixed shrink.
    self.kernel_out = self.add_weight(name="kernel_out", shape=(u, 2 * d),
                                      initializer="zeros")
    self.bias_out = self.add_weight(name="bias_out", shape=(2 * d,), initializer="zeros")
    self.context_in = self.context_out = None
    if context_shape is not None:
      e = int(context_shape[-1])
      self.context_in = self.add_weight(name="context_in", shape=(e, u),
                                        initializer="glorot_uniform")
      self.context_out = self.add_weight(name="context_out", shape=(e, 2 * d),
                                         initializer="zeros")

  def call(self, z, context=None):
    h = tf.matmul(z, self.kernel_in * self._mask_in) + self.bias_in  # [..., U]
    out = self.bias_out  # [2D]
    if context is not None:
      context = tf.cast(context, z.dtype)
      # [B, E] contexts broadcast over the leading sample axis of z [S, B, D].
      h = h + tf.matmul(context, self.context_in)  # [..., U]
      out = out + tf.matmul(context, self.context_out)  # [..., 2D]
    out = tf.matmul(tf.nn.relu(h), self.kernel_out * self._mask_out) + out  # [..., 2D]
    shift, s = tf.split(out, 2, axis=-1)  # [..., D] each
    return shift, -tf.math.log_sigmoid(s + 2.0)

  def get_config(self):
    config = super().get_config()
    config.update(event_size=self.event_size, hidden_units=self.hidden_units)
    return config
