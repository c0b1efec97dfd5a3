"""Sample grids: level mapping, tiling, PNG encoding."""

import io

import numpy as np
from PIL import Image

from tfgen import images


def test_levels_map_onto_full_range():
  np.testing.assert_array_equal(images.levels_to_uint8([0, 1], 2), [0, 255])
  np.testing.assert_array_equal(images.levels_to_uint8([0, 8, 16], 17), [0, 128, 255])


def test_grid_tiles_images_in_rows():
  x = np.arange(6)[:, None, None, None] * np.ones((6, 2, 3, 1), np.int32)  # image k is all k
  picture = images.grid(x, num_levels=6, columns=3, padding=1)
  assert picture.shape == (2 * 3 + 1, 3 * 4 + 1, 1)
  # Image 4 sits in row 1, column 1.
  np.testing.assert_array_equal(picture[4:6, 5:8, 0], 4 * 51)
  assert picture[0, 0, 0] == 128  # padding


def test_png_round_trip_and_scale():
  picture = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
  decoded = np.asarray(Image.open(io.BytesIO(images.png_bytes(picture))))
  np.testing.assert_array_equal(decoded, picture)
  big = Image.open(io.BytesIO(images.png_bytes(picture[..., :1], scale=3)))
  assert big.size == (21, 15) and big.mode == "L"


if __name__ == "__main__":
  import sys
  import pytest
  sys.exit(pytest.main([__file__, "-q"]))
