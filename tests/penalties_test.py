"""CWAE's and RF-WAE's penalties: the Cramer-Wold distance against a float64 transcription of
the paper's formula, and the random-feature MMD's mean over feature draws against the exact
U-statistic (a check that fails when the features are frozen)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from wae_jax import config as config_lib
from wae_jax import hyper
from wae_jax import mmd
from wae_jax import regularisers
from wae_jax import study
from wae_jax.regularisers import cramer_wold
from wae_jax.regularisers import random_features


def cw_reference(x):
  """Knop et al. (JMLR 2020), Theorem 3.1 with Eq. 9's phi_D, pair by pair in float64."""
  x = np.asarray(x, np.float64)
  n, d = x.shape
  gamma = (4.0 / (3.0 * n)) ** 0.4
  phi = lambda s: (1.0 + 4.0 * s / (2.0 * d - 3.0)) ** -0.5
  within = sum(phi(np.sum((x[i] - x[j]) ** 2) / (4 * gamma)) for i in range(n) for j in range(n))
  cross = sum(phi(np.sum(x[i] ** 2) / (2 + 4 * gamma)) for i in range(n))
  return (within / np.sqrt(gamma) + n * n / np.sqrt(1 + gamma)
          - 2 * n * cross / np.sqrt(gamma + 0.5)) / (2 * n * n * np.sqrt(np.pi))


@pytest.mark.parametrize("d,shift", [(8, 0.0), (8, 1.5), (64, 0.3)])
def test_cramer_wold_distance_is_the_papers_formula(d, shift):
  x = np.random.default_rng(d).normal(size=(40, d)) + shift
  got = cramer_wold.cw_distance(jnp.asarray(x, jnp.float32), cramer_wold.silverman_gamma(40))
  np.testing.assert_allclose(float(got), cw_reference(x), rtol=2e-5)


def test_cramer_wold_distance_grows_as_codes_leave_the_prior():
  base = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
  gamma = cramer_wold.silverman_gamma(100)
  values = [float(cramer_wold.cw_distance(jnp.asarray(base * s + m), gamma))
            for s, m in ((1.0, 0.0), (2.0, 0.0), (1.0, 1.0))]
  assert values[0] < values[1] and values[0] < values[2]


def _regulariser(algo, **section):
  c = config_lib.load(f"mnist_{algo}:debug")
  for key, value in section.items():
    c[regularisers.get(c.algo).section][key] = value
  config_lib.validate(c, 1)
  return regularisers.build(c, None, None)


def test_cwae_penalty_is_log_distance_to_n_0_prior_var():
  z = np.random.default_rng(1).normal(size=(64, 8)).astype(np.float32)
  penalty = lambda r, prior_var: float(r.penalty(
      regularisers.Codes(jnp.asarray(z * np.sqrt(prior_var)), None, None), None, None,
      {"prior_var": prior_var}, None))
  expected = np.log(cw_reference(z))
  assert penalty(_regulariser("cwae"), 1.0) == pytest.approx(expected, rel=1e-5)
  assert penalty(_regulariser("cwae"), 4.0) == pytest.approx(expected, rel=1e-5)
  assert penalty(_regulariser("cwae", log=False), 1.0) == pytest.approx(np.exp(expected), rel=1e-5)


def _estimates(x, y, keys, prior_var=None, scales=mmd.PAPER_SCALES, num_features=64):
  one = lambda key: random_features.rf_mmd(
      x, y, random_features.frequencies(key, x.shape[1], kernel="imq", scales=scales,
                                        num_features=num_features),
      num_scales=len(scales), prior_var=prior_var)
  return np.asarray(jax.lax.map(one, keys), np.float64)


def within_standard_errors(estimates, exact, k=4.0):
  """The check: the estimates' mean is within k standard errors of `exact`."""
  se = estimates.std(ddof=1) / np.sqrt(len(estimates))
  return abs(estimates.mean() - exact) <= k * se, (estimates.mean() - exact) / se


def test_random_feature_mmd_is_unbiased_for_the_exact_u_statistic():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(60, 8)) * 0.3 + 0.2, jnp.float32)
  y = jnp.asarray(rng.normal(size=(60, 8)) * 0.25, jnp.float32)
  exact = float(mmd.mmd_dense(x, y, c=1.0, scales=mmd.PAPER_SCALES))
  keys = jax.random.split(jax.random.key(0), 2000)
  fresh = _estimates(x, y, keys)
  ok, z = within_standard_errors(fresh, exact)
  assert ok, f"fresh features: {z:.1f} standard errors off"
  # Frozen features: every estimate is the first draw's, and the same check catches it
  # (judged by the fresh draws' standard error, as a training run would be).
  frozen = _estimates(x, y, jnp.stack([keys[0]] * len(keys)))
  se = fresh.std(ddof=1) / np.sqrt(len(fresh))
  assert frozen.std() == 0 and abs(frozen.mean() - exact) > 4 * se


def test_random_feature_mmd_with_the_prior_in_closed_form():
  """The prior's side exact: mean over draws against U_xx - 2 mean_i E_y k(x_i, y) + E k(y, y'),
  the expectations by quadrature over each IMQ width's exponential scale mixture."""
  rng = np.random.default_rng(1)
  d, v, n = 4, 0.125, 30  # Unit space: prior variance 1 / (2 d).
  x = rng.normal(size=(n, d)) * 0.5
  scales = (0.2, 1.0, 5.0)
  mix = lambda f: integrate.quad(lambda u: np.exp(-u) * f(u), 0, np.inf, epsabs=1e-12)[0]
  k_xy = lambda xi, s: mix(lambda u: (1 + 2 * u * v / s) ** (-d / 2)
                           * np.exp(-u / s * np.sum(xi ** 2) / (1 + 2 * u * v / s)))
  k_yy = lambda s: mix(lambda u: (1 + 4 * u * v / s) ** (-d / 2))
  x32 = jnp.asarray(x, jnp.float32)
  sq = np.sum((x[:, None] - x[None]) ** 2, -1)
  gram = sum(s / (s + sq) for s in scales)
  u_xx = (gram.sum() - n * len(scales)) / (n * (n - 1))
  exact = (u_xx - 2 * np.mean([sum(k_xy(xi, s) for s in scales) for xi in x])
           + sum(k_yy(s) for s in scales))
  estimates = _estimates(x32, None, jax.random.split(jax.random.key(1), 2000), prior_var=v,
                         scales=scales)
  ok, z = within_standard_errors(estimates, exact)
  assert ok, f"{z:.1f} standard errors off"


def test_rf_config_is_checked():
  c = config_lib.load("mnist_wae_rf:debug")
  c.rf.prior = "nope"
  with pytest.raises(config_lib.ConfigError, match="^config.rf.prior: unknown value 'nope'"):
    config_lib.validate(c, 1)
  c = config_lib.load("mnist_cwae:debug")
  c.cw.gamma = -1.0
  with pytest.raises(config_lib.ConfigError, match="^config.cw.gamma: must be a finite number"):
    config_lib.validate(c, 1)


def test_cwae_and_rf_wae_are_algos_of_a_sweep():
  """Chosen by `config.algo` on any base config, their sections' fields set by the sweep."""
  trials = hyper.chainit([
      hyper.product([hyper.fixed("config", "mnist_wae_mmd:debug"),
                     hyper.fixed("config.algo", "cwae"),
                     hyper.sweep("config.cw.gamma", [0.0, 0.5])]),
      hyper.product([hyper.fixed("config", "mnist_wae_mmd:debug"),
                     hyper.fixed("config.algo", "wae_rf"),
                     hyper.sweep("config.rf.num_features", [64, 0])])])
  by_id = {study.trial_id(t): t for t in trials}
  configs = {tid: study.trial_config(t) for tid, t in by_id.items()}
  assert sorted((c.algo, c.cw.gamma, c.rf.num_features) for c in configs.values()) == [
      ("cwae", 0.0, 256), ("cwae", 0.5, 256), ("wae_rf", 0.0, 0), ("wae_rf", 0.0, 64)]
  with pytest.raises(hyper.SweepError, match="config.rf.num_features: must be an integer >= 1"):
    study.check_configs(by_id)


def test_random_feature_sums_by_blocks_equal_the_whole(monkeypatch):
  """Blocks (padded, masked, recomputed for the gradient) change neither value nor gradient."""
  x = jnp.asarray(np.random.default_rng(2).normal(size=(70, 8)), jnp.float32)
  y = jnp.asarray(np.random.default_rng(3).normal(size=(70, 8)), jnp.float32)
  w = random_features.frequencies(jax.random.key(0), 8, kernel="imq", scales=(0.5, 2.0),
                                  num_features=32)
  both = lambda prior_var: jax.value_and_grad(lambda x: random_features.rf_mmd(
      x, y, w, num_scales=2, prior_var=prior_var))(x)
  whole = [both(None), both(0.06)]
  monkeypatch.setattr(random_features, "BLOCK", 16)
  for (v, g), (v0, g0) in zip([both(None), both(0.06)], whole):
    np.testing.assert_allclose(v, v0, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g, g0, rtol=1e-4, atol=1e-7)
