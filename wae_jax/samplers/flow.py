"""A learned density over the training codes: a RealNVP flow (Dinh et al., 2017) in Flax,
fitted by maximum likelihood with optax, and stopped at the evaluation with the best
held-out likelihood.

Codes are standardised per dimension first. Each affine coupling keeps the dimensions of
its mask and moves the others by a scale (tanh-bounded, so no step can blow up) and a shift,
both functions of the kept ones; the masks alternate between odd/even and low/high halves so
that every pair of dimensions meets within a few layers.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from wae_jax import samplers


def _mask(dim: int, layer: int) -> tuple[bool, ...]:
  kind, flip = divmod(layer % 4, 2)
  keep = [(i % 2 == 0) if kind == 0 else (i < dim // 2) for i in range(dim)]
  return tuple(k != bool(flip) for k in keep)


class Coupling(nn.Module):
  mask: tuple[bool, ...]
  hidden: int

  @nn.compact
  def __call__(self, x):
    """(log-scale, shift), zero on the kept dimensions."""
    keep = jnp.asarray(self.mask, x.dtype)
    h = nn.gelu(nn.Dense(self.hidden)(x * keep))
    h = nn.gelu(nn.Dense(self.hidden)(h))
    s, t = jnp.split(nn.Dense(2 * x.shape[-1], kernel_init=nn.initializers.zeros)(h), 2, -1)
    return jnp.tanh(s) * (1 - keep), t * (1 - keep)


class RealNVP(nn.Module):
  dim: int
  layers: int
  hidden: int

  def setup(self):
    self.couplings = [Coupling(_mask(self.dim, i), self.hidden) for i in range(self.layers)]

  def __call__(self, x):
    """Codes -> base N(0, I) draws, and log |det| of the map."""
    logdet = jnp.zeros(x.shape[:-1], x.dtype)
    for coupling in self.couplings:
      s, t = coupling(x)
      x, logdet = x * jnp.exp(s) + t, logdet + jnp.sum(s, -1)
    return x, logdet

  def inverse(self, u):
    for coupling in reversed(self.couplings):
      s, t = coupling(u)
      u = (u - t) * jnp.exp(-s)
    return u


def log_likelihood(model, params, x):
  """Mean log-density of standardised codes x under the flow."""
  u, logdet = model.apply(params, x)
  return jnp.mean(jnp.sum(-0.5 * u * u - 0.5 * jnp.log(2 * jnp.pi), -1) + logdet)


@samplers.register("flow")
class Flow(samplers.Sampler):
  # Steps are checked every `every`; the best held-out likelihood's parameters are kept.
  # (Sized on 4,000 MNIST codes of d_z 8: wider or deeper flows overfit them sooner.)
  settings = {"layers": 6, "hidden": 32, "steps": 2000, "every": 100, "batch": 256,
              "lr": 1e-3}

  @property
  def model(self):
    return RealNVP(self.z_dim, self.settings["layers"], self.settings["hidden"])

  def fit(self, codes, rng):
    mean, std, fit, heldout = samplers.standardised(codes, rng)
    model, cfg = self.model, self.settings
    key = jax.random.key(int(rng.integers(2**31 - 1)))
    params = model.init(key, fit[:1])
    opt = optax.adam(cfg["lr"])

    @jax.jit
    def chunk(params, opt_state, key):
      def step(carry, k):
        params, opt_state = carry
        batch = fit[jax.random.randint(k, (cfg["batch"],), 0, len(fit))]
        loss, grads = jax.value_and_grad(lambda p: -log_likelihood(model, p, batch))(params)
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), loss
      (params, opt_state), _ = jax.lax.scan(step, (params, opt_state),
                                            jax.random.split(key, cfg["every"]))
      return params, opt_state, log_likelihood(model, params, heldout)

    opt_state = opt.init(params)
    best, best_ll, curve = params, float(log_likelihood(model, params, heldout)), []
    for i in range(cfg["steps"] // cfg["every"]):
      params, opt_state, ll = chunk(params, opt_state, jax.random.fold_in(key, i))
      curve.append(float(ll))
      if curve[-1] > best_ll:
        best, best_ll = params, curve[-1]
    # The density of the codes themselves: the standardisation's log |det| taken off.
    code_ll = best_ll - float(np.sum(np.log(std)))
    self.arrays = samplers.network_arrays(mean, std, best)
    self.summary = {"heldout_loglik": code_ll, "heldout_curve": curve}

  def sample(self, n, key):
    params = samplers.network_params(self.arrays)
    u = jax.random.normal(key, (n, self.z_dim))
    x = jax.jit(lambda p, u: self.model.apply(p, u, method="inverse"))(params, u)
    return (np.asarray(x) * self.arrays["std"] + self.arrays["mean"]).astype(np.float32)
