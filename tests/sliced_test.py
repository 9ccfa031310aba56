"""The sliced Wasserstein penalty: its definition (POT), its Gaussian limit, its gradient, sharding."""
import jax
import numpy as np
import ot
import pytest
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from wae_jax import sliced

KEY = jax.random.key(0)


def _samples(n, m, d=5, shift=0.5, seed=0):
  r = np.random.default_rng(seed)
  return (r.normal(size=(n, d)).astype(np.float32),
          (r.normal(size=(m, d)) + shift).astype(np.float32))


def _pot(x, y, theta, p):
  """POT's SW_p on the same directions, raised to p: our definition."""
  as64 = lambda a: np.asarray(a, np.float64)
  return ot.sliced_wasserstein_distance(as64(x), as64(y), projections=as64(theta).T, p=p) ** p


def test_directions_are_unit_rows_spread_over_the_sphere():
  theta = np.asarray(sliced.random_directions(KEY, 4096, 3))
  assert theta.shape == (4096, 3)
  np.testing.assert_allclose(np.linalg.norm(theta, axis=1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(theta.mean(0), 0.0, atol=0.05)  # no preferred direction
  np.testing.assert_allclose(theta.T @ theta / 4096, np.eye(3) / 3, atol=0.03)  # isotropic


@pytest.mark.parametrize("copies", [1, 3])
def test_zero_between_identical_sets(copies):
  # y repeats every row of x `copies` times: the same empirical measure with m = copies * n.
  x, _ = _samples(50, 1)
  assert float(sliced.sliced_wasserstein(x, np.tile(x, (copies, 1)), KEY)) == 0.0


@pytest.mark.parametrize("n, m, p", [(64, 64, 2.0), (33, 33, 1.5), (50, 70, 1.0), (96, 16, 3.0),
                                     (1, 5, 2.0)])
def test_equals_pot_on_the_same_projections(n, m, p):
  x, y = _samples(n, m)
  got = sliced.sliced_wasserstein(x, y, KEY, num_projections=10, p=p)
  theta = sliced.random_directions(KEY, 10, 5)
  np.testing.assert_allclose(float(got), _pot(x, y, theta, p), rtol=1e-5)


def test_approaches_the_gaussian_closed_form_as_directions_grow():
  # Between N(0, I) and N(mu, I), W_2^2 along theta is (theta . mu)^2, whose mean over the
  # sphere is ||mu||^2 / d. The Monte-Carlo error over directions shrinks like 1/sqrt(L);
  # m is large enough that the finite-sample bias (a few 1e-3) stays below it.
  d, m = 8, 1024
  mu = np.full(d, 1.0, np.float32)  # closed form: 1
  errors = {}
  for num_projections in (8, 128, 2048):
    errors[num_projections] = np.mean([
        abs(float(sliced.sliced_wasserstein(*_samples(m, m, d, mu, seed), jax.random.key(seed),
                                            num_projections=num_projections)) - 1.0)
        for seed in range(3)])
  assert errors[8] > errors[128] > errors[2048]
  assert errors[2048] < 0.05


def _analytic_grad(x, y, theta, p):
  """d SW_p^p / dx for n = m: each code moves towards the prior draw of the same rank."""
  grad = np.zeros_like(x, dtype=np.float64)
  for t in np.asarray(theta, np.float64):
    u, v = x @ t, np.sort(y @ t)
    diff = u - v[np.argsort(np.argsort(u))]
    grad += np.outer(p * np.abs(diff) ** (p - 1) * np.sign(diff), t)
  return grad / (len(x) * len(theta))


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_gradient_moves_each_code_towards_the_prior_draw_of_its_rank(p):
  x, y = _samples(32, 32)
  grad = jax.grad(sliced.sliced_wasserstein)(x, y, KEY, num_projections=6, p=p)
  theta = sliced.random_directions(KEY, 6, 5)
  np.testing.assert_allclose(grad, _analytic_grad(x, y, theta, p), rtol=1e-4, atol=1e-7)


def test_gradient_with_unequal_sizes_matches_finite_differences_of_pot():
  x, y = _samples(24, 40)
  theta = sliced.random_directions(KEY, 6, 5)
  grad = jax.grad(sliced.sliced_wasserstein)(x, y, KEY, num_projections=6)
  v = np.random.default_rng(1).normal(size=x.shape)
  eps = 1e-6
  numeric = (_pot(x + eps * v, y, theta, 2) - _pot(x - eps * v, y, theta, 2)) / (2 * eps)
  np.testing.assert_allclose(np.sum(np.asarray(grad, np.float64) * v), numeric, rtol=1e-4)


def test_gradient_finite_at_ties_and_descends():
  x, y = _samples(16, 16)
  x[8:] = x[:8]  # duplicate codes: ties in every sort
  f = lambda x, y: sliced.sliced_wasserstein(x, y, KEY, num_projections=8)
  assert np.all(np.asarray(jax.grad(f)(x, x)) == 0.0)  # at Q = P: a minimum, flat
  grad = jax.grad(f)(x, y)
  assert np.all(np.isfinite(grad))
  assert float(f(x - 0.1 * grad, y)) < float(f(x, y))


@pytest.mark.parametrize("n, m, num_projections", [(32, 48, 10), (8, 8, 3)])
def test_sharded_equals_unsharded_value_and_gradient(n, m, num_projections):
  mesh = Mesh(np.array(jax.devices()), ("data",))
  assert mesh.size == 8  # conftest: 8 simulated devices
  rows = NamedSharding(mesh, P("data"))
  x, y = (jax.device_put(z, rows) for z in _samples(n, m))

  def sharded(x, y, rng):
    return sliced.sliced_wasserstein_sharded(x, y, rng, mesh=mesh, num_projections=num_projections)

  def unsharded(x, y, rng):
    return sliced.sliced_wasserstein(x, y, rng, num_projections=num_projections)

  step = lambda f: jax.jit(jax.value_and_grad(f), in_shardings=(rows, rows, None))
  (v1, g1), (v2, g2) = step(sharded)(x, y, KEY), step(unsharded)(x, y, KEY)
  np.testing.assert_allclose(v1, v2, rtol=1e-6)
  np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-8)
  assert g1.sharding.is_equivalent_to(rows, 2)


def test_sharded_takes_replicated_input_on_an_explicit_mesh():
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
  x, y = _samples(16, 24)
  with jax.set_mesh(mesh):
    got = jax.jit(sliced.sliced_wasserstein_sharded, static_argnames="mesh")(
        jax.device_put(x, NamedSharding(mesh, P())), y, KEY, mesh=mesh)
  np.testing.assert_allclose(got, sliced.sliced_wasserstein(x, y, KEY), rtol=1e-6)


def test_bad_input_raises_one_line_errors():
  x, y = _samples(16, 16)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  cases = [
      (lambda: sliced.sliced_wasserstein(x, y[:, :3], KEY), "must be \\(n, d\\)"),
      (lambda: sliced.sliced_wasserstein(x[:0], y, KEY), "at least one row"),
      (lambda: sliced.sliced_wasserstein(x, y, KEY, num_projections=0), "num_projections"),
      (lambda: sliced.sliced_wasserstein(x, y, KEY, p=0.5), "p must be"),
      (lambda: sliced.sliced_wasserstein_sharded(x, y, KEY, mesh=mesh, axis="batch"), "not 'batch'"),
      (lambda: sliced.sliced_wasserstein_sharded(x[:12], y, KEY, mesh=mesh), "multiples of the 8"),
  ]
  for call, message in cases:
    with pytest.raises(ValueError, match=message) as info:
      call()
    assert "\n" not in str(info.value)
