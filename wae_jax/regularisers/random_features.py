"""RF-WAE: config.mmd's MMD estimated with random Fourier features, in O(m D d).

Each IMQ width s (unit space, c = 1) is an exponential scale mixture of Gaussians,
    s / (s + t) = E_{u ~ Exp(1)} exp(-u t / s),
and a Gaussian exp(-a |x - y|^2) is E_{w ~ N(0, 2a I)} cos(w . (x - y)) (Bochner), so the
frequencies w = sqrt(2u / s) g, g ~ N(0, I), u ~ Exp(1) give k(x, y) =
E cos(w . x) cos(w . y) + sin(w . x) sin(w . y) exactly (an RBF width is u = 1). With D
frequencies per width, drawn afresh every step, the feature map phi has |phi(x)|^2 = k(0)
exactly, so the within-sample sums without their diagonals, |sum_i phi(x_i)|^2 - n k(0),
and the cross sum <sum phi(x), sum phi(y)> are unbiased for the exact U-statistic's
(`mmd.mmd`) on the same codes and draws: the estimate's mean over draws is that statistic.

The prior's side has a closed form: for y ~ N(0, v I), E cos(w . y) = exp(-v |w|^2 / 2) and
E sin(w . y) = 0, so the prior's mean embedding and E k(y, y') are exact per frequency and
the prior draws are not needed (`rf.prior = "closed_form"`, the default; "samples" uses the
batch's draws as the exact estimator does).
"""

import jax
import jax.numpy as jnp
import ml_collections

from wae_jax import config as config_lib
from wae_jax import regularisers

PRIOR_SIDES = ("closed_form", "samples")


def frequencies(rng, dim: int, *, kernel: str, scales, num_features: int):
  """(dim, len(scales) * num_features) frequencies of the widths `scales` (unit space)."""
  g_rng, u_rng = jax.random.split(rng)
  g = jax.random.normal(g_rng, (len(scales), dim, num_features))
  u = (jax.random.exponential(u_rng, (len(scales), 1, num_features)) if kernel == "imq"
       else jnp.ones((len(scales), 1, num_features)))
  w = g * jnp.sqrt(2.0 * u / jnp.asarray(scales, jnp.float32)[:, None, None])
  return jnp.moveaxis(w, 0, 1).reshape(dim, -1)


BLOCK = 4096  # Rows per block of the feature sums: an (BLOCK, features) tile at a time.


def _block_sum(x, w, valid):
  proj = x @ w
  return jnp.sum(jnp.cos(proj) * valid, 0), jnp.sum(jnp.sin(proj) * valid, 0)


def _embedding_sum(x, w):
  """sum_i phi(x_i), cos and sin halves, unscaled; past BLOCK rows block by block, each
  block's features recomputed for the gradient, so memory is O(BLOCK * features)."""
  if len(x) <= BLOCK:
    return _block_sum(x, w, 1.0)
  pad = -len(x) % BLOCK
  blocks = jnp.pad(x, ((0, pad), (0, 0))).reshape(-1, BLOCK, x.shape[1])
  valid = (jnp.arange(len(x) + pad) < len(x)).reshape(-1, BLOCK, 1).astype(x.dtype)
  cos, sin = jax.lax.map(jax.checkpoint(lambda b: _block_sum(b[0], w, b[1])), (blocks, valid))
  return jnp.sum(cos, 0), jnp.sum(sin, 0)


def rf_mmd(x, y, w, *, num_scales: int, prior_var=None):
  """The random-feature MMD of codes x (n, d) against prior draws y (m, d), given frequencies
  w; with `prior_var` (the prior's variance in these units) y is not used and the prior's
  side is exact."""
  n, per_width = float(len(x)), w.shape[1] / num_scales  # n(n - 1) overflows int32 past 46k.
  k0 = float(num_scales)
  xc, xs = _embedding_sum(x, w)
  within_x = (jnp.sum(xc * xc + xs * xs) / per_width - n * k0) / (n * (n - 1))
  if prior_var is not None:
    mean_cos = jnp.exp(-0.5 * prior_var * jnp.sum(w * w, 0))
    within_y = jnp.sum(mean_cos * mean_cos) / per_width
    cross = jnp.sum(xc * mean_cos) / (per_width * n)
  else:
    m = float(len(y))
    yc, ys = _embedding_sum(y, w)
    within_y = (jnp.sum(yc * yc + ys * ys) / per_width - m * k0) / (m * (m - 1))
    cross = jnp.sum(xc * yc + xs * ys) / (per_width * n * m)
  return within_x + within_y - 2.0 * cross


@regularisers.register("wae_rf")
class RandomFeatureMMD(regularisers.Regulariser):
  metric = "rf_mmd"
  title = "RF-WAE"
  section = "rf"

  @classmethod
  def defaults(cls):
    s = ml_collections.ConfigDict()
    s.num_features = 256  # Frequencies per width of config.mmd.scales, redrawn every step.
    s.prior = "closed_form"
    return s

  @classmethod
  def validate(cls, c):
    config_lib.integer(c, "rf.num_features", 1)
    config_lib.one_of(c, "rf.prior", PRIOR_SIDES)

  def penalty(self, codes, prior, rng, hparams, state):
    del state
    # As WAE-MMD does: codes in units of sqrt(C), C = 2 z_dim prior_var, so the widths are
    # config.mmd.scales and the prior's variance is 1 / (2 z_dim).
    unit = jax.lax.rsqrt(2.0 * self.c.z_dim * hparams["prior_var"])
    scales = tuple(self.c.mmd.scales)
    w = frequencies(rng, self.c.z_dim, kernel=self.c.mmd.kernel, scales=scales,
                    num_features=self.c.rf.num_features)
    closed = self.c.rf.prior == "closed_form"
    return rf_mmd(codes.z * unit, None if closed else prior * unit, w, num_scales=len(scales),
                  prior_var=1.0 / (2 * self.c.z_dim) if closed else None)
