"""Objective values against small cases worked out by hand."""
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


def test_kl_to_standard_and_wider_priors():
  mean = jnp.array([[1.0, 0.0]])
  log_var = jnp.array([[0.0, np.log(2.0)]])
  # dim 1: 0.5 * (1 + 1 - 1 - 0); dim 2: 0.5 * (2 - 1 - log 2).
  np.testing.assert_allclose(losses.kl_to_prior(mean, log_var, 1.0),
                             0.5 + 0.5 * (1 - np.log(2)), rtol=1e-6)
  # prior_var = 2: dim 1: 0.5 * (2/2 - 1 + log 2); dim 2: 0.5 * (2/2 - 1 - log 2 + log 2) = 0.
  np.testing.assert_allclose(losses.kl_to_prior(mean, log_var, 2.0), 0.5 * np.log(2), rtol=1e-6)
  np.testing.assert_allclose(losses.kl_to_prior(jnp.zeros((4, 3)), jnp.zeros((4, 3)), 1.0), 0.0,
                             atol=1e-7)


def test_adversary_losses_at_chance_and_at_confidence():
  zero = jnp.zeros(5)
  np.testing.assert_allclose(losses.adversary_loss(zero, zero), 2 * np.log(2), rtol=1e-6)
  np.testing.assert_allclose(losses.encoder_gan_penalty(zero), np.log(2), rtol=1e-6)
  # A confident, correct adversary has ~0 loss; the encoder then pays ~|logit|.
  np.testing.assert_allclose(losses.adversary_loss(jnp.full(5, 30.0), jnp.full(5, -30.0)), 0.0,
                             atol=1e-12)
  np.testing.assert_allclose(losses.encoder_gan_penalty(jnp.full(5, -30.0)), 30.0, rtol=1e-6)
  # Stable for huge logits (no overflow to inf or nan).
  assert np.isfinite(losses.adversary_loss(jnp.full(2, -1e4), jnp.full(2, 1e4)))


def test_prior_log_density_matches_the_gaussian_formula():
  z = jnp.array([[0.0, 0.0], [1.0, 2.0]])
  expected = [-np.log(2 * np.pi * 2.0), -np.log(2 * np.pi * 2.0) - 5.0 / 4.0]
  np.testing.assert_allclose(losses.prior_log_density(z, 2.0), expected, rtol=1e-6)


def test_moment_matching():
  z = jnp.array([[1.0, 1.0], [-1.0, -1.0]])  # Mean 0, covariance [[2, 2], [2, 2]].
  np.testing.assert_allclose(losses.moment_matching(z, 1.0), 1 + 4 + 4 + 1, rtol=1e-6)


def test_gradients_are_finite():
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(16, 4)), jnp.float32)
  for fn in (lambda z: losses.kl_to_prior(z, 0.1 * z, 1.0),
             lambda z: losses.adversary_loss(z[:, 0], z[:, 1]),
             lambda z: losses.encoder_gan_penalty(z[:, 0]),
             lambda z: losses.moment_matching(z, 2.0)):
    assert np.all(np.isfinite(jax.grad(fn)(z)))
