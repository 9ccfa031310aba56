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
      real=real))
  on_unit, on_model = unit(False), unit(True)
  assert on_unit["sharpness_mean"] == sharpness.sharpness(samples).mean()
  for key in on_unit:  # [-1, 1] is 2x [0, 1]: the variance of a linear filter is 4x.
    np.testing.assert_allclose(on_model[key], 4 * on_unit[key], rtol=1e-6)
