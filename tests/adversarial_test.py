"""WAE-GAN's latent adversary as the method defines it: its logits with and without the
p-trick, where lambda goes, which side is labelled 1, and that it learns to tell codes from
prior draws. The references are written out in NumPy from the adversary's parameters."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from wae_jax import config as config_lib
from wae_jax import regularisers
from wae_jax import state as state_lib
from wae_jax.regularisers import adversarial

Z_DIM = 8


def _adversary(p_trick, **overrides):
  """The regulariser of mnist_wae_gan:debug (64 units, the public code's rate 5e-4)."""
  c = config_lib.load("mnist_wae_gan:debug")
  c.update_from_flattened_dict({"gan.p_trick": p_trick, **overrides})
  mesh = Mesh(np.array(jax.devices()), ("data",))
  reg = regularisers.build(c, mesh, functools.partial(state_lib.optimizer, c, 100))
  state = reg.init(jax.random.key(0), {"gan.lr": jnp.float32(c.gan.lr)})
  return c, reg, state


def _with_visible_weights(state, seed=0):
  """The adversary with N(0, 0.3^2) weights and biases: at the N(0, 0.01^2) initialisation its
  logit is ~1e-6, too small to tell a swapped label from a right one."""
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda p: jnp.asarray(0.3 * rng.normal(size=p.shape), p.dtype),
                        state["params"])
  return {**state, "params": params}


def _mlp(params, z):
  """The adversary's network in float64 NumPy: dense ReLU layers, then one logit."""
  z = np.asarray(z, np.float64)
  names = sorted(params, key=lambda n: int(n.split("_")[-1]))
  for name in names[:-1]:
    z = np.maximum(z @ np.asarray(params[name]["kernel"], np.float64)
                   + np.asarray(params[name]["bias"], np.float64), 0.0)
  last = params[names[-1]]
  return (z @ np.asarray(last["kernel"], np.float64) + np.asarray(last["bias"], np.float64))[:, 0]


def _log_prior(z, prior_var):
  """log N(z; 0, prior_var I), per row."""
  z = np.asarray(z, np.float64)
  return (-0.5 * np.sum(z ** 2, -1) / prior_var
          - 0.5 * z.shape[-1] * np.log(2 * np.pi * prior_var))


def _softplus(x):
  return np.logaddexp(0.0, x)


def _draws(n=64, seed=1):
  """Prior draws of N(0, 2 I), and codes far off the prior (shifted and narrower)."""
  rng = np.random.default_rng(seed)
  prior = np.sqrt(2.0) * rng.normal(size=(n, Z_DIM))
  codes = 0.5 * rng.normal(size=(n, Z_DIM)) + 3.0
  return prior.astype(np.float32), codes.astype(np.float32)


def _reference_logits(params, z, p_trick, prior_var):
  return _mlp(params, z) + (_log_prior(z, prior_var) if p_trick else 0.0)


@pytest.mark.parametrize("p_trick", [True, False], ids=["p_trick", "plain"])
def test_encoder_penalty_is_bce_of_codes_against_label_1_without_lambda(p_trick):
  """The encoder's penalty: mean softplus(-logit(z)) = BCE(D(z), 1), the logit with
  + log N(z; 0, prior_var I) under the p-trick; lambda is the step's, not in here."""
  _, reg, state = _adversary(p_trick)
  state = _with_visible_weights(state)
  _, codes = _draws()
  hparams = {"lam": jnp.float32(7.0), "prior_var": jnp.float32(2.0)}
  got = reg.penalty(regularisers.Codes(jnp.asarray(codes), jnp.asarray(codes), None), None,
                    None, hparams, state)
  logits = _reference_logits(state["params"], codes, p_trick, 2.0)
  np.testing.assert_allclose(got, np.mean(_softplus(-logits)), rtol=1e-5)
  if p_trick:  # The prior's log-density moves the penalty by far more than the tolerance.
    plain = _mlp(state["params"], codes)
    assert abs(np.mean(_softplus(-plain)) - float(got)) > 0.1 * float(got)


@pytest.mark.parametrize("p_trick", [True, False], ids=["p_trick", "plain"])
def test_adversary_loss_is_lambda_times_bce_prior_1_codes_0(p_trick):
  """The adversary's loss: lambda * (BCE(D(prior), 1) + BCE(D(codes), 0)) = lambda * (mean
  softplus(-logit(prior)) + mean softplus(logit(codes))), before its step, with lambda != 1
  and prior_var != 1 (the p-trick's density is the trial's prior)."""
  _, reg, state = _adversary(p_trick)
  state = _with_visible_weights(state)
  prior, codes = _draws()
  hparams = {"lam": jnp.float32(3.0), "prior_var": jnp.float32(2.0)}
  new_state, metrics = jax.jit(reg.update)(state, jnp.asarray(codes), jnp.asarray(prior),
                                           hparams)
  params = state["params"]
  lp = _reference_logits(params, prior, p_trick, 2.0)
  lc = _reference_logits(params, codes, p_trick, 2.0)
  want = 3.0 * (np.mean(_softplus(-lp)) + np.mean(_softplus(lc)))
  np.testing.assert_allclose(metrics["adv_loss"], want, rtol=1e-5)
  # The labels swapped would give a visibly different number.
  swapped = 3.0 * (np.mean(_softplus(-lc)) + np.mean(_softplus(lp)))
  assert abs(swapped - want) > 0.1 * want
  # And the step took it: the parameters moved.
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new_state["params"], params)
  assert max(jax.tree.leaves(moved)) > 0


def test_the_p_trick_adds_the_prior_log_density_to_the_logit():
  """Its sign, with the network's own output exactly 0: the logit is then the log-density,
  -10.1 at the mode and -28.1 at (3, ..., 3), so the penalty is ~(10.1 + 28.1) / 2; the
  density subtracted would make it ~0."""
  _, reg, state = _adversary(True)
  zero = jax.tree.map(jnp.zeros_like, state["params"])
  near, far = np.zeros((1, Z_DIM), np.float32), np.full((1, Z_DIM), 3.0, np.float32)
  codes = np.concatenate([near, far])
  hparams = {"lam": jnp.float32(1.0), "prior_var": jnp.float32(2.0)}
  penalty = reg.penalty(regularisers.Codes(jnp.asarray(codes), jnp.asarray(codes), None), None,
                        None, hparams, {**state, "params": zero})
  logits = _log_prior(codes, 2.0)
  np.testing.assert_allclose(logits, [-10.12, -28.12], atol=0.01)
  np.testing.assert_allclose(penalty, np.mean(_softplus(-logits)), rtol=1e-5)


def test_the_adversary_learns_to_tell_codes_from_prior_draws():
  """Trained alone for 100 steps (the config's net and rate, lambda 10) on fixed codes off the
  prior, N(1, I), against fresh prior draws N(0, I), it labels held-out prior draws 1 and
  codes 0 well above chance, and its loss falls from chance's 2 log 2 to under half that
  (the Bayes classifier is right 92% of the time here)."""
  _, reg, state = _adversary(False)  # The p-trick's density alone would tell these apart.
  hparams = {"lam": jnp.float32(10.0), "prior_var": jnp.float32(1.0)}
  codes = jnp.asarray(np.random.default_rng(0).normal(size=(256, Z_DIM)) + 1.0, jnp.float32)

  @jax.jit
  def train(state, key):
    def body(state, key):
      state, metrics = reg.update(state, codes, jax.random.normal(key, codes.shape), hparams)
      return state, metrics["adv_loss"]
    return jax.lax.scan(body, state, jax.random.split(key, 100))

  state, losses = train(state, jax.random.key(1))
  losses = np.asarray(losses) / 10.0
  assert losses[0] == pytest.approx(2 * np.log(2), rel=0.01)
  assert losses[-5:].mean() < 0.5 * 2 * np.log(2), losses[::10]
  rng = np.random.default_rng(2)
  prior = rng.normal(size=(1000, Z_DIM)).astype(np.float32)
  held_out = (rng.normal(size=(1000, Z_DIM)) + 1.0).astype(np.float32)
  accuracy = (np.mean(_mlp(state["params"], prior) > 0)
              + np.mean(_mlp(state["params"], held_out) < 0)) / 2
  assert accuracy > 0.8, accuracy


def test_the_configs_adversary_is_4_layers_with_the_public_codes_width():
  """4 dense ReLU layers and a logit: 512 units for MNIST, 1024 for CelebA (REFERENCE.md)."""
  for name, units in (("mnist_wae_gan", 512), ("celeba_wae_gan", 1024)):
    c = config_lib.load(name)
    net = regularisers.build(c, None, None).net
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, c.z_dim)))["params"]
    assert [shapes[f"Dense_{i}"]["kernel"].shape for i in range(5)] == [
        (c.z_dim, units), (units, units), (units, units), (units, units), (units, 1)], name
  assert adversarial.Adversarial is regularisers.get("wae_gan")
