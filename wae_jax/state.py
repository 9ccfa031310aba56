"""The train state, its optimizer and initialisation, and its checkpoints.

Everything a training step reads and writes lives in one `TrainState`, including the
trial's continuous hyperparameters (`hparams`, and the learning rates inside the optimizer
states, injected the optax way). One compiled step therefore serves every trial that
differs only in those numbers, and `jax.vmap` over a stack of states trains several such
trials at once (see `pack.py`).
"""

from __future__ import annotations

import functools
from typing import Any

from absl import logging
from etils import epath
import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import errors
from wae_jax import models
from wae_jax import noise
from wae_jax import regularisers
from wae_jax import workdir as workdir_lib

# Per-trial hyperparameters the objective reads from the state, by the config field they
# come from. The learning rates live in the optimizer states (`optimizer`).
HPARAMS = {"lam": "lam", "prior_var": "prior_var", "recon_scale": "recon.scale"}


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  hparams: dict[str, jax.Array]
  params: Any  # {"encoder": ..., "decoder": ...}
  batch_stats: Any
  opt_state: optax.InjectHyperparamsState
  penalty_state: Any = None  # A regulariser's own state (WAE-GAN: its adversary).

  @property
  def variables(self) -> dict[str, Any]:
    """The auto-encoder's flax variables."""
    return {"params": self.params, "batch_stats": self.batch_stats}


def trial_values(c: ml_collections.ConfigDict, regulariser: regularisers.Regulariser
                 ) -> dict[str, jax.Array]:
  """The per-trial numbers `init_state` writes into the state, by config field.

  They are arguments of the compiled init rather than constants in it, so one compilation
  serves every trial of a pack (an init of random draws takes seconds to compile on CPU).
  """
  fields = ("optim.lr", *HPARAMS.values(), *regulariser.per_trial)
  return {f: jnp.asarray(config_lib.get(c, f), jnp.float32) for f in fields}


def learning_rate(base: float, c: ml_collections.ConfigDict, steps_per_epoch: int):
  """The paper's piecewise-constant decay, as its public code applies it: the rate is divided
  by each factor in turn (by 2 at epoch 30, by 5 more at 50, by 10 more at 100: base/2,
  base/10, base/100), which is how optax multiplies its scales."""
  return optax.piecewise_constant_schedule(base, {
      int(epoch * steps_per_epoch): 1.0 / factor
      for epoch, factor in zip(c.optim.decay_epochs, c.optim.decay_factors)})


def optimizer(c: ml_collections.ConfigDict, steps_per_epoch: int, lr: float
              ) -> optax.GradientTransformation:
  """Adam (the paper's beta1 = 0.5) along the decay schedule, from base rate `lr`.

  The base rate is injected into the optimizer state, so trials with different rates share
  one transformation (and one compiled step): the update reads each trial's own.
  """
  decay = learning_rate(1.0, c, steps_per_epoch)

  @optax.inject_hyperparams
  def adam(learning_rate):  # pylint: disable=redefined-outer-name
    return optax.adam(lambda count: learning_rate * decay(count), b1=c.optim.b1, b2=c.optim.b2)

  return adam(learning_rate=lr)


def init_state(c: ml_collections.ConfigDict, model: models.AutoEncoder,
               regulariser: regularisers.Regulariser, image_shape, steps_per_epoch: int,
               rng: jax.Array, values: dict[str, jax.Array]) -> TrainState:
  """A fresh state; `values` are the trial's numbers (`trial_values`)."""
  model_rng, penalty_rng = jax.random.split(rng)
  x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  variables = model.init(model_rng, x, jnp.zeros((1, c.z_dim)), train=False)
  params = variables["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32), hparams={k: values[f] for k, f in HPARAMS.items()},
      params=params, batch_stats=variables["batch_stats"],
      opt_state=optimizer(c, steps_per_epoch, values["optim.lr"]).init(params),
      penalty_state=regulariser.init(penalty_rng, values))


def trial_keys(c: ml_collections.ConfigDict) -> jax.Array:
  """The trial's training and evaluation keys: functions of its seed alone."""
  return jax.random.split(jax.random.key(c.seed))


# Jitted: op by op, each leaf's stack or slice would be a program of its own to compile.
@jax.jit
def stack(states: list[TrainState]) -> TrainState:
  return jax.tree.map(lambda *a: jnp.stack(a), *states)


@jax.jit
def unstack(states: TrainState, k: int) -> TrainState:
  return jax.tree.map(lambda a: a[k], states)


# ------------------------------------------------------------------------------------------
# Checkpoints.


# Orbax saves a replicated array in slices, one a replica, so that hosts share the writing;
# each slice shape is a program of its own to compile, at every trainer's first save (a
# 72-leaf replicated tree on 8 CPU devices: 4.7 s, against 0.15 s saved whole). Below this
# many bytes a slice saves no writing worth that. The paper net's largest kernel (32 MiB)
# still splits over 8 replicas.
MIN_REPLICA_SLICE_BYTES = 4 << 20


@functools.cache
def _use_min_replica_slice() -> None:
  """Orbax reads its array handler from a process-wide registry only: set it once. The
  override is ours and intended, so orbax's warning about it is dropped (that one only)."""
  def ours(record):
    return not record.getMessage().startswith('Type handler registry type "<class \'jax')
  logging.get_absl_logger().addFilter(ours)
  try:
    ocp.type_handlers.register_type_handler(jax.Array, ocp.type_handlers.ArrayHandler(
        min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES), override=True)
  finally:
    logging.get_absl_logger().removeFilter(ours)


def checkpoint_manager(workdir: epath.PathLike, c: ml_collections.ConfigDict,
                       create: bool = False) -> ocp.CheckpointManager:
  _use_min_replica_slice()
  return ocp.CheckpointManager(
      (epath.Path(workdir) / workdir_lib.CHECKPOINTS).absolute(),
      options=ocp.CheckpointManagerOptions(max_to_keep=c.keep_ckpts, create=create),
      item_handlers=ocp.StandardCheckpointHandler())


def abstract_state(c: ml_collections.ConfigDict, ds: data.Dataset, mesh: Mesh) -> TrainState:
  """The shapes, dtypes and (replicated) shardings of the trial's state; nothing computed."""
  steps_per_epoch = ds.steps_per_epoch(c.batch_size)
  model = models.build(c, ds.image_shape, ds.symmetric)
  regulariser = regularisers.build(c, mesh, functools.partial(optimizer, c, steps_per_epoch))
  shapes = jax.eval_shape(functools.partial(init_state, c, model, regulariser, ds.image_shape,
                                            steps_per_epoch), jax.random.key(c.seed),
                          trial_values(c, regulariser))
  replicated = NamedSharding(mesh, P())
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                      shapes)


def restore_latest(manager: ocp.CheckpointManager, target: TrainState,
                   workdir: epath.PathLike) -> tuple[TrainState | None, int]:
  """The newest checkpoint that restores, and its step; (None, 0) when none does.

  One that fails (truncated or missing files after a crash) is moved to the trial's
  `aside/`, kept for a look, with one line logged; the next older one is tried.
  """
  noise.quiet()  # Before: a failing read's noise can come before its exception.
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      return restore(manager, step, target), step
    except Exception as e:  # pylint: disable=broad-except  # Orbax and TensorStore raise many.
      where = None
      if jax.process_index() == 0:
        where = workdir_lib.move_aside(workdir, f"checkpoint-{step}",
                                       [f"{workdir_lib.CHECKPOINTS}/{step}"])
      manager.reload()
      logging.warning("The checkpoint at step %d of %s does not restore (%s: %s); moved to %s, "
                      "trying the one before.", step, workdir, type(e).__name__,
                      errors.first_line(e)[:200], where)
  return None, 0


def restore(manager: ocp.CheckpointManager, step: int, target: TrainState) -> TrainState:
  """The state saved at `step`, laid out as `target` (a state or `abstract_state`).

  Checkpoints written before the learning rates moved into the optimizer state (and the
  adversary into `penalty_state`) are read in their own layout and converted.
  """
  if "adv_params" not in manager.item_metadata(step):
    return manager.restore(step, args=ocp.args.StandardRestore(target))
  return _from_legacy(manager.restore(step, args=ocp.args.StandardRestore(_legacy(target))),
                      target)


def _legacy(s: TrainState) -> dict[str, Any]:
  """`s` in the layout of the first checkpoints: base rates among the hyperparameters."""
  lr = lambda opt: opt.hyperparams["learning_rate"]
  penalty = s.penalty_state or {}
  return {"step": s.step, "params": s.params, "batch_stats": s.batch_stats,
          "opt_state": s.opt_state.inner_state,
          "hparams": {**s.hparams, "lr": lr(s.opt_state),
                      "adv_lr": lr(penalty["opt_state"]) if penalty else lr(s.opt_state)},
          "adv_params": penalty.get("params"),
          "adv_opt_state": penalty["opt_state"].inner_state if penalty else None}


def _from_legacy(t: dict[str, Any], target: TrainState) -> TrainState:
  """`t` converted, its optimizer states of the class (and empty schedule states) the
  target's optax makes: a compiled loop's carry must keep one structure."""
  def opt(inner, lr):
    return target.opt_state._replace(count=t["step"], hyperparams={"learning_rate": lr},
                                     inner_state=inner)
  hparams = dict(t["hparams"])
  lr, adv_lr = hparams.pop("lr"), hparams.pop("adv_lr")
  penalty = None
  if t["adv_params"] is not None:
    penalty = {"params": t["adv_params"], "opt_state": opt(t["adv_opt_state"], adv_lr)}
  return TrainState(step=t["step"], hparams=hparams, params=t["params"],
                    batch_stats=t["batch_stats"], opt_state=opt(t["opt_state"], lr),
                    penalty_state=penalty)
