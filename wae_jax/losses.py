"""Reconstruction costs and the encoder pre-training loss, as pure functions of arrays.

The latent penalties are regularisers, in `regularisers/`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


# A Bernoulli decoder's means are kept this far inside (0, 1): a saturated sigmoid (exactly 1
# in float32 beyond a logit of ~17) would otherwise make the log-likelihood infinite.
BERNOULLI_EPS = 1e-6


def reconstruction_per_image(x: jax.Array, x_hat: jax.Array, cost: str,
                             log_var: jax.Array | None = None) -> jax.Array:
  """c(x, x_hat) of each image, summed over its pixels.

  l2 adds 1e-8 under the root so its gradient is finite at a perfect reconstruction;
  bernoulli is the negative log-likelihood of x in [0, 1] under a Bernoulli decoder with
  means x_hat (the VAE's likelihood for such data); gaussian that of a Gaussian decoder
  with means x_hat and the learned variance exp(log_var) (`models.decoder_log_var`).
  """
  if cost == "bernoulli":
    p = jnp.clip(x_hat, BERNOULLI_EPS, 1.0 - BERNOULLI_EPS).reshape(x.shape[0], -1)
    x = x.reshape(x.shape[0], -1)
    return -jnp.sum(x * jnp.log(p) + (1.0 - x) * jnp.log1p(-p), axis=-1)
  d = (x - x_hat).reshape(x.shape[0], -1)
  if cost == "gaussian":
    return 0.5 * jnp.sum(d * d * jnp.exp(-log_var) + log_var + jnp.log(2 * jnp.pi), axis=-1)
  if cost == "l2sq":
    return jnp.sum(d * d, axis=-1)
  if cost == "l2":
    return jnp.sqrt(jnp.sum(d * d, axis=-1) + 1e-8)
  if cost == "l1":
    return jnp.sum(jnp.abs(d), axis=-1)
  raise ValueError(f"unknown reconstruction cost {cost!r}")


def reconstruction(x: jax.Array, x_hat: jax.Array, cost: str, scale: float,
                   log_var: jax.Array | None = None) -> jax.Array:
  """`scale * c(x, x_hat)` averaged over the batch.

  The public WAE code uses l2sq with scale 0.05: up to a constant, the negative
  log-likelihood of a Gaussian decoder of variance 1 / (2 * 0.05) = 10.
  """
  return scale * jnp.mean(reconstruction_per_image(x, x_hat, cost, log_var))


def moment_matching(z: jax.Array, prior_var: float) -> jax.Array:
  """||mean(z)||^2 + ||cov(z) - prior_var I||_F^2: the encoder pre-training loss."""
  mean = jnp.mean(z, axis=0)
  centred = z - mean
  cov = centred.T @ centred / (z.shape[0] - 1)
  return jnp.sum(mean ** 2) + jnp.sum((cov - prior_var * jnp.eye(z.shape[-1])) ** 2)
