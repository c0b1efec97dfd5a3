"""PixelRNN: the Row LSTM and the Diagonal BiLSTM (van den Oord et al. 2016, section 3).

Both models share PixelCNN's input and output layers and pixel head; between them sit
`num_layers` two-dimensional LSTM layers with residual connections. What differs is the
order in which each LSTM layer visits the image:

  Row LSTM          one step per row, top to bottom, every pixel of the row at once:
                    H sequential steps; a triangular receptive field above the pixel.
  Diagonal BiLSTM   one step per diagonal, in two directions: H + W - 1 sequential
                    steps (2N - 1 for N x N); the receptive field is every earlier
                    subpixel (with one small departure from [1], see `DiagonalBiLSTM`).

The recurrences run inside the compiled graph (`_scan`, a `tf.while_loop`), one loop
step per row or diagonal, never a Python loop at run time.

Glossary of tensor shapes:
  B: batch.  H, W: image height and width.  C: colour channels.
  h: `hidden_dim`, the LSTM state; the residual stream between layers has 2h features.
  G = 4h: the four gates (input, forget, output, cell), each h wide, concatenated.
  N = H + W - 1: the width of a skewed map (one column per diagonal of the image).
  k: `kernel_size` of the Row LSTM's 1 x k convolutions.
  P: parameters per pixel (C * K for the categorical head).

Colour channels: every feature map (the 2h residual stream, the h state and each gate)
is split into C groups by `layers.channel_groups`; group g may depend on the colour
channels < g of the current pixel and on everything at earlier pixels. The masked
convolutions (`layers.MaskedConv2D`) keep that invariant, and the LSTM's element-wise
updates keep it because feature m of every gate, of the cell and of the state share the
group of m (each gate is its own masked convolution of width h for exactly that reason:
the groups of one convolution of width 4h would not line up with those of width h).

References:
  [1] Aaron van den Oord, Nal Kalchbrenner, Koray Kavukcuoglu. Pixel Recurrent Neural
      Networks. ICML 2016. https://arxiv.org/abs/1601.06759
  [2] Sepp Hochreiter, Juergen Schmidhuber. Long Short-Term Memory. Neural Computation
      9(8), 1997.
"""

import typing

import keras
import tensorflow as tf

from tfgen import layers
from tfgen import sampling
from tfgen.models import base

# The order of the four gates in every [..., G] tensor.
GATES = ("input", "forget", "output", "cell")


def lstm_update(gates, cell):
  """One LSTM update from pre-activation gates (eq. 3 of [1]).

    c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h' = sigmoid(o) * tanh(c')

  Args:
    gates: `[..., 4h]`, the pre-activations of the gates in `GATES` order.
    cell: `[..., h]`, the previous cell state.

  Returns:
    `(state, cell)`, each `[..., h]`.
  """
  i, f, o, g = tf.split(gates, 4, axis=-1)  # each [..., h]
  cell = tf.sigmoid(f) * cell + tf.sigmoid(i) * tf.tanh(g)
  return tf.sigmoid(o) * tf.tanh(cell), cell


def skew(x):
  """Moves row i of a map right by i, so that each diagonal of the image is a column.

  Pixel (i, j) lands in column n = i + j; a column n then holds the pixels (i, n - i)
  of one anti-diagonal, top to bottom. Zeros fill the rest.

  Args:
    x: `[B, H, W, F]`.

  Returns:
    `[B, H, N, F]`, N = H + W - 1.
  """
  _, height, width, features = x.shape
  batch = tf.shape(x)[0]
  # Rows of width W + H laid end to end and re-read with width W + H - 1 shift each
  # row one column further right than the row above.
  padded = tf.pad(x, [[0, 0], [0, 0], [0, height], [0, 0]])  # [B, H, W + H, F]
  flat = tf.reshape(padded, [batch, height * (width + height), features])
  # tf.slice, not a strided slice: its gradient is a pad (fast on CPU).
  flat = tf.slice(flat, [0, 0, 0], [-1, height * (width + height - 1), -1])  # [B, H * N, F]
  return tf.reshape(flat, [batch, height, width + height - 1, features])  # [B, H, N, F]


def unskew(x, width):
  """The inverse of `skew`: `[B, H, N, F]` -> `[B, H, W, F]` (pixel (i, j) from (i, i + j))."""
  _, height, columns, features = x.shape
  batch = tf.shape(x)[0]
  flat = tf.reshape(x, [batch, height * columns, features])  # [B, H * N, F]
  flat = tf.pad(flat, [[0, 0], [0, height], [0, 0]])  # [B, H * (N + 1), F]
  flat = tf.reshape(flat, [batch, height, columns + 1, features])
  return tf.slice(flat, [0, 0, 0, 0], [-1, -1, width, -1])  # [B, H, W, F]


def _scan(step, elems, initializer, output_like):
  """A scan over the leading axis: the one place the sequential recurrences run.

  Unlike `tf.scan`, what a step carries and what it outputs differ: the Diagonal
  BiLSTM carries its cells but outputs only its states; a stacked output that nothing
  reads would still be written at every step and zero-filled in the gradient. The loop
  declares its trip count as `maximum_iterations`: XLA compiles a loop that stacks
  lists only with that bound, and `compile()` turns XLA on by default on a GPU. A
  separate function so that tests can count the sequential steps of each model.

  Args:
    step: `step(carry, element) -> (carry, output)`, `output` a tuple of tensors.
    elems: `[N, ...]`.
    initializer: the carry before the first step.
    output_like: a tuple of tensors with the dtypes and shapes of `output`'s (the
      stacked lists need their element shapes before the loop: TFLite lowers them
      to builtins only then).

  Returns:
    The outputs, each stacked `[N, ...]`.
  """
  length = elems.shape[0]
  inputs = tf.TensorArray(elems.dtype, size=length, element_shape=elems.shape[1:]).unstack(elems)
  outputs = tuple(tf.TensorArray(like.dtype, size=length, element_shape=like.shape)
                  for like in output_like)

  def body(n, carry, outputs):
    carry, output = step(carry, inputs.read(n))
    return n + 1, carry, tuple(array.write(n, y) for array, y in zip(outputs, output))

  _, _, outputs = tf.while_loop(lambda n, *_: n < length, body,
                                (tf.constant(0), initializer, outputs),
                                maximum_iterations=length)
  return tuple(array.stack() for array in outputs)


def _gate_convs(units, kernel_size, num_colors, prefix):
  """The input-to-state convolution: one mask-B `MaskedConv2D` of width h per gate.

  The forget gate's bias starts at 1 (Gers et al. 2000) so that cells remember at first.
  """
  return [layers.MaskedConv2D(units, kernel_size, mask_type="B", num_colors=num_colors,
                              bias_initializer="ones" if gate == "forget" else "zeros",
                              name=f"{prefix}{gate}_gate")
          for gate in GATES]


@keras.saving.register_keras_serializable(package="tfgen")
class RowLSTMLayer(keras.layers.Layer):
  """One Row LSTM layer: an LSTM over rows, all pixels of a row at once ([1], 3.1).

    gates_i = K_is (*) x_i + K_ss (*) h_{i-1}         (i: the row, (*): 1 x k conv)
    h_i, c_i = lstm_update(gates_i, c_{i-1})

  The input-to-state convolution K_is is a masked 1 x k convolution (mask B): on row i
  it reads columns j - k//2 .. j - 1 and, by colour group, pixel (i, j) itself. It is
  computed for all rows at once, before the recurrence. The state-to-state convolution
  K_ss reads the previous row only (columns j - k//2 .. j + k//2), every position of
  which is an earlier pixel, so it needs no mask. The states of row i are therefore
  causal, and h_i at (i, j) sees a triangle: row i - d, columns j - d*(k//2) - k//2 ..
  j + d*(k//2) of the layer's input.

  Args:
    units: h.
    kernel_size: k, odd.
    num_colors: C.
    **kwargs: passed to `keras.layers.Layer`.
  """

  def __init__(self, units, kernel_size=3, num_colors=1, **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.kernel_size = int(kernel_size)
    self.num_colors = int(num_colors)
    self.input_to_state = _gate_convs(self.units, (1, self.kernel_size), self.num_colors, "")

  def build(self, input_shape):
    for conv in self.input_to_state:
      conv.build(input_shape)
    self.state_kernel = self.add_weight(
        name="state_to_state", shape=(self.kernel_size, self.units, 4 * self.units),
        initializer="orthogonal")
    self.built = True

  def input_gates(self, x):
    """K_is (*) x for every row: `[B, H, W, F]` -> `[B, H, W, G]`."""
    return tf.concat([conv(x) for conv in self.input_to_state], axis=-1)

  def state_gates(self, state):
    """K_ss (*) h_{i-1} for one row: `[B, W, h]` -> `[B, W, G]`."""
    kernel = tf.cast(self.state_kernel, state.dtype)  # [k, h, G]
    return tf.nn.conv1d(state, kernel, stride=1, padding="SAME")

  def recurrence(self, gates):
    """The LSTM over rows, top to bottom, from zero states.

    Args:
      gates: `[B, H, W, G]`, the input-to-state part of the gates (with any class bias).

    Returns:
      `(states, cells)`, each `[B, H, W, h]`.
    """
    _, _, width, _ = gates.shape
    zeros = tf.zeros(tf.stack([tf.shape(gates)[0], width, self.units]), gates.dtype)

    def step(carry, row_gates):  # row_gates: [B, W, G]
      state, cell = carry  # each [B, W, h], row i - 1
      carry = lstm_update(row_gates + self.state_gates(state), cell)
      return carry, carry

    states, cells = _scan(step, tf.transpose(gates, [1, 0, 2, 3]), (zeros, zeros),
                          output_like=(zeros, zeros))  # each [H, B, W, h]
    return tf.transpose(states, [1, 0, 2, 3]), tf.transpose(cells, [1, 0, 2, 3])

  def call(self, x):
    return self.recurrence(self.input_gates(x))[0]  # [B, H, W, h]

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units, kernel_size=self.kernel_size, num_colors=self.num_colors)
    return config


@keras.saving.register_keras_serializable(package="tfgen")
class DiagonalBiLSTMLayer(keras.layers.Layer):
  """One Diagonal BiLSTM layer: two LSTMs along the diagonals of the image ([1], 3.2).

  Left to right: the map is skewed (`skew`) so that each diagonal is a column, and an
  LSTM runs over the columns:

    gates_n = K_is (*) x_n + K_ss (*) h_{n-1}   (n: skewed column, K_is 1x1, K_ss 2x1)
    h_n, c_n = lstm_update(gates_n, c_{n-1})

  K_ss at skewed position (i, n) reads the previous column at rows i - 1 and i, i.e.
  (unskewed) the pixels (i - 1, j) above and (i, j - 1) to the left of pixel (i, j)
  (with j = n - i). Both are strictly earlier pixels, and a state at an earlier pixel
  depends, in every colour group, only on subpixels before the current pixel: so
  K_ss needs no mask. The taps that fall outside the image are harmless: row -1 is zero
  padding; skewed positions left of the image (n < i) hold zero input gates and zero
  initial states, so their states stay exactly zero; those right of it (n - i >= W)
  are read only by positions right of the image again, which `unskew` drops. Only K_is,
  at the pixel itself, is masked (mask B, by colour group). Recursively, the state at
  (i, j) sees the quadrant of pixels (i' <= i, j' <= j), up to and including
  (i, j) itself by colour group.

  Right to left: the same LSTM with its own weights runs on the horizontally flipped
  map and its states are flipped back. Its state at (i, j) sees the quadrant
  (i' <= i, j' >= j): the rest of row i, the future. Shifting that map down by one row
  (`layers.shift_down`) makes position (i, j) receive the state of (i - 1, j), which
  sees rows < i only: strictly earlier pixels, so no within-pixel information of the
  current pixel (or of its row) reaches it either. The sum of the two maps sees every
  pixel before (i, j): the receptive field is complete, with no blind spot.

  Almost: a feature at position p never depends on the last channel of pixel p itself
  (mask A, then mask B), so the last subpixel of row i - 1, (i - 1, W - 1, C - 1), is
  carried only by features on row i, at the columns >= W - 1 - s0 that the mask-A
  input layer (kernel 2 s0 + 1) reaches from it, and (i, j) reads row i only at columns
  <= j. With `pixel_channels` = C, the right-to-left direction's gates also read the
  pixels themselves, every channel (an unmasked 1x1 convolution): its states are only
  used one row lower, where all of row i - 1 is in the past, so this is causal, and it
  closes that blind spot. Set on the first layer of a model, it makes the receptive
  field every earlier subpixel.

  Both directions run in one scan of N = H + W - 1 steps, stacked along the batch.

  Args:
    units: h.
    num_colors: C.
    pixel_channels: 0, or C for a right-to-left direction that reads the pixels.
    **kwargs: passed to `keras.layers.Layer`.
  """

  def __init__(self, units, num_colors=1, pixel_channels=0, **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.num_colors = int(num_colors)
    self.pixel_channels = int(pixel_channels)
    self.left_to_right = _gate_convs(self.units, 1, self.num_colors, "ltr_")
    self.right_to_left = _gate_convs(self.units, 1, self.num_colors, "rtl_")
    self.pixels_to_right_to_left = None
    if self.pixel_channels:
      self.pixels_to_right_to_left = keras.layers.Conv2D(
          4 * self.units, 1, use_bias=False, name="rtl_pixels")

  def build(self, input_shape):
    for conv in self.left_to_right + self.right_to_left:
      conv.build(input_shape)
    if self.pixels_to_right_to_left is not None:
      self.pixels_to_right_to_left.build(tuple(input_shape[:-1]) + (self.pixel_channels,))
    # [direction, (tap above, tap left) x h, G]: the 2x1 kernel as one matrix per direction.
    self.state_kernel = self.add_weight(
        name="state_to_state", shape=(2, 2 * self.units, 4 * self.units),
        initializer="orthogonal")
    self.built = True

  def input_gates(self, x, pixels=None):
    """K_is (*) x of each direction, unflipped: `[B, H, W, F]` -> two `[B, H, W, G]`.

    `pixels` `[B, H, W, C]` (the scaled image) is read by the right-to-left direction
    when the layer has `pixel_channels`.
    """
    left = tf.concat([conv(x) for conv in self.left_to_right], axis=-1)  # [B, H, W, G]
    right = tf.concat([conv(x) for conv in self.right_to_left], axis=-1)  # [B, H, W, G]
    if self.pixels_to_right_to_left is not None:
      right += self.pixels_to_right_to_left(pixels)
    return left, right

  def recurrence(self, left_gates, right_gates):
    """Both directional LSTMs, combined by `combine`.

    Args:
      left_gates, right_gates: `[B, H, W, G]`, the input-to-state part of the gates of
        the left-to-right and right-to-left LSTM (unflipped, with any class bias).

    Returns:
      `[B, H, W, h]`.
    """
    return self.combine(*self.directional_states(left_gates, right_gates))

  def directional_states(self, left_gates, right_gates):
    """The states of each direction, unflipped and not yet combined: two `[B, H, W, h]`.

    Args: see `recurrence`.
    """
    _, height, width, _ = left_gates.shape
    batch = tf.shape(left_gates)[0]
    # The 1x1 input-to-state convolution commutes with flipping: flip its output.
    gates = tf.concat([left_gates, tf.reverse(right_gates, axis=[2])], axis=0)  # [2B, H, W, G]
    columns = tf.transpose(skew(gates), [2, 0, 1, 3])  # [N, 2B, H, G]
    kernel = tf.cast(self.state_kernel, gates.dtype)  # [2, 2h, G]
    zeros = tf.zeros(tf.stack([2 * batch, height, self.units]), gates.dtype)

    def step(carry, column_gates):  # column_gates: [2B, H, G]
      state, cell = carry  # each [2B, H, h], skewed column n - 1
      above = tf.pad(tf.slice(state, [0, 0, 0], [-1, height - 1, -1]),
                     [[0, 0], [1, 0], [0, 0]])  # [2B, H, h], row i - 1
      taps = tf.reshape(tf.concat([above, state], axis=-1), [2, -1, 2 * self.units])
      recurrent = tf.reshape(tf.matmul(taps, kernel), [2 * batch, height, 4 * self.units])
      state, cell = lstm_update(column_gates + recurrent, cell)
      return (state, cell), (state,)

    states, = _scan(step, columns, (zeros, zeros), output_like=(zeros,))  # [N, 2B, H, h]
    states = unskew(tf.transpose(states, [1, 2, 0, 3]), width)  # [2B, H, W, h]
    left, right = tf.split(states, 2, axis=0)  # each [B, H, W, h]
    return left, tf.reverse(right, axis=[2])

  def recurrent_gates(self, direction, above, beside):
    """K_ss of one direction at single positions: the 2x1 kernel as one matrix product.

    Args:
      direction: 0 (left to right) or 1 (right to left).
      above: `[..., h]`, the state of the pixel above.
      beside: `[..., h]`, the state of the previous pixel of the row in this
        direction's order (left of it, or right of it for direction 1).

    Returns:
      `[..., G]`.
    """
    kernel = tf.cast(self.state_kernel[direction], above.dtype)  # [2h, G]
    return tf.matmul(tf.concat([above, beside], axis=-1), kernel)

  def combine(self, left, right):
    """Left-to-right states plus right-to-left states shifted down one row."""
    return left + layers.shift_down(right)  # [B, H, W, h]

  def call(self, x, pixels=None):
    return self.recurrence(*self.input_gates(x, pixels))  # [B, H, W, h]

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units, num_colors=self.num_colors,
                  pixel_channels=self.pixel_channels)
    return config


class _PixelRNN(base.AutoregressiveModel):
  """What both PixelRNNs share: the architecture of [1], section 3.4 and table 4.

    x -> 7x7 conv, mask A, 2h                                   [B, H, W, 2h]
      -> num_layers x residual LSTM layer:
           r = LSTM layer (input-to-state mask B) of the stream  [B, H, W, h]
           stream = stream + 1x1 conv (2h), mask B, of r         [B, H, W, 2h]
      -> ReLU -> 1x1 conv (output_dim), mask B -> ReLU -> 1x1 conv (P), mask B
                                                                [B, H, W, P]

  With `num_classes`, a learned per-class bias is added to the input layer's output,
  to the gates of every LSTM (each direction), after every 1x1 convolution of the
  residual stream and to the hidden output layer (as PixelCNN does). In the Diagonal
  BiLSTM the first layer's right-to-left gates also read the pixels (see there).
  With `condition_dim`, V^T h of a float vector h `[B, D]` goes in the same places.

  Subclasses set `MODEL_NAME`, `HPARAMS`, `ODD_HPARAMS` (the hyper-parameters that
  are kernel sizes) and `_GATE_MAPS` (gate maps per layer, for the class biases), and
  define `_make_lstm(units, colors, index)` and `_lstm(lstm, stream, gates, pixels)`
  (`gates`: the layer's `_Conditioning.gates`).
  """

  def __init__(self, image_shape, num_levels, num_classes=None, name=None, **hparams):
    super().__init__(image_shape, num_levels, num_classes, name=name, **hparams)
    hp = self.hparams
    kind = type(self).__name__
    for key in ("hidden_dim", "num_layers", "output_dim"):
      if hp[key] < 1:
        raise ValueError(f"{kind} hyper-parameter {key} must be positive, got {hp[key]}.")
    colors = self.image_shape[-1]
    if min(hp["hidden_dim"], hp["output_dim"]) < colors:  # Masks need a group per colour.
      raise ValueError(
          f"{kind} needs hidden_dim and output_dim of at least the {colors} colour channels "
          f"(one feature group per channel), got hidden_dim={hp['hidden_dim']}, "
          f"output_dim={hp['output_dim']}. Raise them to {colors} or more.")
    h = hp["hidden_dim"]

    def conv(filters, size, mask="B", **kwargs):
      return layers.MaskedConv2D(filters, size, mask_type=mask, num_colors=colors, **kwargs)

    self.input_conv = conv(2 * h, hp["input_kernel_size"], mask="A")
    self.lstms = [self._make_lstm(h, colors, n) for n in range(hp["num_layers"])]
    for lstm in self.lstms:
      lstm.build((None,) + self.image_shape[:2] + (2 * h,))
    self.up_convs = [conv(2 * h, 1) for _ in self.lstms]
    # The logits layer computes in float32 under any mixed-precision policy, so the
    # pixel distribution and its log-likelihood keep full precision.
    self.output_convs = [conv(hp["output_dim"], 1), conv(self.head.num_params, 1, dtype="float32")]
    self.class_biases = None
    if self.is_conditional:
      gates = [4 * h] * self._GATE_MAPS
      widths = [2 * h] + [w for _ in self.lstms for w in gates + [2 * h]] + [hp["output_dim"]]
      self.class_biases = [self._condition_bias(w) for w in widths]
    self._finish_init()

  @property
  def sequential_steps(self):
    """Sequential recurrence steps of one LSTM layer on this image shape."""
    raise NotImplementedError

  def call(self, inputs, training=False):
    x = self._scaled_images(inputs)  # [B, H, W, C]
    conditioning = self._conditioning(self._labels(inputs))
    stream = conditioning.input(self.input_conv(x))  # [B, H, W, 2h]
    for lstm, up, gates, add_up in zip(self.lstms, self.up_convs, conditioning.gates,
                                       conditioning.up):
      states = self._lstm(lstm, stream, gates, x)  # [B, H, W, h]
      stream = stream + add_up(up(states))  # [B, H, W, 2h]
    return self._output(stream, lambda layer, features: layer(features), conditioning.output)

  def _output(self, stream, conv, add_output):
    """The two 1x1 output layers, for whole maps or single positions."""
    hidden = add_output(conv(self.output_convs[0], tf.nn.relu(stream)))  # [..., output_dim]
    return conv(self.output_convs[1], tf.nn.relu(hidden))  # [..., P]

  def _conditioning(self, condition):
    """What conditioning on `condition` (labels, a vector, or None for p(x)) adds to
    each conditioned map, by name: a `_Conditioning` of `features -> features`.

    `class_biases` keeps the biases in the order `call` first used them (the input
    layer; per LSTM layer its gate maps, then its 1x1 convolution; the hidden output
    layer), which is the order of the saved weights; this names them, so the cached
    samplers, which visit the maps in another order, take each by name.
    """
    num_layers, per_layer = len(self.lstms), self._GATE_MAPS + 1
    if condition is None:
      adds = [lambda features: features] * (2 + num_layers * per_layer)
    else:
      adds = [lambda features, bias=bias: bias(features, condition)
              for bias in self.class_biases]
    layer = lambda n: adds[1 + n * per_layer:1 + (n + 1) * per_layer]
    return _Conditioning(input=adds[0],
                         gates=tuple(tuple(layer(n)[:-1]) for n in range(num_layers)),
                         up=tuple(layer(n)[-1] for n in range(num_layers)),
                         output=adds[-1])

  def _input_window(self, x, row_start):
    """The mask-A input layer's cache for row `row_start`: `[B, ph, W + 2pw, C]`."""
    ph, pw = self.input_conv.cache_padding
    return sampling.window_above(x, row_start, ph, pw)

  def _input_feature(self, vertical, input_row, j):
    """The mask-A input layer at (i, j) from its caches: `[B, 2h]`, before conditioning."""
    feature = self.input_conv.horizontal(input_row, j)  # [B, 2h]
    return feature if vertical is None else feature + vertical[:, j]

  def _output_at(self, stream, add_output):
    """The two 1x1 output layers at one position: `[B, 2h]` -> params `[B, P]`."""
    return self._output(stream, lambda layer, features: layer.pointwise(features), add_output)

  def _cache_pixel(self, input_row, images, i, j):
    """The input layer's row cache with pixel (i, j) as just drawn.

    The input layer caches the pixel itself, which has just changed. The other caches
    are final after a pixel's last step: by the masks (A, then B), no feature at (i, j)
    depends on the last channel of (i, j).
    """
    _, pw = self.input_conv.cache_padding
    return sampling.set_column(input_row, j + pw, self._scaled_images(images[:, i, j]))


@keras.saving.register_keras_serializable(package="tfgen")
class RowLSTM(_PixelRNN):
  """The Row LSTM of "Pixel Recurrent Neural Networks", section 3.1 (see `_PixelRNN`).

  Each LSTM layer is a `RowLSTMLayer`: H sequential steps, one per row.

  Receptive field (a triangle above the pixel, as [1] says). Write s = k//2 and
  s0 = k0//2 for the kernel k and the input kernel k0, and L for the number of layers.
  One layer's state at (i, j) reads its input at (i - d, j + e) for d >= 0 and
  -d*s - s <= e <= d*s (the state-to-state steps widen by s per row, the
  input-to-state convolution adds s columns on the left); with the residual stream,
  L layers reach -d*s - L*s <= e <= d*s. The mask-A input layer adds rows 1..s0 above
  (columns -s0..s0) and columns -s0..-1 of the row itself. So the parameters of pixel
  (i, j) depend on exactly these pixels (besides the earlier channels of (i, j)):

    row i:             columns j - L*s - s0 .. j - 1
    row i - d, d >= 1: columns j - d*s - L*s - s0 .. j + R(d),
                       R(d) = max(d*s - 1, (d - 1)*s + s0)   (grayscale)

  (for colour images R(d) is at least d*s: the input layer also passes each earlier
  pixel's own first channels). Pixels further left on recent rows, and further right
  on the rows just above, are never seen. tests/test_pixelrnn.py checks this set
  against the gradients.

  Hyper-parameters (`HPARAMS`):
    hidden_dim: h, the LSTM state; the residual stream has 2h features.
    num_layers: number of Row LSTM layers.
    kernel_size: k of the 1 x k input-to-state and state-to-state convolutions (3 in [1]).
    input_kernel_size: size of the mask-A input convolution (7 in [1]).
    output_dim: width of the hidden 1x1 output layer.

  References:
    [1] Aaron van den Oord, Nal Kalchbrenner, Koray Kavukcuoglu. Pixel Recurrent
        Neural Networks. ICML 2016. https://arxiv.org/abs/1601.06759
  """

  MODEL_NAME = "row_lstm"
  # [1] reports no Row LSTM on MNIST; these are the Diagonal BiLSTM's MNIST sizes.
  HPARAMS = {
      "hidden_dim": 16,
      "num_layers": 7,
      "kernel_size": 3,
      "input_kernel_size": 7,
      "output_dim": 64,
  }
  ODD_HPARAMS = ("kernel_size", "input_kernel_size")
  _GATE_MAPS = 1

  @property
  def sequential_steps(self):
    return self.image_shape[0]

  def _make_lstm(self, units, colors, index):
    return RowLSTMLayer(units, self.hparams["kernel_size"], colors, name=f"lstm_{index}")

  def _lstm(self, lstm, stream, gates, pixels):
    del pixels  # The Row LSTM reads the image through the input layer only.
    (add_gates,) = gates
    return lstm.recurrence(add_gates(lstm.input_gates(stream)))[0]

  # ---- cached sampling --------------------------------------------------------------

  supports_fast_sampling = True

  def incremental_fill(self, images, noise, condition, row_start, row_stop):
    """Samples rows `row_start .. row_stop-1`, carrying the LSTM states row to row.

    When row i starts, the states and cells of every layer on row i - 1 are final
    (nothing on row i - 1 depends on row i), so the state-to-state part of each layer's
    gates on row i is computed once per row. A subpixel step (i, j, c) then evaluates
    every layer at position (i, j) only: the mask-A input layer from cached rows (as
    PixelCNN's cached sampler), each LSTM's input-to-state 1 x k convolution from a
    cache of its input on row i, one LSTM update, and the 1x1 layers. The cost per
    subpixel does not depend on the image size, and the result equals the naive
    sampler's (same arithmetic up to float summation order).

    The states start from one full pass over `images`: by causality the states on
    rows before `row_start` are final, so any row can start a chunk.

    Args and returns: see `base.AutoregressiveModel.incremental_fill`.
    """
    _, width, channels = self.image_shape
    h = self.hparams["hidden_dim"]
    # The cached path computes in float32, whatever the mixed-precision policy.
    f32 = lambda t: tf.cast(t, tf.float32)

    # One full pass: the states and cells of every layer on every row.
    x = self._scaled_images(images)  # [B, H, W, C]
    conditioning = self._conditioning(condition)
    stream = conditioning.input(self.input_conv(x))  # [B, H, W, 2h]
    above_states, above_cells = [], []  # per layer: row row_start - 1, each [B, W, h]
    for n, (lstm, up) in enumerate(zip(self.lstms, self.up_convs)):
      (add_gates,) = conditioning.gates[n]
      states, cells = lstm.recurrence(add_gates(lstm.input_gates(stream)))  # [B, H, W, h]
      for out, t in ((above_states, states), (above_cells, cells)):
        # Row -1 is the zero initial state.
        out.append(tf.gather(tf.pad(f32(t), [[0, 0], [1, 0], [0, 0], [0, 0]]), row_start,
                             axis=1))
      stream = stream + conditioning.up[n](up(states))  # [B, H, W, 2h]

    _, pw = self.input_conv.cache_padding
    s = self.hparams["kernel_size"] // 2
    batch = tf.shape(images)[0]
    empty = lambda features, pad: tf.zeros(tf.stack([batch, width + 2 * pad, features]))
    carry = _RowLSTMWindow(self._input_window(x, row_start), tuple(above_states),
                           tuple(above_cells))
    empty_row = _RowLSTMRow(empty(channels, pw), tuple(empty(2 * h, s) for _ in self.lstms),
                            tuple(empty(h, 0) for _ in self.lstms),
                            tuple(empty(h, 0) for _ in self.lstms))

    def begin_row(i, carry):
      del i
      vertical = self.input_conv.vertical(carry.pixels)  # [B, W, 2h] or None
      recurrent = [lstm.state_gates(state) for lstm, state in zip(self.lstms, carry.states)]
      return vertical, recurrent  # recurrent: per layer [B, W, G]

    def position(i, j, c, images, carry, per_row, row):
      del i, c, images
      vertical, recurrent = per_row
      stream = f32(conditioning.input(self._input_feature(vertical, row.pixels, j)))  # [B, 2h]
      inputs, states, cells = list(row.inputs), list(row.states), list(row.cells)
      for n, (lstm, up) in enumerate(zip(self.lstms, self.up_convs)):
        inputs[n] = sampling.set_column(inputs[n], j + s, stream)
        gates = tf.concat([conv.horizontal(inputs[n], j) for conv in lstm.input_to_state],
                          axis=-1)  # [B, G]
        gates = f32(conditioning.gates[n][0](gates)) + recurrent[n][:, j]
        state, cell = lstm_update(gates, carry.cells[n][:, j])  # each [B, h]
        states[n] = sampling.set_column(states[n], j, state)
        cells[n] = sampling.set_column(cells[n], j, cell)
        stream = stream + f32(conditioning.up[n](up.pointwise(state)))  # [B, 2h]
      params = self._output_at(stream, lambda features: f32(conditioning.output(features)))
      return params, _RowLSTMRow(row.pixels, tuple(inputs), tuple(states), tuple(cells))

    def after_draw(i, j, images, row):
      return row._replace(pixels=self._cache_pixel(row.pixels, images, i, j))

    def end_row(i, images, carry, per_row, row):
      del i, images, per_row
      return _RowLSTMWindow(sampling.roll_window(carry.pixels, row.pixels), row.states,
                            row.cells)

    return sampling.cached_rows(self.head, images, noise, row_start, row_stop, carry,
                                empty_row, begin_row, position, after_draw, end_row)


@keras.saving.register_keras_serializable(package="tfgen")
class DiagonalBiLSTM(_PixelRNN):
  """The Diagonal BiLSTM of "Pixel Recurrent Neural Networks", section 3.2.

  Each LSTM layer is a `DiagonalBiLSTMLayer` (see `_PixelRNN` for the rest): H + W - 1
  sequential steps, one per diagonal (2N - 1 for an N x N image), and a receptive field
  that covers every earlier subpixel from the first layer on.

  One departure from [1], on by default: the right-to-left direction of the first layer
  also reads the pixels themselves (an unmasked 1x1 convolution; causal because that
  direction's states are shifted down a row). Without it the architecture of [1] never
  sees the last subpixel of the row above, (i - 1, W - 1, C - 1), from the pixels
  (i, j < W - 1 - k0//2), whatever its depth (see `DiagonalBiLSTMLayer`); [1]'s claim
  of a complete receptive field holds over positions of the feature maps, not over that
  subpixel. It costs C * 4h weights.

  Hyper-parameters (`HPARAMS`); the defaults are [1]'s binarized-MNIST model (7 layers,
  h = 16: 79.20 nats there):
    hidden_dim: h, the LSTM state of each direction; the residual stream has 2h features.
    num_layers: number of Diagonal BiLSTM layers.
    input_kernel_size: size of the mask-A input convolution (7 in [1]).
    output_dim: width of the hidden 1x1 output layer.
    right_to_left_reads_pixels: the departure above; False is [1]'s architecture exactly.

  References:
    [1] Aaron van den Oord, Nal Kalchbrenner, Koray Kavukcuoglu. Pixel Recurrent
        Neural Networks. ICML 2016. https://arxiv.org/abs/1601.06759
  """

  MODEL_NAME = "diagonal_bilstm"
  HPARAMS = {
      "hidden_dim": 16,
      "num_layers": 7,
      "input_kernel_size": 7,
      "output_dim": 64,
      "right_to_left_reads_pixels": True,
  }
  ODD_HPARAMS = ("input_kernel_size",)
  _GATE_MAPS = 2

  @property
  def sequential_steps(self):
    return self.image_shape[0] + self.image_shape[1] - 1

  def _make_lstm(self, units, colors, index):
    reads_pixels = index == 0 and self.hparams["right_to_left_reads_pixels"]
    return DiagonalBiLSTMLayer(units, colors, pixel_channels=colors if reads_pixels else 0,
                               name=f"lstm_{index}")

  def _lstm(self, lstm, stream, gates, pixels):
    add_left, add_right = gates
    left, right = lstm.input_gates(stream, pixels)  # each [B, H, W, G]
    return lstm.recurrence(add_left(left), add_right(right))

  # ---- cached sampling --------------------------------------------------------------

  supports_fast_sampling = True

  def incremental_fill(self, images, noise, condition, row_start, row_stop):
    """Samples rows `row_start .. row_stop-1`, carrying both directions' states.

    Unskewed, the two recurrences of a layer are (l: left to right, r: right to left,
    G_l, G_r the input-to-state gates, K_l, K_r the 2x1 state-to-state kernels):

      l_h(i, j), l_c(i, j) = lstm_update(G_l(i, j) + K_l [l_h(i-1, j), l_h(i, j-1)], l_c(i, j-1))
      r_h(i, j), r_c(i, j) = lstm_update(G_r(i, j) + K_r [r_h(i-1, j), r_h(i, j+1)], r_c(i, j+1))
      out(i, j) = l_h(i, j) + r_h(i - 1, j)

    So the left-to-right direction is carried pixel by pixel: a subpixel step (i, j, c)
    evaluates every layer at (i, j) only, from the states of the pixel to the left and
    of the row above. The right-to-left direction is needed one row lower only: when
    row i is finished, its input (each layer's stream on row i, and the pixels) is
    final, and one W-step recurrence from right to left per layer gives r_h on row i
    for the next row. Cost: O(H W L) LSTM updates, against O((H W C)^2 L) for the
    naive sampler; same arithmetic, so the same images.

    A chunk starting after row 0 takes the states of row `row_start - 1` from one full
    pass over `images`; from row 0 they are zero and the pass (whose scan TFLite
    cannot lower) is left out of the graph.

    Args and returns: see `base.AutoregressiveModel.incremental_fill`.
    """
    _, width, channels = self.image_shape
    h = self.hparams["hidden_dim"]
    num_layers = len(self.lstms)
    f32 = lambda t: tf.cast(t, tf.float32)  # The cached path computes in float32.
    conditioning = self._conditioning(condition)
    batch = tf.shape(images)[0]
    x = self._scaled_images(images)  # [B, H, W, C]

    # Layer n's l_h and r_h on row row_start - 1, each [B, W, h].
    if tf.get_static_value(row_start) == 0:
      zeros = tf.zeros(tf.stack([batch, width, h]))
      above_left, above_right = [zeros] * num_layers, [zeros] * num_layers
    else:
      stream = conditioning.input(self.input_conv(x))  # [B, H, W, 2h]
      above_left, above_right = [], []
      for n, (lstm, up) in enumerate(zip(self.lstms, self.up_convs)):
        add_left, add_right = conditioning.gates[n]
        left, right = lstm.input_gates(stream, x)  # each [B, H, W, G]
        left, right = lstm.directional_states(add_left(left), add_right(right))
        for out, t in ((above_left, left), (above_right, right)):
          # Row -1 is the zero initial state.
          out.append(tf.gather(tf.pad(f32(t), [[0, 0], [1, 0], [0, 0], [0, 0]]), row_start,
                               axis=1))
        stream = stream + conditioning.up[n](up(lstm.combine(left, right)))  # [B, H, W, 2h]

    _, pw = self.input_conv.cache_padding
    empty = lambda columns, features: tf.zeros(tf.stack([batch, columns, features]))
    carry = _DiagonalWindow(self._input_window(x, row_start), tuple(above_left),
                            tuple(above_right))
    # l_h and l_c of the row hold pixel j in column j + 1 (column 0: the zero state left
    # of the image).
    empty_row = _DiagonalRow(empty(width + 2 * pw, channels),
                             tuple(empty(width, 2 * h) for _ in self.lstms),
                             tuple(empty(width + 1, h) for _ in self.lstms),
                             tuple(empty(width + 1, h) for _ in self.lstms))

    def right_to_left(lstm, n, stream_row, pixel_row, above_states):
      """r_h on a finished row: `[B, W, 2h]`, `[B, W, C]`, `[B, W, h]` -> `[B, W, h]`."""
      flat = tf.reshape(stream_row, [-1, 2 * h])  # [B * W, 2h]
      gates = tf.reshape(tf.concat([conv.pointwise(flat) for conv in lstm.right_to_left], -1),
                         [batch, width, 4 * h])  # [B, W, G]
      if lstm.pixels_to_right_to_left is not None:
        gates += f32(lstm.pixels_to_right_to_left(pixel_row[:, None]))[:, 0]
      gates = f32(conditioning.gates[n][1](gates))  # [B, W, G]

      def body(j, beside, cell, states):
        state, cell = lstm_update(
            gates[:, j] + lstm.recurrent_gates(1, above_states[:, j], beside), cell)
        return j - 1, state, cell, sampling.set_column(states, j, state)

      zero = tf.zeros(tf.stack([batch, h]))
      _, _, _, states = tf.while_loop(lambda j, *_: j >= 0, body,
                                      (tf.constant(width - 1), zero, zero, empty(width, h)))
      return states

    def begin_row(i, carry):
      del i
      return self.input_conv.vertical(carry.pixels)  # [B, W, 2h] or None

    def position(i, j, c, images, carry, vertical, row):
      del i, c, images
      stream = f32(conditioning.input(self._input_feature(vertical, row.pixels, j)))  # [B, 2h]
      streams, states, cells = list(row.streams), list(row.states), list(row.cells)
      for n, (lstm, up) in enumerate(zip(self.lstms, self.up_convs)):
        streams[n] = sampling.set_column(streams[n], j, stream)
        gates = tf.concat([conv.pointwise(stream) for conv in lstm.left_to_right], -1)
        gates = f32(conditioning.gates[n][0](gates)) + lstm.recurrent_gates(
            0, carry.left[n][:, j], states[n][:, j])  # [B, G]
        state, cell = lstm_update(gates, cells[n][:, j])  # each [B, h]
        states[n] = sampling.set_column(states[n], j + 1, state)
        cells[n] = sampling.set_column(cells[n], j + 1, cell)
        out = state + carry.right[n][:, j]  # `combine` at one position
        stream = stream + f32(conditioning.up[n](up.pointwise(out)))  # [B, 2h]
      params = self._output_at(stream, lambda features: f32(conditioning.output(features)))
      return params, _DiagonalRow(row.pixels, tuple(streams), tuple(states), tuple(cells))

    def after_draw(i, j, images, row):
      return row._replace(pixels=self._cache_pixel(row.pixels, images, i, j))

    def end_row(i, images, carry, vertical, row):
      del i, images, vertical
      pixel_row = row.pixels[:, pw:pw + width]  # [B, W, C]
      lefts, rights = [], []
      for n, lstm in enumerate(self.lstms):
        left = row.states[n][:, 1:]  # [B, W, h]
        right = right_to_left(lstm, n, row.streams[n], pixel_row, carry.right[n])  # [B, W, h]
        for new, old in ((left, carry.left[n]), (right, carry.right[n])):
          new.set_shape(old.shape)  # The loop's shape invariant: batch as on entry.
        lefts.append(left)
        rights.append(right)
      return _DiagonalWindow(sampling.roll_window(carry.pixels, row.pixels), tuple(lefts),
                             tuple(rights))

    return sampling.cached_rows(self.head, images, noise, row_start, row_stop, carry,
                                empty_row, begin_row, position, after_draw, end_row)


class _Conditioning(typing.NamedTuple):
  """What a PixelRNN's conditioning adds to each map it conditions: `features ->
  features` functions (identity for p(x)), named by map."""
  input: typing.Callable  # The mask-A input layer's output, [..., 2h].
  gates: tuple  # Per layer: one per gate map (Row LSTM: 1; Diagonal: left, right), [..., G].
  up: tuple  # Per layer: its 1x1 convolution of the residual stream, [..., 2h].
  output: typing.Callable  # The hidden output layer, [..., output_dim].


class _RowLSTMWindow(typing.NamedTuple):
  """What a cached Row LSTM row starts from."""
  pixels: tf.Tensor  # The input layer's scaled pixels on the ph rows above, [B, ph, W+2pw, C].
  states: tuple  # Per layer: its states on the row above, [B, W, h].
  cells: tuple  # Per layer: its cells on the row above, [B, W, h].


class _RowLSTMRow(typing.NamedTuple):
  """The caches of the row being drawn."""
  pixels: tf.Tensor  # The input layer's scaled pixels on the row, [B, W + 2pw, C].
  inputs: tuple  # Per layer: its input (the residual stream) on the row, [B, W + 2s, 2h].
  states: tuple  # Per layer: its states on the row, [B, W, h].
  cells: tuple  # Per layer: its cells on the row, [B, W, h].


class _DiagonalWindow(typing.NamedTuple):
  """What a cached Diagonal BiLSTM row starts from."""
  pixels: tf.Tensor  # The input layer's scaled pixels on the ph rows above, [B, ph, W+2pw, C].
  left: tuple  # Per layer: the left-to-right states l_h on the row above, [B, W, h].
  right: tuple  # Per layer: the right-to-left states r_h on the row above, [B, W, h].


class _DiagonalRow(typing.NamedTuple):
  """The caches of the row being drawn."""
  pixels: tf.Tensor  # The input layer's scaled pixels on the row, [B, W + 2pw, C].
  streams: tuple  # Per layer: its input (the residual stream) on the row, [B, W, 2h].
  states: tuple  # Per layer: l_h on the row, pixel j in column j + 1, [B, W + 1, h].
  cells: tuple  # Per layer: l_c on the row, likewise, [B, W + 1, h].
