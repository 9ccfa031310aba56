"""RF-WAE on MNIST: WAE-MMD's penalty (config.mmd's kernel and widths) estimated with random
features redrawn every step, linear in the batch; `mnist_wae_rf:debug` for a laptop."""
from wae_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.mnist()
  c.algo = "wae_rf"
  c.lam = 10.0  # WAE-MMD's: the same MMD, estimated otherwise.
  return config_lib.with_arg(c, arg)
