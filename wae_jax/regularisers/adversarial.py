"""WAE-GAN: an adversary in the latent space tells codes from prior draws.

The encoder's penalty is the non-saturating BCE(D(z), 1); the adversary, this regulariser's
own state, then takes one step on BCE(D(prior), 1) + BCE(D(z), 0), weighted by lambda as in
the public code, on the same batch's codes.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from wae_jax import config as config_lib
from wae_jax import models
from wae_jax import regularisers


def prior_log_density(z, prior_var):
  """log N(z; 0, prior_var I) per row: the "p-trick" adds it to the adversary's logit."""
  d = z.shape[-1]
  return -0.5 * jnp.sum(z * z, axis=-1) / prior_var - 0.5 * d * jnp.log(2 * np.pi * prior_var)


def adversary_loss(logits_prior, logits_codes):
  """BCE(D(z_prior), 1) + BCE(D(z_code), 0): the adversary learns to tell P_Z from Q_Z."""
  # BCE(l, 1) = softplus(-l) and BCE(l, 0) = softplus(l), stable for any logit.
  return jnp.mean(jax.nn.softplus(-logits_prior)) + jnp.mean(jax.nn.softplus(logits_codes))


def encoder_penalty(logits_codes):
  """BCE(D(z_code), 1): codes should look like prior draws to the adversary."""
  return jnp.mean(jax.nn.softplus(-logits_codes))


@regularisers.register("wae_gan")
class Adversarial(regularisers.Regulariser):
  metric = "gan_penalty"
  per_trial = ("gan.lr",)
  section = "gan"

  @classmethod
  def defaults(cls):
    s = ml_collections.ConfigDict()
    s.lr = 5e-4  # The public code's MNIST adversary: rate 5e-4, 4 layers of 512.
    s.layers = 4
    s.units = 512
    s.p_trick = False
    return s

  @classmethod
  def validate(cls, c):
    config_lib.number(c, "gan.lr", 0, above=True)
    for field in ("gan.layers", "gan.units"):
      config_lib.integer(c, field, 1)

  def __init__(self, c, mesh, optimizer):
    super().__init__(c, mesh, optimizer)
    self.net = models.Adversary(layers=c.gan.layers, units=c.gan.units,
                                init_std=c.model.init_std)

  def _logits(self, params, z, prior_var):
    logits = self.net.apply({"params": params}, z)
    if self.c.gan.p_trick:
      logits = logits + prior_log_density(z, prior_var)
    return logits

  def init(self, rng, values):
    params = self.net.init(rng, jnp.zeros((1, self.c.z_dim)))["params"]
    return {"params": params, "opt_state": self.optimizer(values["gan.lr"]).init(params)}

  def penalty(self, codes, prior, rng, hparams, state):
    del prior, rng
    return encoder_penalty(self._logits(state["params"], codes.z, hparams["prior_var"]))

  def update(self, state, z, prior, hparams):
    def loss_fn(params):
      logits = lambda x: self._logits(params, x, hparams["prior_var"])
      return hparams["lam"] * adversary_loss(logits(prior), logits(z))
    loss, grads = jax.value_and_grad(loss_fn)(state["params"])
    # The rate in the transformation is a placeholder: the state's injected rate applies.
    updates, opt_state = self.optimizer(self.c.gan.lr).update(grads, state["opt_state"],
                                                               state["params"])
    return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}, {"adv_loss": loss}
