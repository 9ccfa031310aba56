"""Reconstruction costs and the pre-training loss against small cases worked out by hand."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wae_jax import losses


@pytest.mark.parametrize("cost,expected", [("l2sq", 0.05 * 4), ("l2", 0.2 * 2), ("l1", 0.02 * 4)])
def test_reconstruction_costs_use_the_public_code_weights(cost, expected):
  x = jnp.zeros((3, 2, 2, 1))
  x_hat = jnp.ones((3, 2, 2, 1))  # Every image: 4 pixels off by 1.
  scale = {"l2sq": 0.05, "l2": 0.2, "l1": 0.02}[cost]
  np.testing.assert_allclose(losses.reconstruction(x, x_hat, cost, scale), expected, rtol=1e-6)


def test_reconstruction_averages_over_the_batch_and_sums_over_pixels():
  x = jnp.zeros((2, 1, 2, 1))
  x_hat = jnp.array([[[[1.0], [1.0]]], [[[0.0], [0.0]]]])  # Costs 2 and 0.
  np.testing.assert_allclose(losses.reconstruction(x, x_hat, "l2sq", 1.0), 1.0)


def test_l2_cost_has_finite_gradient_at_a_perfect_reconstruction():
  x = jnp.ones((2, 3, 3, 1))
  g = jax.grad(lambda y: losses.reconstruction(x, y, "l2", 0.2))(x)
  assert np.all(np.isfinite(g))


def test_moment_matching():
  z = jnp.array([[1.0, 1.0], [-1.0, -1.0]])  # Mean 0, covariance [[2, 2], [2, 2]].
  np.testing.assert_allclose(losses.moment_matching(z, 1.0), 1 + 4 + 4 + 1, rtol=1e-6)


def test_gradients_are_finite():
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(16, 4)), jnp.float32)
  assert np.all(np.isfinite(jax.grad(lambda z: losses.moment_matching(z, 2.0))(z)))
