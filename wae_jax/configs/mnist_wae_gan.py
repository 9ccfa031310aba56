"""WAE-GAN on MNIST; `mnist_wae_gan:debug` for a laptop.

The paper gives no MNIST lambda for WAE-GAN (its 1 is CelebA's); the public code's MNIST
config uses lambda = 10 for every regulariser, and so does this one. The adversary's rate
(5e-4) and width (512) are the public code's too.
"""
from wae_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.mnist()
  c.algo = "wae_gan"
  c.lam = 10.0
  c.gan.lr = 5e-4
  return config_lib.with_arg(c, arg)
