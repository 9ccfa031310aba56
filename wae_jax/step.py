"""The training step: the WAE objective, reconstruction + lambda * penalty, as a pure function.

`train_step(state, batch, rng) -> (state, metrics)` once its static parts are bound, so it
can be jitted, sharded over the batch and vmapped over a pack of trials. The step's codes,
prior draws and input noise are drawn sharded like the batch, so a run on one device and
on eight compute the same numbers.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from wae_jax import data
from wae_jax import losses
from wae_jax import models
from wae_jax import regularisers
from wae_jax import state as state_lib


def train_step(state: state_lib.TrainState, batch: jax.Array, rng: jax.Array, *,
               c: ml_collections.ConfigDict, model: models.AutoEncoder,
               regulariser: regularisers.Regulariser, tx: optax.GradientTransformation,
               decay: optax.Schedule, pixels: data.Pixels, mesh: Mesh
               ) -> tuple[state_lib.TrainState, dict[str, jax.Array]]:
  """One auto-encoder step, then the regulariser's own step (if it has one).

  `c` supplies only what shapes the program; the numbers a sweep varies come from the state.
  `decay` is `tx`'s schedule of the base rate, for the `lr` metric.
  """
  hp = state.hparams
  x = pixels.to_float(batch)
  noise_rng, code_rng, prior_rng, penalty_rng = jax.random.split(rng, 4)
  rows = NamedSharding(mesh, P("data"))
  draw = lambda key, shape: jax.lax.with_sharding_constraint(jax.random.normal(key, shape), rows)
  prior = jnp.sqrt(hp["prior_var"]) * draw(prior_rng, (x.shape[0], c.z_dim))
  x_in = x
  if c.model.encoder == "deterministic" and c.model.input_noise > 0:
    x_in = x + c.model.input_noise * draw(noise_rng, x.shape)

  def loss_fn(params):
    (mean, log_var, z, x_hat), updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, x_in,
        draw(code_rng, (x.shape[0], c.z_dim)), train=True, mutable=["batch_stats"])
    recon = losses.reconstruction(x, x_hat, c.recon.cost, hp["recon_scale"],
                                  models.decoder_log_var(params))
    penalty = regulariser.penalty(regularisers.Codes(z, mean, log_var), prior, penalty_rng, hp,
                                  state.penalty_state)
    return recon + hp["lam"] * penalty, (recon, penalty, z, updates["batch_stats"])

  (loss, (recon, penalty, z, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  # The regulariser sees this batch's codes as the encoder produced them before its update,
  # which saves a second encoder pass.
  penalty_state, penalty_metrics = regulariser.update(state.penalty_state,
                                                      jax.lax.stop_gradient(z), prior, hp)
  lr = state.opt_state.hyperparams["learning_rate"] * decay(state.step)
  state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                        batch_stats=batch_stats, opt_state=opt_state,
                        penalty_state=penalty_state)
  return state, {"loss": loss, "recon": recon, regulariser.metric: penalty, **penalty_metrics,
                 "lr": lr, "grad_norm": optax.tree.norm(grads)}


def pretrain_encoder(c: ml_collections.ConfigDict, model: models.AutoEncoder,
                     state: state_lib.TrainState, batches, pixels: data.Pixels
                     ) -> tuple[state_lib.TrainState, int, float]:
  """Moves Q_Z's mean and covariance towards P_Z's until the loss is under `pretrain.tol`."""
  tx = optax.adam(c.optim.lr, b1=c.optim.b1, b2=c.optim.b2)

  @jax.jit
  def step(params, opt_state, batch_stats, batch):
    def loss_fn(enc_params):
      variables = {"params": {**params, "encoder": enc_params}, "batch_stats": batch_stats}
      (mean, _), updates = model.apply(variables, pixels.to_float(batch), train=True,
                                       method="encode", mutable=["batch_stats"])
      return losses.moment_matching(mean, c.prior_var), updates["batch_stats"]
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params["encoder"])
    updates, opt_state = tx.update(grads, opt_state)
    params = {**params, "encoder": optax.apply_updates(params["encoder"], updates)}
    return params, opt_state, batch_stats, loss

  params, batch_stats = state.params, state.batch_stats
  opt_state = tx.init(params["encoder"])
  loss, i = float("inf"), 0
  for i, batch in zip(range(1, c.pretrain.max_steps + 1), batches):
    params, opt_state, batch_stats, loss = step(params, opt_state, batch_stats, batch)
    if (loss := float(loss)) < c.pretrain.tol:
      break
  return state.replace(params=params, batch_stats=batch_stats), i, loss
