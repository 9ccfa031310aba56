"""Picture grids: enlarged to be judged, tiled in rows of `cols`, values kept."""
import numpy as np

from wae_jax import images


def test_grid_enlarges_small_images_and_keeps_their_pixels():
  x = np.random.default_rng(0).uniform(size=(10, 28, 28, 1)).astype(np.float32)
  g = images.grid(x, cols=8)
  side = 3 * 28  # The smallest whole multiple of 28 that reaches 64 pixels.
  assert g.dtype == np.uint8 and g.shape == (2 * (side + 1) + 1, 8 * (side + 1) + 1, 1)
  assert (g[0] == 128).all() and (g[:, 0] == 128).all()  # Grey borders.
  # Image 9 sits in row 1, column 1; each pixel is a 3x3 block.
  tile = g[1 + side + 1:1 + 2 * side + 1, 1 + side + 1:1 + 2 * side + 1]
  np.testing.assert_array_equal(tile[::3, ::3], np.round(x[9] * 255).astype(np.uint8))
  np.testing.assert_array_equal(tile[2::3, 1::3], tile[::3, ::3])
  assert (g[-side - 1:-1, 2 * (side + 1) + 1:] == 128).all()  # Empty cells stay grey.


def test_grid_leaves_images_of_64_pixels_as_they_are():
  x = np.zeros((4, 64, 64, 3), np.float32)
  assert images.grid(x, cols=4).shape == (66, 4 * 65 + 1, 3)
