"""Shapes, channel counts and output ranges of the paper's nets."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
import pytest

from wae_jax import config as config_lib
from wae_jax import models
from wae_jax import regularisers


def _jit_init(module, *args, **kwargs):
  """`module.init` jitted, on the classic threefry: these tests need shapes and ranges, not the
  trainer's values, and XLA:CPU compiles each partitionable draw in over a second (op by op,
  each draw would also be a program of its own)."""
  with jax.threefry_partitionable(False):
    return jax.jit(functools.partial(module.init, **kwargs))(jax.random.key(0), *args)


def _init(c, image_shape, symmetric, shapes_only=False):
  model = models.build(c, image_shape, symmetric)
  adversary = getattr(regularisers.build(c, mesh=None, optimizer=None), "net", None)
  x = jnp.full((2,) + image_shape, 0.5)
  args = (x, jnp.zeros((2, c.z_dim)))
  if shapes_only:
    return model, adversary, jax.eval_shape(functools.partial(model.init, train=False),
                                            jax.random.key(0), *args), x
  return model, adversary, _jit_init(model, *args, train=False), x


def test_mnist_paper_encoder_and_decoder_channels():
  c = config_lib.load("mnist_wae_mmd")
  _, _, v, _ = _init(c, (28, 28, 1), False, shapes_only=True)
  enc = v["params"]["encoder"]
  assert [enc[f"Conv_{i}"]["kernel"].shape for i in range(4)] == [
      (4, 4, 1, 128), (4, 4, 128, 256), (4, 4, 256, 512), (4, 4, 512, 1024)]
  assert enc["Dense_0"]["kernel"].shape == (2 * 2 * 1024, 8)
  dec = v["params"]["decoder"]
  assert dec["Dense_0"]["kernel"].shape == (8, 7 * 7 * 1024)
  assert [dec[f"ConvTranspose_{i}"]["kernel"].shape[-1] for i in range(3)] == [512, 256, 1]


@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "conv_transpose"])
@pytest.mark.parametrize("k,s", [(4, 2), (5, 2), (3, 2), (1, 2), (4, 1), (3, 1)])
def test_convs_equal_flax_values_and_gradients(k, s, transpose):
  """Both implementations, every kernel size and stride the nets use, on square, odd,
  1-pixel and stride-indivisible inputs."""
  flax_cls, ours_cls = (nn.ConvTranspose, models.ConvTranspose) if transpose else (
      nn.Conv, models.Conv)
  ref = flax_cls(6, (k, k), (s, s), "SAME")
  grad = lambda m: jax.jit(jax.grad(lambda v, x: jnp.sum(jnp.sin(m.apply(v, x))),
                                    argnums=(0, 1)))
  rng = np.random.default_rng(0)
  normal = lambda shape: rng.normal(size=shape).astype(np.float32)
  for hw in [(7, 7), (4, 5), (1, 1)]:
    x = normal((3, *hw, 5))
    v = jax.tree.map(lambda a: normal(a.shape), jax.eval_shape(ref.init, jax.random.key(1), x))
    want, want_grads = jax.jit(ref.apply)(v, x), grad(ref)(v, x)
    for impl in ("matmul", "xla"):
      ours = ours_cls(6, k, s, impl=impl)
      np.testing.assert_allclose(jax.jit(ours.apply)(v, x), want, rtol=1e-5, atol=2e-5,
                                 err_msg=impl)
      for a, b in zip(*map(jax.tree.leaves, (want_grads, grad(ours)(v, x)))):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(a))),
                                   err_msg=impl)


@pytest.mark.parametrize("name,shape,symmetric", [
    ("mnist_wae_gan:debug", (28, 28, 1), False),
    ("celeba_wae_gan", (64, 64, 3), True),
    ("mnist_vae:debug", (28, 28, 1), False),
])
def test_forward_shapes_and_ranges(name, shape, symmetric):
  c = config_lib.load(name)
  if not name.endswith("debug"):
    c.model.width = 1 / 32  # Shape check only; keeps the CelebA net small.
  model, adversary, v, x = _init(c, shape, symmetric)
  apply = jax.jit(functools.partial(model.apply, train=False))
  mean, log_var, z, x_hat = apply(v, x, jnp.ones((2, c.z_dim)))
  assert mean.shape == z.shape == (2, c.z_dim)
  assert x_hat.shape == x.shape
  lo = -1.0 if symmetric else 0.0
  assert float(x_hat.min()) >= lo and float(x_hat.max()) <= 1.0
  if c.model.encoder == "gaussian":
    assert log_var.shape == (2, c.z_dim)
    np.testing.assert_allclose(z, mean + jnp.exp(0.5 * log_var), rtol=1e-5)
  else:
    assert log_var is None
  if adversary is not None:
    a = _jit_init(adversary, z)
    assert jax.eval_shape(adversary.apply, a, z).shape == (2,)
    units = a["params"]["Dense_0"]["kernel"].shape[1]
    assert units == c.gan.units and len(a["params"]) == c.gan.layers + 1


@pytest.mark.parametrize("shape", [(28, 28, 1), (64, 64, 3)])
def test_resnet_nets_reach_the_same_latent_and_image_shapes(shape):
  c = config_lib.load("celeba_wae_mmd" if shape[0] == 64 else "mnist_wae_mmd")
  c.model.arch, c.model.width = "resnet", 1 / 32
  model, _, v, x = _init(c, shape, shape[-1] == 3, shapes_only=True)
  _, _, z, x_hat = jax.eval_shape(functools.partial(model.apply, train=False), v, x,
                                  jnp.zeros((2, c.z_dim)))
  assert z.shape == (2, c.z_dim) and x_hat.shape == x.shape
  assert any("PreActBlock" in k for k in v["params"]["encoder"])


def test_batchnorm_statistics_update_only_in_training():
  c = config_lib.load("mnist_wae_mmd:debug")
  model, _, v, x = _init(c, (28, 28, 1), False)
  x = np.random.default_rng(2).uniform(size=x.shape).astype(np.float32)
  _, updates = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))(
      v, x, jnp.zeros((2, c.z_dim)))
  before = jax.tree.leaves(v["batch_stats"])
  after = jax.tree.leaves(updates["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_only_a_gaussian_decoder_likelihood_learns_a_variance():
  c = config_lib.load("celeba_vae")
  assert c.recon.cost == "gaussian"
  _, _, v, _ = _init(c, (64, 64, 3), True, shapes_only=True)
  assert v["params"][models.DECODER_LOG_VAR].shape == ()
  _, _, v, _ = _init(config_lib.load("mnist_vae"), (28, 28, 1), False, shapes_only=True)
  assert models.decoder_log_var(v["params"]) is None


class _Fixed(nn.Module):
  """An encoder that outputs the same row for every image (its params unused)."""
  row: tuple[float, ...]

  @nn.compact
  def __call__(self, x, train):
    del train
    return jnp.broadcast_to(jnp.asarray(self.row, jnp.float32), (len(x), len(self.row)))


class _Identity(nn.Module):
  @nn.compact
  def __call__(self, z, train):
    del train
    return z


def test_vae_code_is_mean_plus_exp_half_log_var_times_eps():
  """The reparameterisation's scale, against a hand computation with a known eps: log-variances
  away from 0, where exp(log_var) or a dropped eps would show."""
  mean = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
  log_var = np.array([-2.0, 0.0, 1.5, np.log(4.0)], np.float32)
  eps = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
  model = models.AutoEncoder(_Fixed(tuple(mean) + tuple(log_var)), _Identity(), gaussian=True)
  got_mean, got_log_var, z, x_hat = model.apply({}, jnp.zeros((3, 2, 2, 1)), eps, train=True)
  # Mean first, then log-variance: how the saved checkpoints' encoder outputs are read.
  np.testing.assert_allclose(got_mean, np.broadcast_to(mean, (3, 4)))
  np.testing.assert_allclose(got_log_var, np.broadcast_to(log_var, (3, 4)))
  np.testing.assert_allclose(z, mean + np.exp(log_var / 2) * eps, rtol=1e-6)
  np.testing.assert_allclose(z[:, 3], mean[3] + 2.0 * eps[:, 3], rtol=1e-6)  # sd of variance 4.
  np.testing.assert_array_equal(x_hat, z)  # The decoder gets the draw, not the mean.
  # A deterministic encoder's code is its output; eps is ignored.
  det = models.AutoEncoder(_Fixed(tuple(mean)), _Identity())
  _, none, z, _ = det.apply({}, jnp.zeros((3, 2, 2, 1)), eps, train=True)
  assert none is None
  np.testing.assert_array_equal(z, np.broadcast_to(mean, (3, 4)))
