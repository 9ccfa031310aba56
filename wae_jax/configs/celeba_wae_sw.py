"""WAE-SW on CelebA 64x64: the sliced-Wasserstein penalty, linear-time in the batch.

Not in the paper, so lambda is not tuned: it mirrors WAE-MMD's, and the sweeps vary it.
"""
from wae_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.celeba()
  c.algo = "wae_sw"
  c.lam = 100.0
  c.sw.num_projections = 128  # More directions for the 64-d latent space.
  c.sw.p = 2.0
  return config_lib.with_arg(c, arg)
