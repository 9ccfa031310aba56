"""WAE-SW: the sliced Wasserstein distance SW_p^p over fresh random directions each step."""

from wae_jax import regularisers
from wae_jax import sliced


@regularisers.register("wae_sw")
class SlicedWasserstein(regularisers.Regulariser):
  metric = "sw"

  def penalty(self, codes, prior, rng, hparams, state):
    del hparams, state
    return sliced.sliced_wasserstein_sharded(codes.z, prior, rng, mesh=self.mesh,
                                             num_projections=self.c.sw.num_projections,
                                             p=self.c.sw.p)
