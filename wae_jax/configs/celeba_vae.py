"""The VAE baseline on CelebA 64x64: Gaussian encoder, KL to the prior, the WAE decoder read
as a Gaussian likelihood whose variance is learned.

The WAE cost (0.05 squared L2) is a Gaussian decoder of variance 10, on pixels in [-1, 1]:
the KL then wins and the VAE collapses. A learned variance settles where the reconstruction
error does, so no guess is needed; the bigWAE study searches a fixed one instead.
"""
from wae_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.celeba()
  c.algo = "vae"
  c.lam = 1.0  # Weight of the KL term: the ELBO.
  c.model.encoder = "gaussian"
  c.recon.cost = "gaussian"
  c.recon.scale = config_lib.RECON_SCALES["gaussian"]
  return config_lib.with_arg(c, arg)
