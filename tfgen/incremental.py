"""Exact incremental evaluation of a causal network by a static schedule.

The cached samplers of PixelCNN, Gated PixelCNN and the PixelRNNs follow their layers'
row structure by hand. A multi-scale network (PixelCNN++: stride-2 down-sampling,
transposed-convolution up-sampling, short-cuts between the scales) has no such simple
structure, so here the schedule is derived from the network's wiring (the idea of
Ramachandran et al. 2017: compute each activation once, as soon as its inputs exist).

Every map of the network is a *node*. A node's value at a position is a function of
its *sources'* values at a fixed set of positions: a convolution's taps, or the same
position for a pointwise op. The positions are static tables, built once from the
layers' kernel sizes, strides and paddings. The *ready step* of a position is the first
generation step at which everything it depends on is known (at step t the pixels < t
are drawn):

  ready(pixel q) = q + 1
  ready(padding) = 0
  ready(node, p) = max over its sources and taps of ready(source, tap)

At step t every position whose ready step is t is computed, nodes in creation order (a
topological order), and then the output at pixel t is read. That needs
ready(output, t) <= t for every t: the network's causality, checked when the plan is
built. Each position is computed once, so sampling costs one evaluation of the network
in all, plus a per-step overhead per node.

Storage: a node of N = h * w positions and F features is a `tf.TensorArray` of N + 1
elements `[B, F]`; element N is the zero padding that taps outside the map read.

Glossary of tensor shapes:
  B: batch.  N: positions of a node (h * w, raster order).  T: taps of one source.
  M: positions computed at one step (varies).  F: features of a node.

References:
  [1] Prajit Ramachandran, Tom Le Paine, Pooya Khorrami, Mohammad Babaeizadeh,
      Shiyu Chang, Yang Zhang, Mark A. Hasegawa-Johnson, Roy H. Campbell, Thomas S.
      Huang. Fast Generation for Convolutional Autoregressive Models. ICLR 2017
      workshop. https://arxiv.org/abs/1704.06001
"""

import dataclasses

import numpy as np
import tensorflow as tf


# ---- tap tables: for each output position, the source positions it reads (-1: padding) --


def conv_taps(in_shape, kernel_size, strides, padding):
  """The taps of a zero-padded valid convolution, in kernel order (row-major).

  Output (i, j) reads input (s_h i + a - top, s_w j + b - left) for a < kh, b < kw.

  Args:
    in_shape: `(h, w)` of the input.
    kernel_size: `(kh, kw)`.
    strides: `(s_h, s_w)`.
    padding: `[[top, bottom], [left, right]]`.

  Returns:
    `(table, out_shape)`: int `[h_out * w_out, kh * kw]`, and `(h_out, w_out)`.
  """
  (h, w), (kh, kw), (sh, sw) = in_shape, kernel_size, strides
  (top, bottom), (left, right) = padding
  out_h, out_w = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
  i, j, a, b = np.meshgrid(np.arange(out_h), np.arange(out_w), np.arange(kh), np.arange(kw),
                           indexing="ij")
  rows, cols = sh * i + a - top, sw * j + b - left
  inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
  table = np.where(inside, rows * w + cols, -1)
  return table.reshape(out_h * out_w, kh * kw), (out_h, out_w)


def transposed_conv_taps(in_shape, out_shape, kernel_size, strides, offset):
  """The taps of a valid transposed convolution cropped to `out_shape` at `offset`.

  Uncropped output (r, c) receives input (i, j) through kernel tap (a, b) when
  r = s_h i + a and c = s_w j + b; output (r, c) of the crop is uncropped
  (r + offset_h, c + offset_w).

  Returns:
    int `[h_out * w_out, kh * kw]`.
  """
  (h, w), (out_h, out_w), (kh, kw), (sh, sw) = in_shape, out_shape, kernel_size, strides
  r, c, a, b = np.meshgrid(np.arange(out_h) + offset[0], np.arange(out_w) + offset[1],
                           np.arange(kh), np.arange(kw), indexing="ij")
  rows, cols = r - a, c - b
  i, j = rows // sh, cols // sw
  inside = ((rows % sh == 0) & (cols % sw == 0) & (rows >= 0) & (cols >= 0) &
            (i < h) & (j < w))
  return np.where(inside, i * w + j, -1).reshape(out_h * out_w, kh * kw)


def shift_taps(shape, rows=0, cols=0):
  """Output (i, j) reads (i - rows, j - cols): `shift_down` / `shift_right`. `[N, 1]`."""
  h, w = shape
  i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  inside = (i - rows >= 0) & (j - cols >= 0)
  return np.where(inside, (i - rows) * w + (j - cols), -1).reshape(h * w, 1)


def same_position(shape):
  """Output (i, j) reads (i, j): a pointwise op. `[N, 1]`."""
  return np.arange(shape[0] * shape[1]).reshape(-1, 1)


# ---- the plan ---------------------------------------------------------------------------


@dataclasses.dataclass
class Node:
  """A map of the network: `shape` `(h, w)`, `features` F; `index` in the plan."""
  index: int
  shape: tuple
  features: int

  @property
  def size(self):
    return self.shape[0] * self.shape[1]


class Plan:
  """A causal network as nodes with static tap tables, and its generation schedule.

  Args:
    image_shape: `(H, W)`; pixel q (raster order) is drawn at step q.
    pixel_features: F of the pixel node, the network's input per pixel.
  """

  def __init__(self, image_shape, pixel_features):
    self.image_shape = tuple(image_shape)
    self.num_steps = self.image_shape[0] * self.image_shape[1]
    self.nodes, self._sources, self._fns, self._ready = [], [], [], []
    self.pixels = self._add(self.image_shape, pixel_features, [], None,
                            np.arange(1, self.num_steps + 1))

  def _add(self, shape, features, sources, fn, ready):
    node = Node(len(self.nodes), tuple(shape), int(features))
    self.nodes.append(node)
    self._sources.append(sources)
    self._fns.append(fn)
    self._ready.append(ready)
    return node

  def node(self, shape, features, sources, fn):
    """Adds a node computed from `sources`.

    Args:
      shape: `(h, w)`.
      features: F.
      sources: list of `(node, taps)`, taps int `[h * w, T]` positions of that node
        (-1: padding, reads zeros).
      fn: `fn(gathered) -> [M, B, F]` (or the same as rows `[M * B, F]`, position
        by position), `gathered` a list of float32 `[M, T, B, F_src]` (one per source)
        at the M positions being computed; T and F_src are static.

    Returns:
      The new `Node`.
    """
    size = shape[0] * shape[1]
    ready = np.zeros(size, np.int64)
    for source, taps in sources:
      if taps.shape[0] != size or taps.max() >= source.size:
        raise ValueError(f"Tap table {taps.shape} does not fit a node of shape {shape} "
                         f"reading a source of {source.size} positions.")
      src_ready = np.append(self._ready[source.index], 0)  # [N_src + 1]: padding is ready
      ready = np.maximum(ready, src_ready[taps].max(axis=1))
    return self._add(shape, features, sources, fn, ready)

  def check_causal(self, output):
    """Raises ValueError unless the output at every pixel q is ready at step q."""
    late = np.nonzero(self._ready[output.index] > np.arange(output.size))[0]
    if output.shape != self.image_shape or late.size:
      raise ValueError(f"Not causal: the output at pixels {late[:8].tolist()} depends on "
                       "pixels drawn after them.")

  def run(self, output, pixels, draw, images, first_step, stop_step):
    """Runs the schedule for steps 0 .. stop_step - 1, drawing from `first_step` on.

    Steps before `first_step` recompute what the pixels already in `pixels` imply
    (the rows of an earlier chunk); nothing is drawn there.

    Args:
      output: the node whose value at pixel t drives the draw at step t.
      pixels: float32 `[H * W, B, F_pixel]`, the pixel node's initial values (those
        before `first_step` must be final).
      draw: `draw(t, params [B, F_out], images) -> (images, pixel [B, F_pixel])`.
      images: passed through `draw` (the sampled levels).
      first_step, stop_step: int32 scalars.

    Returns:
      `images` after the last step.
    """
    self.check_causal(output)
    batch = tf.shape(pixels)[1]
    schedule = []  # per node: (positions by ready step, offsets, flattened taps per source)
    for node in self.nodes:
      ready = self._ready[node.index]
      order = np.argsort(ready, kind="stable")
      order = order[ready[order] < self.num_steps]  # Never needed: the last pixel's effects.
      offsets = np.searchsorted(ready[order], np.arange(self.num_steps + 1))
      taps = [tf.constant(np.where(t < 0, src.size, t)[order].reshape(-1), tf.int32)
              for src, t in self._sources[node.index]]
      schedule.append((tf.constant(order, tf.int32), tf.constant(offsets, tf.int32), taps))

    def empty(node):
      zeros = tf.zeros(tf.stack([node.size + 1, batch, node.features]))
      return tf.TensorArray(tf.float32, size=node.size + 1,
                            element_shape=tf.TensorShape([None, node.features])).unstack(zeros)

    padding = tf.zeros(tf.stack([1, batch, self.pixels.features]))
    arrays = [tf.TensorArray(tf.float32, size=self.pixels.size + 1,
                             element_shape=tf.TensorShape([None, self.pixels.features])
                             ).unstack(tf.concat([pixels, padding], 0))]
    arrays += [empty(node) for node in self.nodes[1:]]

    def compute(node, arrays, lo, hi):
      order, _, taps = schedule[node.index]
      positions = order[lo:hi]  # [M]
      gathered = []
      for (source, table), flat in zip(self._sources[node.index], taps):
        width = table.shape[1]
        values = arrays[source.index].gather(flat[lo * width:hi * width])  # [M * T, B, F]
        gathered.append(tf.reshape(values, tf.stack([hi - lo, width, batch, source.features])))
      values = self._fns[node.index](gathered)  # [M, B, F] or [M * B, F]
      return arrays[node.index].scatter(
          positions, tf.reshape(values, tf.stack([hi - lo, batch, node.features])))

    # [steps + 1, nodes - 1]: where each node's positions of each step start. Read as a
    # row per step, not as two slices per node: the loop body stays a few operations
    # per node.
    starts = tf.stack([schedule[node.index][1] for node in self.nodes[1:]], axis=1)

    def body(t, images, arrays):
      arrays = list(arrays)
      now, after = starts[t], starts[t + 1]  # [nodes - 1]
      for node, lo, hi, busy in zip(self.nodes[1:], tf.unstack(now), tf.unstack(after),
                                    tf.unstack(after > now)):
        arrays[node.index] = tf.cond(
            busy, lambda n=node, lo=lo, hi=hi: compute(n, arrays, lo, hi),
            lambda n=node: arrays[n.index])

      def drawn():
        new_images, pixel = draw(t, arrays[output.index].read(t), images)
        return new_images, arrays[0].write(t, pixel)

      images, arrays[0] = tf.cond(t >= first_step, drawn, lambda: (images, arrays[0]))
      return t + 1, images, arrays

    _, images, _ = tf.while_loop(lambda t, *_: t < stop_step, body,
                                 (tf.constant(0), images, arrays))
    return images
