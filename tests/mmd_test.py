"""The blocked and sharded MMD estimators against the dense oracle and hand-computed values."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from wae_jax import mmd

IMQ1 = dict(kernel="imq", scales=(1.0,))
IMQ7 = dict(kernel="imq", scales=mmd.PAPER_SCALES)
RBF7 = dict(kernel="rbf", scales=mmd.PAPER_SCALES)


def samples(n, m, d, seed=0):
  """Codes and prior draws from visibly different laws, so the MMD is not lost in rounding."""
  rng = np.random.default_rng(seed)  # numpy: an eager jax draw compiles for each new shape.
  normal = lambda shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  return normal((n, d)) + 1.0, 1.5 * normal((m, d))


def assert_grads_close(got, want):
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(w))))


@pytest.mark.parametrize("n, m, d, block, kern", [
    (2, 3, 5, 8, IMQ7),        # the smallest n, both below one block
    (9, 9, 1, 8, IMQ1),        # d = 1, n = m = block + 1
    (33, 50, 3, 32, RBF7),     # n = block + 1 < m
    (64, 40, 8, 16, IMQ7),     # whole blocks of rows, padded columns
    (100, 100, 8, 512, IMQ7),  # a paper-sized batch under the default block
    (70, 45, 4, 12, IMQ1),     # many tiles of the triangle and the rectangle, an odd block
])
def test_blocked_equals_dense(n, m, d, block, kern):
  x, y = samples(n, m, d)
  c = 2.0 * d
  blocked = lambda x, y: mmd.mmd(x, y, c=c, block_size=block, **kern)
  dense = lambda x, y: mmd.mmd_dense(x, y, c=c, **kern)
  want, want_grads = jax.jit(jax.value_and_grad(dense, argnums=(0, 1)))(x, y)
  value, grads = jax.jit(jax.value_and_grad(blocked, argnums=(0, 1)))(x, y)
  np.testing.assert_allclose(blocked(x, y), want, rtol=1e-5)
  np.testing.assert_allclose(value, want, rtol=1e-5)
  assert_grads_close(grads, want_grads)


def test_gradient_of_the_codes_alone():
  """The WAE step differentiates only the codes; the prior draws' gradient is then skipped."""
  x, y = samples(40, 24, 4)
  blocked = lambda x, y: mmd.mmd(x, y, c=8.0, block_size=16, **IMQ7)
  dense = lambda x, y: mmd.mmd_dense(x, y, c=8.0, **IMQ7)
  assert_grads_close([jax.jit(jax.grad(blocked))(x, y)], [jax.jit(jax.grad(dense))(x, y)])
  matmuls = lambda args: str(jax.make_jaxpr(jax.grad(blocked, args))(x, y)).count("dot_general")
  assert matmuls(0) < matmuls((0, 1))


def test_hand_computed_estimator():
  # k(t) = 1/(1 + t) with x = {0, 1}, y = {0, 2, 3}: within x 2(1/2)/2, within y
  # 2(1/5 + 1/10 + 1/2)/6, across 2(1 + 1/5 + 1/10 + 1/2 + 1/2 + 1/5)/6; total -1/15.
  x, y = jnp.array([[0.0], [1.0]]), jnp.array([[0.0], [2.0], [3.0]])
  for f in (mmd.mmd_dense, mmd.mmd):
    np.testing.assert_allclose(f(x, y, c=1.0), -1.0 / 15, rtol=1e-5)
  # Two points each: 1/2 + 1/5 - 2 (1 + 1/5 + 1/2 + 1/2) / 4 = -0.4; negative, as it may be.
  np.testing.assert_allclose(mmd.mmd(x, y[:2], c=1.0), -0.4, rtol=1e-5)


def _u_statistic(x, y, c, scales):
  """Algorithm 2 in float64 NumPy: within-sample means over l != j, minus twice the cross
  mean over all pairs, the IMQ kernel summed over the widths s * c."""
  def k(a, b):
    d2 = np.sum((a[:, None] - b[None]) ** 2, -1)
    return sum(s * c / (s * c + d2) for s in scales)
  n, m = len(x), len(y)
  kxx, kyy = k(x, x), k(y, y)
  return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
          - 2.0 * k(x, y).mean())


def test_blocked_and_dense_equal_a_float64_reference_of_the_formula():
  """Not only each other: both against the formula, on many tiles of unequal samples."""
  x, y = samples(70, 45, 4)
  want = _u_statistic(np.asarray(x, np.float64), np.asarray(y, np.float64), 8.0, mmd.PAPER_SCALES)
  for f in (mmd.mmd_dense, functools.partial(mmd.mmd, block_size=16)):
    np.testing.assert_allclose(f(x, y, c=8.0, **IMQ7), want, rtol=1e-5)


def test_hand_computed_kernels():
  # IMQ over widths (.5, 1, 2) x c=2 at t=2: 1/3 + 2/4 + 4/6; slope -(1/9 + 2/16 + 4/36).
  imq = mmd.Kernel("imq", 2.0, (0.5, 1.0, 2.0))
  t = jnp.float32(2.0)
  np.testing.assert_allclose(imq(t), 1.5, rtol=1e-6)
  np.testing.assert_allclose(imq.exact(t), 1.5, rtol=1e-6)
  np.testing.assert_allclose(imq(t, slope=True)[1], -(1 / 9 + 2 / 16 + 4 / 36), rtol=1e-6)
  rbf = mmd.Kernel("rbf", 1.0, (1.0, 2.0))
  np.testing.assert_allclose(rbf(t), np.exp(-2.0) + np.exp(-1.0), rtol=1e-6)
  np.testing.assert_allclose(rbf(t, slope=True)[1], -np.exp(-2.0) - np.exp(-1.0) / 2, rtol=1e-6)


@pytest.mark.parametrize("scales", [(1.0,), mmd.PAPER_SCALES, (0.3, 3.0)])
def test_imq_rational_form_is_accurate_everywhere(scales):
  """The two-division form matches the per-width sum from t = 0 to far-away outliers."""
  c = 16.0
  t = np.concatenate([[0.0], np.logspace(-6, 9, 300)]) * c
  s = np.asarray(scales)[:, None]
  want = np.sum(s * c / (s * c + t), 0)
  want_slope = -np.sum(s * c / (s * c + t) ** 2, 0)
  k, slope = mmd.Kernel("imq", c, scales)(jnp.asarray(t, jnp.float32), slope=True)
  np.testing.assert_allclose(k, want, rtol=2e-6)
  np.testing.assert_allclose(slope, want_slope, rtol=2e-6)


def data_mesh():
  return Mesh(np.array(jax.devices()), ("data",))


def test_sharded_equals_unsharded_inside_jit():
  assert jax.device_count() == 8
  mesh = data_mesh()
  rows = NamedSharding(mesh, P("data"))
  x, y = samples(8 * 13, 8 * 5, 3)  # 13 rows a device: one whole block of 8 and a padded one
  kw = dict(c=6.0, block_size=8, **IMQ7)
  sharded = jax.jit(jax.value_and_grad(
      lambda x, y: mmd.mmd_sharded(x, y, mesh=mesh, **kw), argnums=(0, 1)))
  value, grads = sharded(jax.device_put(x, rows), jax.device_put(y, rows))
  unsharded = jax.jit(jax.value_and_grad(lambda x, y: mmd.mmd(x, y, **kw), argnums=(0, 1)))
  want, want_grads = unsharded(x, y)
  np.testing.assert_allclose(value, want, rtol=1e-5)
  assert_grads_close(grads, want_grads)
  assert grads[0].sharding.is_equivalent_to(rows, 2)


def test_sharded_trains_an_encoder():
  """As in a WAE step: codes from a sharded batch through an encoder, prior drawn in the step."""
  mesh = data_mesh()
  batch = jax.device_put(jax.random.normal(jax.random.key(0), (64, 5)),
                         NamedSharding(mesh, P("data")))
  w = 0.5 * jax.random.normal(jax.random.key(1), (5, 2))

  def penalty(f, w, key):
    return f(jnp.tanh(batch @ w) + 0.3, jax.random.normal(key, (64, 2)), c=4.0, **IMQ7)

  sharded = lambda *a, **k: mmd.mmd_sharded(*a, mesh=mesh, block_size=8, **k)
  key = jax.random.key(2)
  got = jax.jit(jax.value_and_grad(lambda w, key: penalty(sharded, w, key)))(w, key)
  want = jax.jit(jax.value_and_grad(lambda w, key: penalty(mmd.mmd_dense, w, key)))(w, key)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  assert_grads_close([got[1]], [want[1]])


def test_sharded_with_explicit_axes():
  mesh = jax.make_mesh((4, 2), ("data", "model"))
  x, y = samples(32, 16, 2)
  grad = jax.grad(lambda x: mmd.mmd_sharded(x, y, mesh=mesh, c=4.0, block_size=8))
  want = jax.jit(jax.grad(lambda x: mmd.mmd_dense(x, y, c=4.0)))(x)
  assert_grads_close([jax.jit(grad)(x)], [want])
  with jax.set_mesh(mesh):  # Outside jit, explicit axes need the mesh in context.
    assert_grads_close([grad(x)], [want])


def test_float32_inputs_under_x64():
  x, y = samples(20, 12, 3)
  want = mmd.mmd_dense(x, y, c=6.0, **IMQ7)
  with jax.enable_x64(True):
    for f in (mmd.mmd, mmd.mmd_dense):
      value, grad = jax.jit(jax.value_and_grad(lambda x, f=f: f(x, y, c=6.0, **IMQ7)))(x)
      assert value.dtype == grad.dtype == jnp.float32
      np.testing.assert_allclose(value, want, rtol=1e-5)


def temp_bytes(f, *shapes):
  args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
  return jax.jit(f).lower(*args).compile().memory_analysis().temp_size_in_bytes


def test_memory_grows_linearly_not_quadratically():
  """Compiled only: at m = 65,536 three dense kernel matrices would need 48 GiB."""
  def step(x, y):
    return jax.value_and_grad(lambda x: mmd.mmd(x, y, c=128.0, block_size=512, **IMQ7))(x)

  small, large = (temp_bytes(step, (m, 64), (m, 64)) for m in (4096, 65536))
  assert large <= 64 * 2**20
  assert large < 20 * small  # m grew 16x: linear growth, where quadratic would be 256x.


def test_sharded_memory_per_device():
  mesh = data_mesh()
  m = 65536
  step = jax.grad(lambda x, y: mmd.mmd_sharded(x, y, mesh=mesh, c=128.0, block_size=512))
  # Each device gathers x and y (16 MiB each) and reduces its 8,192 rows tile by tile.
  assert temp_bytes(step, (m, 64), (m, 64)) <= 64 * 2**20


@pytest.mark.parametrize("call, match", [
    (lambda x: mmd.mmd(x, x, c=1.0, kernel="gauss"), "kernel must be one of"),
    (lambda x: mmd.mmd(x, x, c=0.0), "c must be a positive Python number"),
    (lambda x: mmd.mmd(x, x, c=1.0, scales=()), "scales must be"),
    (lambda x: mmd.mmd(x, x, c=1.0, block_size=0), "block_size must be"),
    (lambda x: mmd.mmd(x, x[:, :2], c=1.0), "must be \\(n, d\\) and \\(m, d\\)"),
    (lambda x: mmd.mmd(x[:1], x, c=1.0), "at least 2 rows"),
    (lambda x: mmd.mmd_sharded(x[:12], x, mesh=data_mesh(), c=1.0), "multiples of the 8"),
    (lambda x: mmd.mmd_sharded(x, x, mesh=data_mesh(), axis="batch", c=1.0), "not 'batch'"),
    (lambda x: jax.jit(lambda c: mmd.mmd(x, x, c=c))(1.0), "c must be a positive Python"),
])
def test_bad_input_is_one_clear_error(call, match):
  with pytest.raises(ValueError, match=match):
    call(jnp.ones((16, 3)))
