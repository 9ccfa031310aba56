"""The paper's constants as the training step applies them: the reconstruction weight, the
prior's scale, the kernel width, BatchNorm's statistics and the initialisation, lambda's
place in the objective, the encoder's input noise and the VAE's code draws. Changing
any of them, in the config or where the step uses it, fails a test here (the schedule is
pinned in state_test, the sharpness filter in sharpness_test)."""
import functools

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import pytest
from jax.sharding import Mesh

from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import pack
from wae_jax import regularisers
from wae_jax import state as state_lib
from wae_jax import step as step_lib


@regularisers.register("prior_spy")
class PriorSpy(regularisers.Regulariser):
  """Reports the prior draws' second moment: what the step gives a regulariser as P_Z."""
  metric = "prior_second_moment"

  def penalty(self, codes, prior, rng, hparams, state):
    del codes, rng, hparams, state
    return jnp.mean(prior ** 2)


def _config(**overrides):
  c = config_lib.load("mnist_wae_mmd:debug")
  c.update_from_flattened_dict({"model.width": 1 / 64, "batch_size": 64, **overrides})
  return c


@pytest.fixture(scope="module")
def mnist():
  return data.load("bundled:mnist", 1000)


def _mesh():
  return Mesh(np.array(jax.devices()), ("data",))


def test_reconstruction_weight_and_prior_scale(mnist):
  # No input noise, so the step's reconstruction can be recomputed outside it.
  c = _config(algo="prior_spy", prior_var=4.0, **{"model.input_noise": 0.0})
  model, step, init = pack.single(c, mnist, _mesh())
  state = init(c)
  batch = mnist.train.images[:c.batch_size]
  _, metrics = jax.jit(step)(state, batch, jax.random.key(1))

  x = mnist.pixels.to_float(batch)
  apply = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))
  (_, _, _, x_hat), _ = apply(state.variables, x, jnp.zeros((len(x), c.z_dim)))
  squared = np.sum(np.square(np.asarray(x - x_hat)).reshape(len(x), -1), axis=1)
  np.testing.assert_allclose(metrics["recon"], 0.05 * squared.mean(), rtol=1e-5)
  # P_Z = N(0, prior_var I): 512 draws of variance 4 (sd of the mean square about 0.25).
  assert 3.0 < float(metrics["prior_second_moment"]) < 5.0


def _imq_u_statistic(x, y, c):
  """Algorithm 2's estimator with the public code's sum over kernel widths, in float64."""
  def k(a, b):
    d2 = np.sum((a[:, None] - b[None]) ** 2, -1)
    return sum(s * c / (s * c + d2) for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0))
  n = len(x)
  off = lambda m: (m.sum() - np.trace(m)) / (n * (n - 1))
  return off(k(x, x)) + off(k(y, y)) - 2 * k(x, y).mean()


def test_mmd_penalty_uses_the_width_c_equal_to_2_dz_prior_var():
  c = _config(prior_var=2.0)  # C = 2 * 8 * 2 = 32.
  mesh = _mesh()
  reg = regularisers.build(c, mesh, functools.partial(state_lib.optimizer, c, 100))
  rng = np.random.default_rng(0)
  z, prior = (rng.normal(scale=s, size=(16, 8)).astype(np.float32) for s in (3.0, 1.4))
  got = reg.penalty(regularisers.Codes(jnp.asarray(z), None, None), jnp.asarray(prior), None,
                    {"prior_var": jnp.float32(2.0)}, None)
  want = _imq_u_statistic(z.astype(np.float64), prior.astype(np.float64), 32.0)
  np.testing.assert_allclose(got, want, rtol=1e-4)
  assert abs(want - _imq_u_statistic(z, prior, 16.0)) > 1e-2 * abs(want)  # C matters.


def test_batchnorm_momentum_and_epsilon(mnist):
  c = _config()
  model, _, init = pack.single(c, mnist, _mesh())
  variables = init(c).variables
  x = mnist.pixels.to_float(mnist.train.images[:64])
  _, out = jax.jit(functools.partial(
      model.apply, train=True, mutable=["batch_stats", "intermediates"],
      capture_intermediates=True))(variables, x, jnp.zeros((64, c.z_dim)))
  kernel = variables["params"]["encoder"]["Conv_0"]["kernel"]
  y = jax.lax.conv_general_dilated(x, kernel, (2, 2), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  mean, var = y.mean((0, 1, 2)), y.var((0, 1, 2))
  stats = out["batch_stats"]["encoder"]["BatchNorm_0"]
  # Running statistics start at (0, 1) and move a tenth of the way (momentum 0.9).
  np.testing.assert_allclose(stats["mean"], 0.1 * mean, rtol=1e-3, atol=1e-7)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * var, rtol=1e-5)
  # The batch is normalised with eps 1e-5; the activations' variance (~1e-4 at this
  # initialisation) makes a larger eps visible.
  (normed,) = out["intermediates"]["encoder"]["BatchNorm_0"]["__call__"]
  np.testing.assert_allclose(normed, (y - mean) / jnp.sqrt(var + 1e-5), rtol=1e-3, atol=1e-3)
  assert float(var.mean()) < 1e-2


def test_initialisation_is_normal_0_01_with_zero_biases(mnist):
  c = _config(**{"model.width": 1 / 16})
  params = pack.single(c, mnist, _mesh())[2](c).params
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    name, leaf = jax.tree_util.keystr(path), np.asarray(leaf)
    if name.endswith("['kernel']"):
      assert abs(leaf.mean()) < 1e-3 and 0.009 < leaf.std() < 0.011, name
    elif name.endswith("['bias']"):
      assert not leaf.any(), name
    else:  # BatchNorm's scale.
      assert name.endswith("['scale']") and (leaf == 1).all(), name


# --- The objective's weights, on a model whose every number is known in closed form --------


class Probe(nn.Module):
  """A stand-in auto-encoder: x_hat = x + a, and the code's mean is b plus the spread (the
  per-image standard deviation) of the encoder's input. A Gaussian encoder (`gaussian`) has
  log-variance 0, so its code is that mean plus the step's own draw."""
  z_dim: int
  gaussian: bool = False

  @nn.compact
  def __call__(self, x, noise, train):
    del train
    a = self.param("a", nn.initializers.constant(0.5), ())
    b = self.param("b", nn.initializers.constant(1.5), ())
    self.variable("batch_stats", "unused", jnp.zeros, ())  # The step updates this collection.
    spread = jnp.std(x.reshape(len(x), -1), axis=1)
    mean = b + spread[:, None] * jnp.ones((1, self.z_dim))
    if self.gaussian:
      return mean, jnp.zeros_like(mean), mean + noise, x + a
    return mean, None, mean, x + a


@regularisers.register("code_square")
class CodeSquare(regularisers.Regulariser):
  """mean(z^2): a penalty with a gradient into the probe's b."""
  metric = "code_square"

  def penalty(self, codes, prior, rng, hparams, state):
    del prior, rng, hparams, state
    return jnp.mean(codes.z ** 2)


@regularisers.register("code_spread")
class CodeSpread(regularisers.Regulariser):
  """mean((z - mean)^2): the second moment of a Gaussian encoder's draw around its mean."""
  metric = "code_spread"

  def penalty(self, codes, prior, rng, hparams, state):
    del prior, rng, hparams, state
    return jnp.mean((codes.z - codes.mean) ** 2)


@regularisers.register("mean_square")
class MeanSquare(regularisers.Regulariser):
  """mean(mean^2): of a Gaussian encoder's mean, which the probe makes b plus its input's
  spread."""
  metric = "mean_square"

  def penalty(self, codes, prior, rng, hparams, state):
    del prior, rng, hparams, state
    return jnp.mean(codes.mean ** 2)


def _probe_step(c, gaussian=False):
  """One jitted train_step of `Probe` on a batch of black images; its metrics."""
  mesh = _mesh()
  model = Probe(c.z_dim, gaussian)
  optimizer = functools.partial(state_lib.optimizer, c, 100)
  reg = regularisers.build(c, mesh, optimizer)
  state = state_lib.init_state(c, model, reg, (28, 28, 1), 100, jax.random.key(0),
                               state_lib.trial_values(c, reg))
  step = functools.partial(step_lib.train_step, c=c, model=model, regulariser=reg,
                           tx=optimizer(c.optim.lr), decay=state_lib.learning_rate(1.0, c, 100),
                           pixels=data.Pixels(symmetric=False), mesh=mesh)
  batch = np.zeros((c.batch_size, 28, 28, 1), np.uint8)
  return jax.jit(step)(state, batch, jax.random.key(1))[1]


def test_lambda_weighs_the_penalty_and_not_the_reconstruction():
  """loss = recon + lambda * penalty, in value and in gradient, with lambda = 10 (the
  paper's MNIST value; lambda = 1 would hide which term it multiplies)."""
  c = _config(algo="code_square", lam=10.0, **{"model.input_noise": 0.0})
  m = _probe_step(c)
  recon, penalty = 0.05 * 784 * 0.5 ** 2, 1.5 ** 2  # 0.05 sum (x_hat - x)^2; mean(b^2).
  np.testing.assert_allclose([m["recon"], m["code_square"]], [recon, penalty], rtol=1e-5)
  np.testing.assert_allclose(m["loss"], recon + 10.0 * penalty, rtol=1e-5)
  # d loss / da = 2 * 0.05 * 784 * a; d loss / db = lambda * 2 * b.
  np.testing.assert_allclose(m["grad_norm"], np.hypot(2 * 0.05 * 784 * 0.5, 10.0 * 2 * 1.5),
                             rtol=1e-5)


def test_the_deterministic_encoder_sees_its_inputs_with_n_0_001_noise():
  """The public code's N(0, 0.01^2) input noise, as the config carries it and the step adds
  it: the probe's code is b plus the spread of what the encoder saw (black images)."""
  c = _config(algo="code_square", lam=1.0)
  assert c.model.encoder == "deterministic" and c.model.input_noise == 0.01
  spread = float(jnp.sqrt(_probe_step(c)["code_square"])) - 1.5
  assert 0.0095 < spread < 0.0105  # 784 pixels x 64 images: the estimate's sd is ~0.3%.


def test_the_gaussian_encoder_gets_no_input_noise_and_unit_normal_code_draws():
  """A Gaussian encoder's inputs are the images themselves, and the eps of its reparameterised
  code z = mean + exp(log_var / 2) * eps is N(0, I) whatever the prior's variance."""
  c = _config(algo="mean_square", lam=1.0, prior_var=4.0, **{"model.encoder": "gaussian"})
  assert c.model.input_noise == 0.01
  # Black images seen without noise: the probe's mean is b = 1.5 exactly (1.51 with it).
  np.testing.assert_allclose(_probe_step(c, gaussian=True)["mean_square"], 1.5 ** 2, rtol=1e-6)
  c.algo = "code_spread"
  second_moment = float(_probe_step(c, gaussian=True)["code_spread"])
  assert 0.8 < second_moment < 1.2  # 512 draws of eps: E = 1, sd ~0.06 (4 if scaled by 2).
