"""CWAE on MNIST (Knop et al., JMLR 2020): the Cramer-Wold penalty, log d_cw^2, in place of
WAE-MMD's; `mnist_cwae:debug` for a laptop.

The paper weighs log d_cw^2 by lambda = 1 against a reconstruction cost of the squared error
summed over pixels; this project's cost is 0.05 times that (the WAE paper's), so lambda is
0.05 for the same balance.
"""
from wae_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.mnist()
  c.algo = "cwae"
  c.lam = 0.05
  return config_lib.with_arg(c, arg)
