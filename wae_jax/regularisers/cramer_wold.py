"""CWAE: the Cramer-Wold distance between the batch of codes and the normal prior.

Knop, Spurek, Tabor, Podolak, Mazur, Jastrzebski (JMLR 2020), Theorem 3.1 in closed form:
the codes X (n, D) and N(0, I) are smoothed by a Gaussian of variance gamma along every
direction, and the squared L2 distance of their projections, averaged over directions, is

  d_cw^2 = 1 / (2 n^2 sqrt(pi)) * [ sum_ij phi_D(|x_i - x_j|^2 / (4 gamma)) / sqrt(gamma)
                                    + n^2 / sqrt(1 + gamma)
                                    - 2 n sum_i phi_D(|x_i|^2 / (2 + 4 gamma)) / sqrt(gamma + 1/2) ]

with phi_D(s) = 1F1(1/2; D/2; -s), which the paper replaces by (1 + 4 s / (2D - 3))^(-1/2)
(its Eq. 9, accurate for D >= 20; gmum/cwae-pytorch uses it at D = 8 too, as here), and gamma
by Silverman's rule for the normal, (4 / (3 n))^(2/5). The CWAE loss is
reconstruction + lambda * log d_cw^2. Codes are divided by the prior's standard deviation,
so the distance is to N(0, prior_var I).
"""

import jax.numpy as jnp
import ml_collections

from wae_jax import config as config_lib
from wae_jax import regularisers


def silverman_gamma(n: int) -> float:
  """The paper's smoothing: Silverman's rule of thumb for N(0, 1), squared."""
  return (4.0 / (3.0 * n)) ** 0.4


def phi(s, dim: int):
  """The paper's approximation of 1F1(1/2; dim/2; -s)."""
  return (1.0 + 4.0 * s / (2.0 * dim - 3.0)) ** -0.5


def cw_distance(x, gamma: float):
  """d_cw^2(X, N(0, I)) of the codes x (n, D) at smoothing gamma (V-statistic: diagonal in)."""
  n, dim = x.shape
  sq = jnp.sum(x * x, axis=1)
  pair = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
  within = jnp.sum(phi(pair / (4.0 * gamma), dim)) / (n * n * jnp.sqrt(gamma))
  cross = 2.0 * jnp.mean(phi(sq / (2.0 + 4.0 * gamma), dim)) / jnp.sqrt(gamma + 0.5)
  return (within + 1.0 / jnp.sqrt(1.0 + gamma) - cross) / (2.0 * jnp.sqrt(jnp.pi))


@regularisers.register("cwae")
class CramerWold(regularisers.Regulariser):
  metric = "cw"
  title = "CWAE"
  section = "cw"

  @classmethod
  def defaults(cls):
    s = ml_collections.ConfigDict()
    s.gamma = 0.0  # The smoothing; 0: Silverman's rule at the batch size, as in the paper.
    s.log = True  # The paper's penalty is log d_cw^2; False: d_cw^2 itself.
    return s

  @classmethod
  def validate(cls, c):
    config_lib.number(c, "cw.gamma", 0)
    config_lib.check(isinstance(c.cw.log, bool), "cw.log",
                     f"must be true or false, got {c.cw.log!r}")

  def penalty(self, codes, prior, rng, hparams, state):
    del prior, rng, state
    z = codes.z * jnp.sqrt(1.0 / hparams["prior_var"])
    d = cw_distance(z, self.c.cw.gamma or silverman_gamma(len(z)))
    return jnp.log(d) if self.c.cw.log else d
