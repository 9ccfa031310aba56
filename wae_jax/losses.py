"""Reconstruction costs and the non-MMD latent penalties, as pure functions of arrays.

Each returns a scalar averaged over the batch. The MMD penalty lives in `mmd.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def reconstruction_per_image(x: jax.Array, x_hat: jax.Array, cost: str) -> jax.Array:
  """c(x, x_hat) of each image, summed over its pixels; l2 adds 1e-8 under the root so its
  gradient is finite at a perfect reconstruction."""
  d = (x - x_hat).reshape(x.shape[0], -1)
  if cost == "l2sq":
    return jnp.sum(d * d, axis=-1)
  if cost == "l2":
    return jnp.sqrt(jnp.sum(d * d, axis=-1) + 1e-8)
  if cost == "l1":
    return jnp.sum(jnp.abs(d), axis=-1)
  raise ValueError(f"unknown reconstruction cost {cost!r}")


def reconstruction(x: jax.Array, x_hat: jax.Array, cost: str, scale: float) -> jax.Array:
  """`scale * c(x, x_hat)` averaged over the batch.

  The public WAE code uses l2sq with scale 0.05 (a Gaussian decoder of variance 10).
  """
  return scale * jnp.mean(reconstruction_per_image(x, x_hat, cost))


def kl_to_prior(mean: jax.Array, log_var: jax.Array, prior_var: float) -> jax.Array:
  """KL(N(mean, diag(exp(log_var))) || N(0, prior_var I)), summed over dims, batch-averaged."""
  kl = 0.5 * ((jnp.exp(log_var) + mean ** 2) / prior_var - 1.0 - log_var + jnp.log(prior_var))
  return jnp.mean(jnp.sum(kl, axis=-1))


def prior_log_density(z: jax.Array, prior_var: float) -> jax.Array:
  """log N(z; 0, prior_var I) per row: the WAE-GAN "p-trick" adds it to the adversary logit."""
  d = z.shape[-1]
  return -0.5 * jnp.sum(z * z, axis=-1) / prior_var - 0.5 * d * jnp.log(2 * np.pi * prior_var)


def adversary_loss(logits_prior: jax.Array, logits_codes: jax.Array) -> jax.Array:
  """BCE(D(z_prior), 1) + BCE(D(z_code), 0): the adversary learns to tell P_Z from Q_Z."""
  # BCE(l, 1) = softplus(-l) and BCE(l, 0) = softplus(l), stable for any logit.
  return jnp.mean(jax.nn.softplus(-logits_prior)) + jnp.mean(jax.nn.softplus(logits_codes))


def encoder_gan_penalty(logits_codes: jax.Array) -> jax.Array:
  """The encoder's non-saturating penalty BCE(D(z_code), 1): codes should look like prior draws."""
  return jnp.mean(jax.nn.softplus(-logits_codes))


def moment_matching(z: jax.Array, prior_var: float) -> jax.Array:
  """||mean(z)||^2 + ||cov(z) - prior_var I||_F^2: the encoder pre-training loss."""
  mean = jnp.mean(z, axis=0)
  centred = z - mean
  cov = centred.T @ centred / (z.shape[0] - 1)
  return jnp.sum(mean ** 2) + jnp.sum((cov - prior_var * jnp.eye(z.shape[-1])) ** 2)
