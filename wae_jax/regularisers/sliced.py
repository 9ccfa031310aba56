"""WAE-SW: the sliced Wasserstein distance SW_p^p over fresh random directions each step."""

import ml_collections

from wae_jax import config as config_lib
from wae_jax import regularisers
from wae_jax import sliced


@regularisers.register("wae_sw")
class SlicedWasserstein(regularisers.Regulariser):
  metric = "sw"
  section = "sw"

  @classmethod
  def defaults(cls):
    s = ml_collections.ConfigDict()
    s.num_projections = 64
    s.p = 2.0
    return s

  @classmethod
  def validate(cls, c):
    config_lib.integer(c, "sw.num_projections", 1)
    config_lib.number(c, "sw.p", 1)

  def penalty(self, codes, prior, rng, hparams, state):
    del hparams, state
    return sliced.sliced_wasserstein_sharded(codes.z, prior, rng, mesh=self.mesh,
                                             num_projections=self.c.sw.num_projections,
                                             p=self.c.sw.p)
