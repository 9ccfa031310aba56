"""The VAE baseline on CelebA 64x64: Gaussian encoder, KL to the prior, the WAE decoder."""
from wae_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.celeba()
  c.algo = "vae"
  c.lam = 1.0  # Weight of the KL term.
  c.model.encoder = "gaussian"
  return config_lib.with_arg(c, arg)
