"""Packing: trials that share their shapes train as one program, N steps a dispatch.

Each trial keeps its own seed (initialisation, rngs, data order), hyperparameters,
checkpoints and metrics, exactly as if it had run alone: its continuous hyperparameters live
in its state (`state.py`), so the K states stack on a leading axis and one compiled step
trains them all (vmapped; K = 1 is an ordinary run, unvmapped). `benchmarks/packing.py`
measures what that buys.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable

import jax
import jax.numpy as jnp
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
  """The config fields that trials must share to train as one program."""
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
  # The init runs once a trial, and LLVM's full optimisation of its random draws takes 15 s
  # to compile on CPU for the smallest net; at level 0 it takes 2.5 s (values differ by an
  # ulp at most, and are the same at every device count).
  init_fn = jax.jit(functools.partial(state_lib.init_state, c, model, regulariser,
                                      ds.image_shape, steps_per_epoch),
                    out_shardings=replicated,
                    compiler_options={"xla_backend_optimization_level": 0})

  def init(ck: ml_collections.ConfigDict) -> state_lib.TrainState:
    return init_fn(jax.random.key(ck.seed), state_lib.trial_values(ck, regulariser))

  step = functools.partial(step_lib.train_step, c=c, model=model, regulariser=regulariser,
                           tx=optimizer(c.optim.lr),
                           decay=state_lib.learning_rate(1.0, c, steps_per_epoch),
                           pixels=ds.pixels, mesh=mesh)
  return model, step, init


def setup(configs: list[ml_collections.ConfigDict], ds: data.Dataset, mesh: Mesh
          ) -> tuple[models.AutoEncoder, state_lib.TrainState, Callable]:
  """The model, the trials' initial states stacked on a leading axis, and the jitted loop.

  The loop is `(states, feed, keys, count) -> (states, metrics)`: `count` (at most the
  config's steps_per_dispatch, N) steps of all K trials in one dispatch, their batches from
  `feed` (`feed.py`), each trial's step rng `fold_in(keys[k], step)`, and every step's
  metrics in row i of (N, K) arrays. For N > 1 it is a while loop, so a shorter count
  reuses the program. N = 1 is the step alone, without a loop: what `model.conv_impl=xla`
  wants on a CPU, where XLA runs its own convolutions single-threaded inside a loop body.
  """
  key = (json.dumps(signature(configs[0]), sort_keys=True), len(configs), mesh)
  if key not in _PROGRAMS:
    while len(_PROGRAMS) >= _KEPT:
      _PROGRAMS.pop(next(iter(_PROGRAMS)))
    _PROGRAMS[key] = _programs(configs, ds, mesh)
  model, init, run_fn = _PROGRAMS[key]
  return model, state_lib.stack([init(ck) for ck in configs]), run_fn


# A process that trains trial after trial (a warm sweep worker) keeps the programs of the
# last few signatures: they are the same for every trial of a signature, as a pack's are for
# its members, so the next trial neither traces nor loads them again.
_PROGRAMS: dict[tuple[Any, ...], tuple[models.AutoEncoder, Callable, Callable]] = {}
_KEPT = 4


def _programs(configs: list[ml_collections.ConfigDict], ds: data.Dataset, mesh: Mesh
              ) -> tuple[models.AutoEncoder, Callable, Callable]:
  """`setup`'s model, `init` and jitted loop, for trials of `configs[0]`'s signature."""
  model, step, init = single(configs[0], ds, mesh)
  replicated = NamedSharding(mesh, P())
  batch_rows = NamedSharding(mesh, P(None, "data"))

  def packed_step(states, batches, keys):
    rngs = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, states.step[0])
    batches = jax.lax.with_sharding_constraint(batches, batch_rows)
    if len(configs) == 1:  # A vmap of one still makes grouped convolutions, slow on XLA:CPU.
      first = lambda tree: jax.tree.map(lambda a: a[0], tree)
      return jax.tree.map(lambda a: a[None], step(first(states), batches[0], rngs[0]))
    return jax.vmap(step)(states, batches, rngs)

  def run(states, feed, keys, count):
    if feed.steps == 1:
      states, metrics = packed_step(states, feed.batches(0), keys)
      return states, jax.tree.map(lambda m: m[None], metrics)
    shapes = jax.eval_shape(packed_step, states, feed.batches(0), keys)[1]
    rows = jax.tree.map(lambda m: jnp.zeros((feed.steps,) + m.shape, m.dtype), shapes)

    def body(i, carry):
      states, rows = carry
      states, metrics = packed_step(states, feed.batches(i), keys)
      return states, jax.tree.map(lambda r, m: r.at[i].set(m), rows, metrics)

    return jax.lax.fori_loop(0, count, body, (states, rows))

  return model, init, jax.jit(run, donate_argnums=0, out_shardings=(replicated, replicated))
