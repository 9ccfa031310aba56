"""Reconstruction costs and the pre-training loss against small cases worked out by hand."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wae_jax import config as config_lib
from wae_jax import losses


@pytest.mark.parametrize("cost,expected", [("l2sq", 0.05 * 4), ("l2", 0.2 * 2), ("l1", 0.02 * 4)])
def test_reconstruction_costs_use_the_public_code_weights(cost, expected):
  x = jnp.zeros((3, 2, 2, 1))
  x_hat = jnp.ones((3, 2, 2, 1))  # Every image: 4 pixels off by 1.
  scale = config_lib.RECON_SCALES[cost]
  np.testing.assert_allclose(losses.reconstruction(x, x_hat, cost, scale), expected, rtol=1e-6)


def test_bernoulli_is_the_negative_log_likelihood():
  x = jnp.array([[1.0, 0.0, 0.5]])
  x_hat = jnp.array([[0.8, 0.2, 0.5]])
  want = -(np.log(0.8) + np.log(0.8) + np.log(0.5))
  np.testing.assert_allclose(losses.reconstruction(x, x_hat, "bernoulli", 1.0), want, rtol=1e-6)
  assert config_lib.RECON_SCALES["bernoulli"] == 1.0  # The VAE's loss is the negative ELBO.


def test_bernoulli_stays_finite_where_the_sigmoid_saturates():
  x = jnp.array([[0.0, 1.0]])
  cost, grad = jax.value_and_grad(
      lambda y: losses.reconstruction(x, y, "bernoulli", 1.0))(jnp.array([[1.0, 0.0]]))
  assert np.isfinite(cost) and cost > 20 and np.all(np.isfinite(grad))


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


def test_gaussian_with_a_learned_variance_is_the_negative_log_likelihood():
  x, x_hat = jnp.array([[1.0, 0.0]]), jnp.zeros((1, 2))
  log_var = jnp.log(2.0)
  want = 0.5 * (1.0 / 2.0 + 2 * np.log(2.0) + 2 * np.log(2 * np.pi))
  np.testing.assert_allclose(losses.reconstruction(x, x_hat, "gaussian", 1.0, log_var), want,
                             rtol=1e-6)
  # Its gradient in the variance vanishes where the variance is the mean squared error.
  grad = jax.grad(lambda v: losses.reconstruction(x, x_hat, "gaussian", 1.0, v))
  np.testing.assert_allclose(grad(jnp.log(0.5)), 0.0, atol=1e-6)
  assert grad(jnp.log(2.0)) > 0 > grad(jnp.log(0.1))
