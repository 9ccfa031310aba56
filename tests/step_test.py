"""The paper's constants as the training step applies them: the reconstruction weight, the
prior's scale, the kernel width, BatchNorm's statistics and the initialisation. Changing
any of them, in the config or where the step uses it, fails a test here (the schedule is
pinned in state_test, the sharpness filter in sharpness_test)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import pack
from wae_jax import regularisers
from wae_jax import state as state_lib


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
