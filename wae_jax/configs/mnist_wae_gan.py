"""WAE-GAN on MNIST with the paper's hyperparameters; `mnist_wae_gan:debug` for a laptop."""
from wae_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.mnist()
  c.algo = "wae_gan"
  c.lam = 1.0
  c.gan.lr = 5e-4
  return config_lib.with_arg(c, arg)
