"""Image grids: levels -> uint8 pictures for PNG files and TensorBoard.

Glossary of tensor shapes:
  N: number of images.  H, W: image height and width.  C: colour channels.
"""

import io
import math

import numpy as np


def levels_to_uint8(images, num_levels):
  """Maps levels `[0, K)` linearly onto 0..255 (K=2 gives black and white)."""
  images = np.asarray(images, np.float64)
  return np.round(images * (255.0 / (num_levels - 1))).astype(np.uint8)


# The grey of the border between images, and of the subpixels a grid leaves blank.
GREY = 128


def grid(images, num_levels, columns=None, padding=1, blank=None):
  """Tiles `[N, H, W, C]` levels into one uint8 picture `[rows*(H+p)+p, cols*(W+p)+p, C]`.

  Args:
    images: integer levels `[N, H, W, C]`.
    num_levels: `K`.
    columns: images per row (default: ceil(sqrt(N))).
    padding: pixels of grey border between images.
    blank: optional bool `[N, H, W, C]`: subpixels drawn grey whatever their level
      (the missing part of an occluded image).

  Returns:
    uint8 numpy array, `[GH, GW, C]`.
  """
  images = levels_to_uint8(images, num_levels)  # [N, H, W, C]
  if blank is not None:
    images = np.where(blank, np.uint8(GREY), images)
  n, h, w, c = images.shape
  columns = columns or max(1, math.ceil(math.sqrt(n)))
  rows = max(1, math.ceil(n / columns))
  out = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), GREY,
                np.uint8)
  for k in range(n):
    r, q = divmod(k, columns)
    top, left = padding + r * (h + padding), padding + q * (w + padding)
    out[top:top + h, left:left + w] = images[k]
  return out


def png_bytes(picture, scale=1):
  """Encodes a uint8 `[GH, GW, C]` picture as PNG, enlarged `scale` times."""
  from PIL import Image
  mode = "L" if picture.shape[-1] == 1 else "RGB"
  image = Image.fromarray(picture[..., 0] if mode == "L" else picture, mode)
  if scale > 1:
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
  buf = io.BytesIO()
  image.save(buf, format="PNG")
  return buf.getvalue()
