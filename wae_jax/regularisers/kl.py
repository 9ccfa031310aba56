"""The VAE baseline's regulariser: KL(Q(Z|X) || P_Z), averaged over the batch."""

import jax.numpy as jnp

from wae_jax import regularisers


def kl_to_prior(mean, log_var, prior_var):
  """KL(N(mean, diag(exp(log_var))) || N(0, prior_var I)), summed over dims, batch-averaged."""
  kl = 0.5 * ((jnp.exp(log_var) + mean ** 2) / prior_var - 1.0 - log_var + jnp.log(prior_var))
  return jnp.mean(jnp.sum(kl, axis=-1))


@regularisers.register("vae")
class KL(regularisers.Regulariser):
  metric = "kl"
  title = "VAE"
  encoder = "gaussian"

  def penalty(self, codes, prior, rng, hparams, state):
    del prior, rng, state
    return kl_to_prior(codes.mean, codes.log_var, hparams["prior_var"])
