"""An ex-post Gaussian mixture over the training codes (Ghosh et al., ICLR 2020, the RAE
paper's sampler), fitted by scikit-learn's EM; the number of components is the one whose
fit gives the held-out codes the highest likelihood."""

import numpy as np
from sklearn import mixture

from wae_jax import samplers



@samplers.register("gmm")
class GMM(samplers.Sampler):
  # Candidate component counts (the RAE paper used 10), scikit-learn's EM settings, and at
  # most how many codes EM sees (a random subset: its cost is linear in them, and 8-d
  # mixtures of 40 components are pinned down well before 60,000 codes).
  settings = {"components": [1, 5, 10, 20, 40], "covariance": "full", "max_iter": 100,
              "max_codes": 10_000}

  def fit(self, codes, rng):
    codes = codes[rng.permutation(len(codes))[:self.settings["max_codes"]]]
    fit, heldout = samplers.split(codes, rng)
    scores = {}
    best = None
    for k in (k for k in self.settings["components"] if k <= len(fit)):
      gm = mixture.GaussianMixture(k, covariance_type=self.settings["covariance"],
                                   max_iter=self.settings["max_iter"],
                                   random_state=int(rng.integers(2**31 - 1))).fit(fit)
      scores[k] = float(gm.score(heldout))  # Mean log-likelihood per held-out code.
      if best is None or scores[k] > scores[best.n_components]:
        best = gm
    self.arrays = {"weights": best.weights_.astype(np.float64),
                   "means": best.means_.astype(np.float64),
                   "chol": np.linalg.cholesky(best.covariances_).astype(np.float64)}
    self.summary = {"components": int(best.n_components),
                    "heldout_loglik": scores[best.n_components],
                    "heldout_loglik_by_components": {str(k): v for k, v in scores.items()}}

  def sample(self, n, key):
    rng = np.random.default_rng(samplers.seed_of(key))
    weights, means, chol = self.arrays["weights"], self.arrays["means"], self.arrays["chol"]
    which = rng.choice(len(weights), size=n, p=weights / weights.sum())
    eps = rng.standard_normal((n, means.shape[1]))
    return (means[which] + np.einsum("nij,nj->ni", chol[which], eps)).astype(np.float32)
