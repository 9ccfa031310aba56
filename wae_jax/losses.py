"""Reconstruction costs and the encoder pre-training loss, as pure functions of arrays.

The latent penalties are regularisers, in `regularisers/`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


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


def moment_matching(z: jax.Array, prior_var: float) -> jax.Array:
  """||mean(z)||^2 + ||cov(z) - prior_var I||_F^2: the encoder pre-training loss."""
  mean = jnp.mean(z, axis=0)
  centred = z - mean
  cov = centred.T @ centred / (z.shape[0] - 1)
  return jnp.sum(mean ** 2) + jnp.sum((cov - prior_var * jnp.eye(z.shape[-1])) ** 2)
