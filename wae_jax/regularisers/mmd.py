"""WAE-MMD: the maximum mean discrepancy between codes and prior draws.

Its section, `config.mmd`, sets the estimator; the held-out MMD of every algorithm
(`evaluators/common.py`) uses the same one, so the section is in every config.
"""

import math

import jax
import ml_collections

from wae_jax import config as config_lib
from wae_jax import mmd
from wae_jax import regularisers


@regularisers.register("wae_mmd")
class MMD(regularisers.Regulariser):
  metric = "mmd"
  section = "mmd"

  @classmethod
  def defaults(cls):
    s = ml_collections.ConfigDict()
    s.kernel = "imq"
    s.scales = mmd.PAPER_SCALES  # Multiples of C = 2 z_dim prior_var.
    s.block_size = 512  # A 1 MiB fp32 tile: fits a CPU core's L2 (benchmarks/mmd.py).
    return s

  @classmethod
  def validate(cls, c):
    config_lib.one_of(c, "mmd.kernel", mmd.KERNELS)
    config_lib.check(len(c.mmd.scales) > 0 and all(
        isinstance(s, (int, float)) and math.isfinite(s) and s > 0 for s in c.mmd.scales),
                     "mmd.scales", f"must be a non-empty tuple of finite positive numbers, "
                     f"got {c.mmd.scales!r}")
    config_lib.integer(c, "mmd.block_size", 1)

  def penalty(self, codes, prior, rng, hparams, state):
    del rng, state
    # k(a, b) with width C equals k(a / sqrt(C), b / sqrt(C)) with width 1, which keeps the
    # kernel static while C = 2 d_z sigma_z^2 varies per trial.
    unit = jax.lax.rsqrt(2.0 * self.c.z_dim * hparams["prior_var"])
    return mmd.mmd_sharded(codes.z * unit, prior * unit, mesh=self.mesh,
                           kernel=self.c.mmd.kernel, c=1.0, scales=tuple(self.c.mmd.scales),
                           block_size=self.c.mmd.block_size)
