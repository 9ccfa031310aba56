"""WAE-MMD on MNIST with the paper's hyperparameters; `mnist_wae_mmd:debug` for a laptop."""
from wae_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.mnist()
  c.algo = "wae_mmd"
  c.lam = 10.0
  return config_lib.with_arg(c, arg)
