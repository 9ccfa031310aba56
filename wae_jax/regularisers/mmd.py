"""WAE-MMD: the maximum mean discrepancy between codes and prior draws."""

import jax

from wae_jax import mmd
from wae_jax import regularisers


@regularisers.register("wae_mmd")
class MMD(regularisers.Regulariser):
  metric = "mmd"

  def penalty(self, codes, prior, rng, hparams, state):
    del rng, state
    # k(a, b) with width C equals k(a / sqrt(C), b / sqrt(C)) with width 1, which keeps the
    # kernel static while C = 2 d_z sigma_z^2 varies per trial.
    unit = jax.lax.rsqrt(2.0 * self.c.z_dim * hparams["prior_var"])
    return mmd.mmd_sharded(codes.z * unit, prior * unit, mesh=self.mesh,
                           kernel=self.c.mmd.kernel, c=1.0, scales=tuple(self.c.mmd.scales),
                           block_size=self.c.mmd.block_size)
