"""Regularisers: the penalties against hand-worked cases, and the registry's seam: a
regulariser defined in this file trains through `wae-train`'s code path and reaches
metrics.json and `wae-results`; one in a module outside wae_jax is imported by its name."""
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wae_jax import regularisers
from wae_jax import results as results_lib
from wae_jax import workdir as workdir_lib
from wae_jax.cli import train as train_cli
from wae_jax.errors import ConfigError
from wae_jax.regularisers import adversarial
from wae_jax.regularisers import kl


def test_kl_to_standard_and_wider_priors():
  mean = jnp.array([[1.0, 0.0]])
  log_var = jnp.array([[0.0, np.log(2.0)]])
  # dim 1: 0.5 * (1 + 1 - 1 - 0); dim 2: 0.5 * (2 - 1 - log 2).
  np.testing.assert_allclose(kl.kl_to_prior(mean, log_var, 1.0),
                             0.5 + 0.5 * (1 - np.log(2)), rtol=1e-6)
  # prior_var = 2: dim 1: 0.5 * (2/2 - 1 + log 2); dim 2: 0.5 * (2/2 - 1 - log 2 + log 2) = 0.
  np.testing.assert_allclose(kl.kl_to_prior(mean, log_var, 2.0), 0.5 * np.log(2), rtol=1e-6)
  np.testing.assert_allclose(kl.kl_to_prior(jnp.zeros((4, 3)), jnp.zeros((4, 3)), 1.0), 0.0,
                             atol=1e-7)


def test_adversary_losses_at_chance_and_at_confidence():
  zero = jnp.zeros(5)
  np.testing.assert_allclose(adversarial.adversary_loss(zero, zero), 2 * np.log(2), rtol=1e-6)
  np.testing.assert_allclose(adversarial.encoder_penalty(zero), np.log(2), rtol=1e-6)
  # A confident, correct adversary has ~0 loss; the encoder then pays ~|logit|.
  np.testing.assert_allclose(adversarial.adversary_loss(jnp.full(5, 30.0), jnp.full(5, -30.0)), 0.0,
                             atol=1e-12)
  np.testing.assert_allclose(adversarial.encoder_penalty(jnp.full(5, -30.0)), 30.0, rtol=1e-6)
  # Stable for huge logits (no overflow to inf or nan).
  assert np.isfinite(adversarial.adversary_loss(jnp.full(2, -1e4), jnp.full(2, 1e4)))


def test_prior_log_density_matches_the_gaussian_formula():
  z = jnp.array([[0.0, 0.0], [1.0, 2.0]])
  expected = [-np.log(2 * np.pi * 2.0), -np.log(2 * np.pi * 2.0) - 5.0 / 4.0]
  np.testing.assert_allclose(adversarial.prior_log_density(z, 2.0), expected, rtol=1e-6)


def test_penalty_gradients_are_finite():
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(16, 4)), jnp.float32)
  for fn in (lambda z: kl.kl_to_prior(z, 0.1 * z, 1.0),
             lambda z: adversarial.adversary_loss(z[:, 0], z[:, 1]),
             lambda z: adversarial.encoder_penalty(z[:, 0])):
    assert np.all(np.isfinite(jax.grad(fn)(z)))


def test_every_algo_has_a_registered_regulariser():
  assert {"wae_mmd", "wae_gan", "wae_sw", "vae"} <= set(regularisers.names())
  assert regularisers.get("vae").encoder == "gaussian"
  assert [regularisers.get(a).section for a in ("wae_mmd", "wae_sw", "wae_gan", "vae")] == [
      "mmd", "sw", "gan", None]
  with pytest.raises(ConfigError, match="^unknown regulariser 'nope' .*on the Python path"):
    regularisers.get("nope")


def test_naming_an_outside_module_imports_it(tmp_path, monkeypatch):
  (tmp_path / "zero_penalty.py").write_text(textwrap.dedent("""
      from wae_jax import regularisers

      @regularisers.register(__name__)
      class Zero(regularisers.Regulariser):
        def penalty(self, codes, prior, rng, hparams, state):
          return 0.0
      """))
  (tmp_path / "registers_nothing.py").write_text("")
  (tmp_path / "broken_part.py").write_text("import no_such_dependency\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.setattr(regularisers, "_REGISTRY", dict(regularisers._REGISTRY))
  try:
    assert regularisers.get("zero_penalty").__name__ == "Zero"
    assert "zero_penalty" in regularisers.names()
    with pytest.raises(ConfigError, match="^unknown regulariser 'registers_nothing'"):
      regularisers.get("registers_nothing")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency"):  # Its own error.
      regularisers.get("broken_part")
  finally:
    for name in ("zero_penalty", "registers_nothing", "broken_part"):
      sys.modules.pop(name, None)


@regularisers.register("toy_moments")
class ToyMoments(regularisers.Regulariser):
  """Not a divergence worth using: squared distance of the codes' second moment to the
  prior's. Defined here, so the seam needs no edit to library code."""
  metric = "toy_moments"

  def penalty(self, codes, prior, rng, hparams, state):
    del prior, rng, state
    return (jnp.mean(codes.z ** 2) - hparams["prior_var"]) ** 2


def test_a_regulariser_registered_here_trains_through_wae_train(tmp_path, monkeypatch, capsys):
  workdir = tmp_path / "trial"
  argv = ["wae-train", "--config=mnist_wae_mmd:debug", f"--workdir={workdir}",
          "--config.algo=toy_moments", "--config.num_steps=20", "--config.log_every=10",
          "--config.eval_every=20", "--config.ckpt_every=20", "--config.model.width=0.015625",
          "--config.batch_size=32", "--config.eval.num_samples=64"]
  monkeypatch.setattr("sys.argv", argv)
  with pytest.raises(SystemExit) as e:
    train_cli.main()  # absl's app.run exits, with 0 when training finished.
  assert e.value.code in (None, 0)
  record = workdir_lib.read_metrics(workdir)
  assert record["status"] == "done" and record["config"]["algo"] == "toy_moments"
  assert np.isfinite(record["train"]["toy_moments"]) and record["train"]["toy_moments"] >= 0
  trials = results_lib.read_results(tmp_path).trials.set_index("trial")
  assert trials.loc["trial", "train/toy_moments"] == record["train"]["toy_moments"]
