"""WAE-MMD on CelebA 64x64 with the paper's hyperparameters (lambda = 100)."""
from wae_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.celeba()
  c.algo = "wae_mmd"
  c.lam = 100.0
  c.optim.lr = 1e-3
  return config_lib.with_arg(c, arg)
