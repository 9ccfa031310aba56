"""Sharpness in the paper's convention: the Laplacian's variance on the model's pixel range."""
import types

import numpy as np

from wae_jax import data
from wae_jax import evaluators
from wae_jax.evaluators import sharpness


def test_the_laplacian_variance_of_a_known_image():
  image = np.zeros((1, 5, 5, 1), np.float32)
  image[0, 2, 2, 0] = 1.0  # The 3x3 interior Laplacian: -4 at the centre, 1 at its 4 sides.
  want = np.var([0, 1, 0, 1, -4, 1, 0, 1, 0])
  np.testing.assert_allclose(sharpness.sharpness(image), [want], rtol=1e-6)


def test_symmetric_data_is_measured_on_minus_one_to_one():
  rng = np.random.default_rng(0)
  samples, real = rng.uniform(size=(2, 8, 8, 3)), rng.uniform(size=(3, 8, 8, 3))
  unit = lambda symmetric: evaluators.get("sharpness").fn(types.SimpleNamespace(
      inference=types.SimpleNamespace(pixels=data.Pixels(symmetric)), samples=samples,
      real=real, with_data=True))
  on_unit, on_model = unit(False), unit(True)
  assert on_unit["sharpness_mean"] == sharpness.sharpness(samples).mean()
  for key in on_unit:  # [-1, 1] is 2x [0, 1]: the variance of a linear filter is 4x.
    np.testing.assert_allclose(on_model[key], 4 * on_unit[key], rtol=1e-6)


def _laplacian_variance(grey):
  """The 3x3 Laplacian [[0, 1, 0], [1, -4, 1], [0, 1, 0]] over every VALID position, written
  out pixel by pixel in float64, then each image's variance."""
  stencil = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float64)
  n, h, w = grey.shape
  out = np.zeros((n, h - 2, w - 2))
  for i in range(h - 2):
    for j in range(w - 2):
      out[:, i, j] = np.sum(grey[:, i:i + 3, j:j + 3] * stencil, axis=(1, 2))
  return out.reshape(n, -1).var(axis=1)


def test_the_laplacian_stencil_on_asymmetric_images():
  """Random, non-square images: a neighbour in the wrong place (a diagonal, a shifted centre,
  rows for columns) changes the variance, which a single centred dot does not show."""
  images = np.random.default_rng(0).uniform(size=(4, 7, 10, 1))
  np.testing.assert_allclose(sharpness.sharpness(images), _laplacian_variance(images[..., 0]),
                             rtol=1e-10)
  # One bright pixel off-centre in a ramp: its neighbours are not all alike.
  ramp = np.tile(np.arange(6.0) ** 2, (5, 1))[None, :, :, None] / 25
  ramp[0, 1, 2, 0] = 1.0
  np.testing.assert_allclose(sharpness.sharpness(ramp), _laplacian_variance(ramp[..., 0]),
                             rtol=1e-10)


def test_colour_images_are_greyed_with_the_itu_r_601_luma_weights():
  """grey = 0.2989 R + 0.5870 G + 0.1140 B (tf.image.rgb_to_grayscale), each channel's own
  pattern, so a mean of the channels or their order reversed would show."""
  rgb = np.random.default_rng(1).uniform(size=(3, 8, 9, 3))
  grey = rgb @ np.array([0.2989, 0.5870, 0.1140])
  np.testing.assert_allclose(sharpness.sharpness(rgb), _laplacian_variance(grey), rtol=1e-6)
  # A picture in red alone: 0.2989^2 of its grey sharpness.
  red = np.zeros_like(rgb)
  red[..., 0] = rgb[..., 0]
  np.testing.assert_allclose(sharpness.sharpness(red),
                             0.2989 ** 2 * _laplacian_variance(rgb[..., 0]), rtol=1e-6)
