"""WAE-GAN on CelebA 64x64: lambda = 1, slower auto-encoder than adversary, the p-trick."""
from wae_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.celeba()
  c.algo = "wae_gan"
  c.lam = 1.0
  c.optim.lr = 3e-4
  c.gan.lr = 1e-3
  c.gan.p_trick = True
  return config_lib.with_arg(c, arg)
