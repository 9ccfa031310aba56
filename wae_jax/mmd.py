"""The WAE-MMD penalty: the unbiased MMD U-statistic, by a blocked pairwise reduction.

    MMD(x, y) = 1/(n(n-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j)
                - 2/(nm) sum_{i,j} k(x_i, y_j)

for n codes x and m prior draws y (REFERENCE.md). The dense form holds three kernel
matrices, which is what kept the paper's batch at 100. `mmd` visits the pairs one
(block x block) tile at a time, so forward and backward hold O((n + m) d + block^2)
temporaries; `mmd_sharded` does the same per device on its own rows against all columns.
The within-sample sums visit only the tiles on and above the diagonal, and the gradient
comes from the same sweep as the value (a custom VJP), for the inputs being differentiated.

Kernels are functions of the squared distance t = ||a - b||^2, summed over widths s * c:
  imq: sum_s s c / (s c + t)      rbf: sum_s exp(-t / (s c)).
"""
import dataclasses
import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

KERNELS = ("imq", "rbf")
PAPER_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def _sqdist(a, b, a_sq, b_sq):
  """||a_i - b_j||^2 by one matmul; clamped because rounding can make it slightly negative."""
  return jnp.maximum(a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T), 0.0)


def _horner(coeffs: np.ndarray, r):
  """sum_i coeffs[i] r^(deg - i), in r's dtype."""
  acc = float(coeffs[0])
  for c in coeffs[1:]:
    acc = acc * r + float(c)
  return acc


@dataclasses.dataclass(frozen=True)
class Kernel:
  """k(t) of the squared distance t, summed over the widths `scale * c`; hashable, so static."""
  name: str
  c: float
  scales: tuple[float, ...]

  @property
  def at_zero(self) -> float:
    """k(0): what each dropped diagonal term of a within-sample sum holds."""
    return float(len(self.scales))

  def exact(self, t):
    """The definition, one term per width: the dense oracle's kernel."""
    if self.name == "imq":
      return sum(s * self.c / (s * self.c + t) for s in self.scales)
    return sum(jnp.exp(t * (-1.0 / (s * self.c))) for s in self.scales)

  @functools.cached_property
  def _imq_polys(self):
    # With u = t/c, s0 = min(scales) and rho = 1/(s0 + u), each term s/(s + u) is
    # s rho / (1 + b_s rho) with b_s = s - s0 >= 0. The sum is rho P(rho) / Q(rho) and its
    # u-derivative -rho^2 R(rho) / Q(rho)^2, where Q = prod_s (1 + b_s rho),
    # P = sum_s s prod_{r!=s} (1 + b_r rho), R = sum_s s prod_{r!=s} (1 + b_r rho)^2.
    s = np.sort(np.asarray(self.scales, np.float64))
    factors = [np.poly1d([b, 1.0]) for b in s - s[0]]
    product = lambda polys: functools.reduce(np.polymul, polys, np.poly1d([1.0]))
    others = [product(factors[:i] + factors[i + 1:]) for i in range(len(s))]
    p = sum(o * si for si, o in zip(s, others))
    r = sum(o**2 * si for si, o in zip(s, others))
    return float(s[0]), p.c, product(factors).c, r.c  # Python floats: weak under x64 too.

  def __call__(self, t, *, slope: bool = False):
    """k(t), and dk/dt if `slope`, at a cost per pair that grows slowly with the widths.

    For IMQ the width sum is one rational function of rho = c / (s0 c + t): two divisions
    per pair whatever the number of widths (a division costs ~10 multiply-adds on a CPU),
    and Horner's rule over its positive coefficients at rho >= 0 loses no accuracy.
    """
    if self.name == "rbf":
      terms = [jnp.exp(t * (-1.0 / (s * self.c))) for s in self.scales]
      k = sum(terms)
      return (k, sum(e * (-1.0 / (s * self.c)) for e, s in zip(terms, self.scales))) if slope else k
    s0, p, q, r = self._imq_polys
    rho = self.c / (s0 * self.c + t)
    rho_q = rho / _horner(q, rho) if len(q) > 1 else rho
    k = rho_q * _horner(p, rho)
    return (k, rho_q * rho_q * _horner(r, rho) * (-1.0 / self.c)) if slope else k


def _check(x, y, kernel: str, c, scales, block_size: int | None = None) -> Kernel:
  """One-line errors for bad input; returns the (static) kernel."""
  if kernel not in KERNELS:
    raise ValueError(f"mmd: kernel must be one of {KERNELS}, got {kernel!r}")
  if not isinstance(c, numbers.Real) or not c > 0:
    raise ValueError(f"mmd: c must be a positive Python number (2 * z_dim * prior_var), got {c!r}")
  scales = tuple(float(s) for s in np.atleast_1d(scales))
  if not scales or min(scales) <= 0:
    raise ValueError(f"mmd: scales must be a non-empty tuple of positive numbers, got {scales!r}")
  if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
    raise ValueError(f"mmd: block_size must be a positive int, got {block_size!r}")
  if jnp.ndim(x) != 2 or jnp.ndim(y) != 2 or jnp.shape(x)[1] != jnp.shape(y)[1]:
    raise ValueError(
        f"mmd: x and y must be (n, d) and (m, d), got {jnp.shape(x)} and {jnp.shape(y)}")
  if len(x) < 2 or len(y) < 2:
    raise ValueError(f"mmd: the U-statistic needs at least 2 rows each, got n={len(x)}, m={len(y)}")
  return Kernel(kernel, float(c), scales)


def _as_float(z):
  return jnp.asarray(z, jnp.promote_types(jnp.result_type(z), jnp.float32))


def mmd_dense(x, y, *, kernel: str = "imq", c: float, scales=(1.0,)) -> jax.Array:
  """The estimator written out with the three full kernel matrices: the oracle for `mmd`."""
  kern = _check(x, y, kernel, c, scales)
  x, y = _as_float(x), _as_float(y)
  n, m = float(len(x)), float(len(y))
  gram = lambda a, b: kern.exact(_sqdist(a, b, jnp.sum(a * a, 1), jnp.sum(b * b, 1)))
  off_diagonal = lambda k: jnp.sum(jnp.where(jnp.eye(len(k), dtype=bool), 0.0, k))
  return (off_diagonal(gram(x, x)) / (n * (n - 1)) + off_diagonal(gram(y, y)) / (m * (m - 1))
          - 2.0 * jnp.sum(gram(x, y)) / (n * m))


def _tile(kern: Kernel, a, b, a_sq, b_sq, mask, *, slope: bool):
  """Kernel values (and slopes) of one tile of pairs, zero where `mask` is False.

  The select also keeps XLA:CPU from fusing the kernel into the YNNPACK matmul, whose
  elementwise epilogues run several times slower than XLA's own loop fusion (the whole
  7-width tile took 2.3x longer that way).
  """
  t = _sqdist(a, b, a_sq, b_sq)
  if not slope:
    return jnp.where(mask, kern(t), 0.0)
  return tuple(jnp.where(mask, v, 0.0) for v in kern(t, slope=True))


def _pair_sum(a, b, kern: Kernel, block: int, *, triangle=False, grad_a=False, grad_b=False):
  """sum_{i,j} k(a_i, b_j) tile by tile, and its gradients w.r.t. a and b (None unless asked).

  With `triangle` (b is a), only tiles on or above the diagonal are visited, those above
  counting twice, and the gradient w.r.t. a collects both sides of every pair. Rows are
  padded to whole tiles and the padding masked out.
  """
  n, m, d = len(a), len(b), a.shape[1]
  br = min(block, -(-n // 8) * 8)
  bc = br if triangle else min(block, -(-m // 8) * 8)
  pad = lambda z, size: jnp.pad(z, ((0, -len(z) % size), (0, 0)))
  a = pad(a, br)
  b = a if triangle else pad(b, bc)
  a_sq, b_sq = jnp.sum(a * a, 1), jnp.sum(b * b, 1)
  grad_b = grad_b and not triangle
  tile = lambda z, i, size: lax.dynamic_slice_in_dim(z, i * size, size)
  valid = lambda i, size, count: (i * size + jnp.arange(size)) < count

  def row_block(i, carry):
    total, ga, gb = carry
    ai, ai_sq, ai_valid = tile(a, i, br), tile(a_sq, i, br), valid(i, br, n)

    def col_block(j, inner):
      s, ga_i, ga, gb = inner
      bj = tile(b, j, bc)
      w = jnp.where(j > i, 2.0, 1.0) if triangle else 1.0
      args = (kern, ai, bj, ai_sq, tile(b_sq, j, bc), ai_valid[:, None] & valid(j, bc, m)[None, :])
      if not (grad_a or grad_b):
        return s + w * jnp.sum(_tile(*args, slope=False)), ga_i, ga, gb
      k, g = _tile(*args, slope=True)
      # d(w k_ij)/da_i = 2 w g_ij (a_i - b_j) and d/db_j = 2 w g_ij (b_j - a_i); the 2 comes last.
      if grad_a:
        ga_i = ga_i + w * (ai * jnp.sum(g, 1, keepdims=True) - g @ bj)
      col = lambda: w * (bj * jnp.sum(g, 0)[:, None] - g.T @ ai)
      if grad_a and triangle:
        ga = lax.dynamic_update_slice_in_dim(ga, tile(ga, j, bc) + col(), j * bc, 0)
      if grad_b:
        gb = lax.dynamic_update_slice_in_dim(gb, tile(gb, j, bc) + col(), j * bc, 0)
      return s + w * jnp.sum(k), ga_i, ga, gb

    ga_i = jnp.zeros_like(a, shape=(br, d)) if grad_a else None
    s, ga_i, ga, gb = lax.fori_loop(i if triangle else 0, len(b) // bc, col_block,
                                    (jnp.zeros_like(a, shape=()), ga_i, ga, gb))
    if grad_a:
      ga = lax.dynamic_update_slice_in_dim(ga, tile(ga, i, br) + ga_i, i * br, 0)
    return total + s, ga, gb

  zeros = lambda z, want: jnp.zeros_like(z) if want else None
  total, ga, gb = lax.fori_loop(0, len(a) // br, row_block,
                                (jnp.zeros_like(a, shape=()), zeros(a, grad_a), zeros(b, grad_b)))
  return total, None if ga is None else 2.0 * ga[:n], None if gb is None else 2.0 * gb[:m]


def _combine(n, m, k0, sxx, syy, sxy):
  """The U-statistic from the three pair sums, diagonals included in the within-sample ones."""
  return (sxx - n * k0) / (n * (n - 1)) + (syy - m * k0) / (m * (m - 1)) - 2.0 * sxy / (n * m)


@dataclasses.dataclass(frozen=True)
class _Blocked:
  """The single-device estimator, returning (value, d/dx or None, d/dy or None)."""
  kern: Kernel
  block: int

  def place(self, z):
    return z

  def __call__(self, x, y, grad_x: bool, grad_y: bool):
    n, m = float(len(x)), float(len(y))  # Python ints would overflow int32 beyond ~46k rows
    sxx, gxx, _ = _pair_sum(x, x, self.kern, self.block, triangle=True, grad_a=grad_x)
    syy, gyy, _ = _pair_sum(y, y, self.kern, self.block, triangle=True, grad_a=grad_y)
    sxy, gx, gy = _pair_sum(x, y, self.kern, self.block, grad_a=grad_x, grad_b=grad_y)
    if grad_x:
      gx = gxx / (n * (n - 1)) - gx * (2.0 / (n * m))
    if grad_y:
      gy = gyy / (m * (m - 1)) - gy * (2.0 / (n * m))
    return _combine(n, m, self.kern.at_zero, sxx, syy, sxy), gx, gy


@dataclasses.dataclass(frozen=True)
class _Sharded:
  """Per device: own rows of x and y against all (gathered) rows; partial sums psum-ed.

  The within-sample sums are symmetric, so the gradient w.r.t. a device's own rows is twice
  its row gradient and needs no communication; only d/dy of the cross term, which every
  device holds a part of for all of y, is reduce-scattered.
  """
  kern: Kernel
  block: int
  mesh: Mesh
  axis: str

  def place(self, z):
    # Under explicit sharding the rows must already lie where shard_map wants them.
    if self.mesh.axis_types[self.mesh.axis_names.index(self.axis)] == AxisType.Explicit:
      return jax.reshard(z, NamedSharding(self.mesh, P(self.axis)))
    return z

  def __call__(self, x, y, grad_x: bool, grad_y: bool):
    n, m, ax = float(len(x)), float(len(y)), self.axis

    def local(x, y):
      x_all = lax.all_gather(x, ax, tiled=True)
      y_all = lax.all_gather(y, ax, tiled=True)
      sxx, gxx, _ = _pair_sum(x, x_all, self.kern, self.block, grad_a=grad_x)
      syy, gyy, _ = _pair_sum(y, y_all, self.kern, self.block, grad_a=grad_y)
      sxy, gx, gy = _pair_sum(x, y_all, self.kern, self.block, grad_a=grad_x, grad_b=grad_y)
      sxx, syy, sxy = lax.psum((sxx, syy, sxy), ax)
      value = _combine(n, m, self.kern.at_zero, sxx, syy, sxy)
      if grad_x:
        gx = gxx * (2.0 / (n * (n - 1))) - gx * (2.0 / (n * m))
      if grad_y:
        gy = gyy * (2.0 / (m * (m - 1))) - lax.psum_scatter(gy, ax, tiled=True) * (2.0 / (n * m))
      return value, gx, gy

    rows = P(ax)
    out_specs = (P(), rows if grad_x else None, rows if grad_y else None)
    return jax.shard_map(local, mesh=self.mesh, in_specs=(rows, rows), out_specs=out_specs)(x, y)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _estimate(estimator, x, y):
  return estimator(x, y, False, False)[0]


def _estimate_fwd(estimator, x, y):
  # One sweep gives the value and the gradients (O((n + m) d) residuals), only for the
  # inputs being differentiated: in a WAE step the prior draws are not.
  value, gx, gy = estimator(x.value, y.value, x.perturbed, y.perturbed)
  return value, (gx, gy)


def _estimate_bwd(estimator, grads, ct):
  return tuple(None if g is None else ct * g for g in grads)


_estimate.defvjp(_estimate_fwd, _estimate_bwd, symbolic_zeros=True)


@functools.partial(jax.jit, static_argnums=0)
def _run(estimator, x, y):
  return _estimate(estimator, *(estimator.place(_as_float(z)) for z in (x, y)))


def mmd(x, y, *, kernel: str = "imq", c: float, scales=(1.0,), block_size: int = 512) -> jax.Array:
  """The MMD U-statistic between codes x (n, d) and prior draws y (m, d), never forming an
  n x m matrix; equal to `mmd_dense`, differentiable in both, with O(block^2) tiles.

  The default block keeps a 1 MiB fp32 tile in a CPU core's L2 cache; accelerators prefer
  larger ones.
  """
  kern = _check(x, y, kernel, c, scales, block_size)
  return _run(_Blocked(kern, block_size), x, y)


def mmd_sharded(x, y, *, mesh: Mesh, axis: str = "data", kernel: str = "imq", c: float,
                scales=(1.0,), block_size: int = 512) -> jax.Array:
  """`mmd` with the rows of x and y sharded over `axis` of `mesh`; callable inside jit.

  On a mesh with explicit axes (`jax.make_mesh`) its gradient outside jit needs
  `jax.set_mesh(mesh)`, as that of any JAX function of explicitly sharded arrays does.
  """
  kern = _check(x, y, kernel, c, scales, block_size)
  if axis not in mesh.axis_names:
    raise ValueError(f"mmd_sharded: mesh has axes {mesh.axis_names}, not {axis!r}")
  devices = mesh.shape[axis]
  if len(x) % devices or len(y) % devices:
    raise ValueError(f"mmd_sharded: row counts n={len(x)}, m={len(y)} must be multiples of the "
                     f"{devices} devices on mesh axis {axis!r}")
  return _run(_Sharded(kern, block_size, mesh, axis), x, y)
