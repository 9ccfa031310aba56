"""WAE-SW on MNIST: the sliced-Wasserstein penalty the paper left as future work.

Not in the paper, so lambda is not tuned: it mirrors WAE-MMD's, and the sweeps vary it.
"""
from wae_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.mnist()
  c.algo = "wae_sw"
  c.lam = 10.0
  c.sw.num_projections = 64
  c.sw.p = 2.0
  return config_lib.with_arg(c, arg)
