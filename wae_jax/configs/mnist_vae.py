"""The VAE baseline on MNIST: Gaussian encoder, KL to the prior, the WAE decoder read as a
Bernoulli likelihood.

The paper's VAE is not collapsed, and the public code has none. With the WAE cost (0.05
squared L2, a Gaussian decoder of variance 10 on [0, 1] pixels) the KL wins in every latent
dimension and every sample is the same mean digit; the Bernoulli likelihood of [0, 1] data
is the usual choice for MNIST and keeps the code informative.
"""
from wae_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.mnist()
  c.algo = "vae"
  c.lam = 1.0  # Weight of the KL term: the ELBO.
  c.model.encoder = "gaussian"
  c.recon.cost = "bernoulli"
  c.recon.scale = config_lib.RECON_SCALES["bernoulli"]
  return config_lib.with_arg(c, arg)
