"""The prior N(0, prior_var I): the samples every trial had before samplers, bit for bit."""

import jax
import numpy as np

from wae_jax import samplers


@samplers.register(samplers.PRIOR)
class Prior(samplers.Sampler):
  needs_codes = False

  def sample(self, n, key):
    return np.sqrt(self.prior_var) * np.asarray(jax.random.normal(key, (n, self.z_dim)))
