"""A learned density over the training codes: the second stage of Dai & Wipf's two-stage VAE
(ICLR 2019), a small VAE fitted on the first model's codes, whose prior draws decoded are the
samples.

Why it works: where the first model's codes miss the prior, they still fill the latent space
(d_z is small), and a VAE whose latent and data dimensions agree can match such a density
closely; its own aggregate posterior then lands near N(0, I), so decoding N(0, I) draws gives
codes like the training ones. As in the paper the decoder's variance gamma is one learned
scalar. The paper samples the decoder's mean, exact as gamma goes to 0, which it does when
codes lie on a thinner manifold than their space; 8-d WAE codes fill theirs, gamma stayed near
0.15 (standardised), and the means alone had 0.70 of the codes' variance, further from them
(energy distance) than the prior's draws on one MNIST WAE-MMD. So a sample is a draw of the
whole second-stage model: the mean plus N(0, gamma I), the density whose likelihood is kept.

Codes are standardised per dimension first. Training maximises the ELBO with optax; the
parameters kept are those of the evaluation with the best held-out ELBO. The held-out
log-likelihood recorded (comparable with the mixture's and the flow's) is the
importance-weighted bound (Burda et al., 2016) with `iw_samples` draws: still a lower bound,
tighter than the ELBO.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from wae_jax import samplers

_LOG_2PI = float(np.log(2 * np.pi))


class MLP(nn.Module):
  hidden: int
  layers: int
  out: int

  @nn.compact
  def __call__(self, x):
    for _ in range(self.layers):
      x = nn.gelu(nn.Dense(self.hidden)(x))
    return nn.Dense(self.out)(x)


class SecondStage(nn.Module):
  dim: int
  hidden: int
  layers: int

  def setup(self):
    self.encoder = MLP(self.hidden, self.layers, 2 * self.dim)
    self.decoder = MLP(self.hidden, self.layers, self.dim)
    self.log_gamma = self.param("log_gamma", nn.initializers.zeros, ())

  def decode(self, u):
    return self.decoder(u)

  def log_weights(self, x, key, k: int):
    """(k, n) log p(x, u) - log q(u | x) for k draws u ~ q(u | x); and the analytic ELBO
    (one draw's reconstruction term, KL in closed form) per code, for training."""
    mu, log_var = jnp.split(self.encoder(x), 2, -1)
    eps = jax.random.normal(key, (k,) + mu.shape, x.dtype)
    u = mu + jnp.exp(0.5 * log_var) * eps
    err = x - self.decoder(u)
    log_px = -0.5 * jnp.sum(err * err, -1) / jnp.exp(self.log_gamma) - 0.5 * self.dim * (
        _LOG_2PI + self.log_gamma)
    log_pu = -0.5 * jnp.sum(u * u + _LOG_2PI, -1)
    log_qu = -0.5 * jnp.sum(eps * eps + _LOG_2PI + log_var, -1)
    kl = 0.5 * jnp.sum(mu * mu + jnp.exp(log_var) - 1 - log_var, -1)
    return log_px + log_pu - log_qu, log_px[0] - kl

  def __call__(self, x, key, k: int = 1):
    """Mean over codes of (ELBO, importance-weighted bound with k draws)."""
    log_w, elbo = self.log_weights(x, key, k)
    return jnp.mean(elbo), jnp.mean(jax.nn.logsumexp(log_w, 0) - jnp.log(k))


@samplers.register("two_stage")
class TwoStage(samplers.Sampler):
  # Steps are checked every `every`; the best held-out ELBO's parameters are kept. (Sized on
  # 4,000 MNIST codes of d_z 8: the held-out ELBO peaked near 4,000 steps, then overfit.)
  settings = {"hidden": 128, "layers": 2, "steps": 4000, "every": 100, "batch": 256,
              "lr": 1e-3, "iw_samples": 64}

  @property
  def model(self):
    return SecondStage(self.z_dim, self.settings["hidden"], self.settings["layers"])

  def fit(self, codes, rng):
    mean, std, fit, heldout = samplers.standardised(codes, rng)
    model, cfg = self.model, self.settings
    key = jax.random.key(int(rng.integers(2**31 - 1)))
    params = model.init(key, fit[:1], key)
    opt = optax.adam(cfg["lr"])

    @jax.jit
    def chunk(params, opt_state, key):
      def step(carry, k):
        params, opt_state = carry
        pick, draw = jax.random.split(k)
        batch = fit[jax.random.randint(pick, (cfg["batch"],), 0, len(fit))]
        grads = jax.grad(lambda p: -model.apply(p, batch, draw)[0])(params)
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), None
      (params, opt_state), _ = jax.lax.scan(step, (params, opt_state),
                                            jax.random.split(key, cfg["every"]))
      return params, opt_state, model.apply(params, heldout, key)[0]

    opt_state = opt.init(params)
    best, curve = params, []
    best_elbo = float(model.apply(params, heldout, key)[0])
    for i in range(cfg["steps"] // cfg["every"]):
      params, opt_state, elbo = chunk(params, opt_state, jax.random.fold_in(key, i))
      curve.append(float(elbo))
      if curve[-1] > best_elbo:
        best, best_elbo = params, curve[-1]
    bound = float(jax.jit(lambda p: model.apply(p, heldout, key, cfg["iw_samples"])[1])(best))
    # The density of the codes themselves: the standardisation's log |det| taken off.
    shift = float(np.sum(np.log(std)))
    self.arrays = samplers.network_arrays(mean, std, best)
    self.summary = {"heldout_loglik": bound - shift, "heldout_elbo": best_elbo - shift,
                    "gamma": float(np.exp(best["params"]["log_gamma"])),
                    "heldout_curve": curve}

  def sample(self, n, key):
    params = samplers.network_params(self.arrays)
    prior, noise = jax.random.split(key)
    u = jax.random.normal(prior, (n, self.z_dim))
    x = jax.jit(lambda p, u: self.model.apply(p, u, method="decode"))(params, u)
    x = x + jnp.exp(0.5 * params["params"]["log_gamma"]) * jax.random.normal(noise, x.shape)
    return (np.asarray(x) * self.arrays["std"] + self.arrays["mean"]).astype(np.float32)
