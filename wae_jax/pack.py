"""Packing: trials that share their shapes train as one program, vmapped over the trials.

Each trial keeps its own seed (initialisation, rngs, data order), hyperparameters,
checkpoints and metrics, exactly as if it had run alone: its continuous hyperparameters live
in its state (`state.py`), so the K states stack on a leading axis and one compiled step
trains them all. K = 1 is an ordinary run.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import ml_collections
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import models
from wae_jax import regularisers
from wae_jax import state as state_lib
from wae_jax import step as step_lib

# Fields that may differ between the trials of one pack; all others shape the program.
PER_TRIAL = {"seed", "num_steps", "log_every", "ckpt_every", "eval_every", "keep_ckpts",
             "optim.lr", *state_lib.HPARAMS.values()}


def signature(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config fields that trials must share to train as one vmapped program."""
  own = {*PER_TRIAL, *regularisers.get(c.algo).per_trial}
  return {k: v for k, v in config_lib.flatten(c).items()
          if k not in own and not k.startswith("eval.")}


def check(configs: list[ml_collections.ConfigDict]) -> None:
  """Raises ConfigError naming the first field on which the trials disagree."""
  first = signature(configs[0])
  for c in configs[1:]:
    for field, value in signature(c).items():
      if first.get(field) != value:
        raise config_lib.ConfigError(f"config.{field}: trials in one pack must agree "
                                     f"({first.get(field)!r} vs {value!r})")


def single(c: ml_collections.ConfigDict, ds: data.Dataset, mesh: Mesh
           ) -> tuple[models.AutoEncoder, Callable, Callable]:
  """The model, one trial's step `(state, batch, rng) -> (state, metrics)` (unjitted), and
  `init(config) -> state` for any trial sharing `c`'s shapes."""
  steps_per_epoch = ds.steps_per_epoch(c.batch_size)
  model = models.build(c, ds.image_shape, ds.symmetric)
  optimizer = functools.partial(state_lib.optimizer, c, steps_per_epoch)
  regulariser = regularisers.build(c, mesh, optimizer)
  replicated = NamedSharding(mesh, P())
  init_fn = jax.jit(functools.partial(state_lib.init_state, c, model, regulariser,
                                      ds.image_shape, steps_per_epoch),
                    out_shardings=replicated)

  def init(ck: ml_collections.ConfigDict) -> state_lib.TrainState:
    return init_fn(jax.random.key(ck.seed), state_lib.trial_values(ck, regulariser))

  step = functools.partial(step_lib.train_step, c=c, model=model, regulariser=regulariser,
                           tx=optimizer(c.optim.lr), pixels=ds.pixels, mesh=mesh)
  return model, step, init


def setup(configs: list[ml_collections.ConfigDict], ds: data.Dataset, mesh: Mesh
          ) -> tuple[models.AutoEncoder, state_lib.TrainState, Callable]:
  """The model, the trials' initial states stacked on a leading axis, and the jitted step.

  The step is `(states, batches, keys) -> (states, metrics)` with batches of shape
  (K, batch, H, W, C) sharded on the batch axis, and each trial's step rng
  `fold_in(keys[k], step)`.
  """
  model, step, init = single(configs[0], ds, mesh)
  replicated = NamedSharding(mesh, P())

  def packed_step(states, batches, keys):
    rngs = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, states.step[0])
    return jax.vmap(step)(states, batches, rngs)

  step_fn = jax.jit(packed_step, donate_argnums=0,
                    in_shardings=(replicated, NamedSharding(mesh, P(None, "data")), replicated),
                    out_shardings=(replicated, replicated))
  return model, state_lib.stack([init(ck) for ck in configs]), step_fn
