"""Latent samplers: the mixture recovers a known one, the flow and the two-stage VAE learn a
density, a fitted sampler is kept beside its checkpoint and reused, and metrics of its samples
are named per sampler."""
import json
import types

import jax
import numpy as np
import pytest

from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import evaluators
from wae_jax import samplers
from wae_jax.evaluators import common

MEANS = np.array([[-6.0, 0.0], [6.0, 0.0], [0.0, 6.0], [0.0, -6.0], [6.0, 6.0]])
WEIGHTS = np.array([0.3, 0.25, 0.2, 0.15, 0.1])


def mixture_codes(n, seed=0):
  rng = np.random.default_rng(seed)
  which = rng.choice(len(WEIGHTS), n, p=WEIGHTS)
  return (MEANS[which] + 0.5 * rng.normal(size=(n, 2))).astype(np.float32), which


@pytest.mark.slow
def test_gmm_recovers_a_known_mixture_and_is_kept_and_reused(tmp_path):
  codes, _ = mixture_codes(4000)
  calls = []
  codes_fn = lambda: calls.append(1) or codes
  fit = lambda **kw: samplers.fitted("gmm", z_dim=2, prior_var=1.0, workdir=tmp_path, step=7,
                                     codes=codes_fn, **kw)
  gmm = fit()
  assert gmm.summary["components"] == 5  # Chosen on held-out codes among 1, 5, 10, 20, 40.
  order = [int(np.argmin(np.sum((gmm.arrays["means"] - m) ** 2, 1))) for m in MEANS]
  assert sorted(order) == list(range(5))
  np.testing.assert_allclose(gmm.arrays["means"][order], MEANS, atol=0.1)
  np.testing.assert_allclose(gmm.arrays["weights"][order], WEIGHTS, atol=0.03)
  cov = gmm.arrays["chol"] @ np.swapaxes(gmm.arrays["chol"], 1, 2)
  np.testing.assert_allclose(cov, np.broadcast_to(0.25 * np.eye(2), cov.shape), atol=0.05)
  # Its samples are the mixture's: each lands near a mean, in the mixture's proportions.
  z = gmm.sample(20_000, jax.random.key(0))
  nearest = np.argmin(np.sum((z[:, None] - MEANS[None]) ** 2, -1), 1)
  np.testing.assert_allclose(np.bincount(nearest, minlength=5) / len(z), WEIGHTS, atol=0.015)
  # Kept beside the checkpoint, with its settings and the codes' step, and reused.
  record = json.loads((samplers.path(tmp_path, 7, "gmm") / "sampler.json").read_text())
  assert (record["step"], record["codes"], record["settings"]) == (7, 4000, gmm.settings)
  again = fit()
  assert len(calls) == 1
  np.testing.assert_array_equal(again.sample(100, jax.random.key(1)),
                                gmm.sample(100, jax.random.key(1)))
  fit(refit=True)
  assert len(calls) == 2


@pytest.mark.slow
def test_flow_learns_the_mixture_density_and_round_trips():
  codes, _ = mixture_codes(4000)
  flow = samplers.fitted("flow", z_dim=2, prior_var=1.0, codes=lambda: codes)
  # A single Gaussian's held-out log-likelihood per code here is about -5.5; the mixture's
  # own is 2 * (-0.5 log(2 pi 0.25) - 0.5) - H(weights) ~ -2.3 - 1.5 = -3.8.
  assert flow.summary["heldout_loglik"] > -4.3
  z = flow.sample(5000, jax.random.key(0))
  nearest = np.argmin(np.sum((z[:, None] - MEANS[None]) ** 2, -1), 1)
  np.testing.assert_allclose(np.bincount(nearest, minlength=5) / len(z), WEIGHTS, atol=0.05)
  again = samplers.get("flow")(2, 1.0, flow.arrays, flow.summary)
  key = jax.random.key(3)
  np.testing.assert_allclose(again.sample(50, key), flow.sample(50, key),
                             rtol=1e-6)


def test_the_prior_sampler_draws_n_0_prior_var_without_a_fit():
  prior = samplers.fitted("prior", z_dim=3, prior_var=4.0, codes=None)
  key = jax.random.key(5)
  np.testing.assert_array_equal(prior.sample(10, key),
                                2.0 * np.asarray(jax.random.normal(key, (10, 3))))
  assert prior.protocol == {"sampler": "prior"}


def test_metrics_of_samples_are_named_per_sampler():
  declared = evaluators.metrics()
  for name in ("domain_fid/gmm", "domain_fid/flow", "fid/gmm", "sharpness_mean/flow"):
    assert name in declared and declared[name].table_rank is None
  assert declared["domain_fid/gmm"].data == "domain_fid_data"
  assert "domain_fid_data/gmm" not in declared and "recon/gmm" not in declared
  assert "domain_fid_protocol/gmm" in evaluators.fields()

  # Under a fitted sampler only the evaluators of samples run, their metrics suffixed.
  seen = []
  fake = types.SimpleNamespace(pixels=data.Pixels(symmetric=False), decode="decode",
                               map=lambda fn, variables, z: seen.append(z) or np.zeros(
                                   (len(z), 5, 5, 1)))
  c = config_lib.load("mnist_wae_mmd:debug")
  gmm = samplers.get("gmm")(2, 1.0, {"weights": np.ones(1), "means": np.full((1, 8), 3.0),
                                     "chol": np.eye(8)[None]})
  context = common.Context(fake, None, None, jax.random.key(0), c, num_samples=64, sampler=gmm)
  metrics, fields = common.run(("heldout", "sharpness"), context)
  assert set(metrics) == {"sharpness_mean/gmm", "sharpness_min/gmm"} and not fields
  assert abs(seen[0].mean() - 3.0) < 0.5  # The mixture's codes were decoded, not the prior's.


def test_two_stage_vae_samples_a_known_mixture_far_better_than_the_prior_and_is_reused(
    tmp_path, monkeypatch):
  """Codes of a 5-component mixture far from N(0, I): the second-stage VAE's samples land on
  its components in its proportions (the prior's on none), its held-out likelihood beats a
  single Gaussian's, and it is kept beside the checkpoint and reused."""
  from wae_jax.samplers import two_stage  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(two_stage.TwoStage, "settings",
                      {**two_stage.TwoStage.settings, "steps": 2000})  # Half the time.
  codes, _ = mixture_codes(4000)
  calls = []
  fit = lambda **kw: samplers.fitted("two_stage", z_dim=2, prior_var=1.0, workdir=tmp_path,
                                     step=3, codes=lambda: calls.append(1) or codes, **kw)
  vae = fit()
  key = jax.random.key(0)
  near = lambda z: np.min(np.sum((z[:, None] - MEANS[None]) ** 2, -1), 1) < 1.5 ** 2
  z = vae.sample(5000, key)
  prior = samplers.fitted("prior", z_dim=2, prior_var=1.0).sample(5000, key)
  # A Gaussian with the codes' mean and covariance puts 0.11 of its draws there; 4,000 steps
  # (the default) put 0.64.
  assert near(z).mean() > 0.3 and near(prior).mean() < 0.01
  nearest = np.argmin(np.sum((z[near(z)][:, None] - MEANS[None]) ** 2, -1), 1)
  np.testing.assert_allclose(np.bincount(nearest, minlength=5) / near(z).sum(), WEIGHTS,
                             atol=0.07)
  # A single Gaussian's held-out log-likelihood per code is about -5.5, the mixture's -3.8.
  assert -5.0 < vae.summary["heldout_loglik"] < -3.5
  assert vae.summary["heldout_loglik"] >= vae.summary["heldout_elbo"] - 0.1  # IW is tighter.
  record = json.loads((samplers.path(tmp_path, 3, "two_stage") / "sampler.json").read_text())
  assert (record["step"], record["codes"], record["settings"]) == (3, 4000, vae.settings)
  again = fit()
  assert len(calls) == 1
  np.testing.assert_array_equal(again.sample(100, key), vae.sample(100, key))
