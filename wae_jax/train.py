r"""Trains a WAE-MMD, WAE-GAN or VAE, sharded over every device; the `wae-train` command.

  wae-train --config=mnist_wae_mmd:debug --workdir=/tmp/wae [--config.lam=5 ...]

The training step is a pure function `(state, batch, rng) -> (state, metrics)`, jitted with
the batch sharded over a 1-D `data` mesh of all devices and the state replicated, so the
same program runs on a laptop CPU and on the 8 cores of a TPU host (or a multi-host slice).
The step's rng is `fold_in(seed, step)` and its batch a function of (seed, step), so a run
resumed from a checkpoint retraces the uninterrupted one exactly.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF is only here for TensorBoard files.

import dataclasses  # pylint: disable=g-import-not-at-top,wrong-import-position
import functools
import signal
import sys
import time
from typing import Any

from absl import app
from absl import flags
from absl import logging
from clu import metric_writers
from clu import periodic_actions
from etils import epath
import flax
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import evaluate
from wae_jax import losses
from wae_jax import mmd
from wae_jax import models
from wae_jax import sliced
from wae_jax import workdir as workdir_lib

PENALTY = {"wae_mmd": "mmd", "wae_gan": "gan_penalty", "wae_sw": "sw", "vae": "kl"}
# Per-trial hyperparameters carried in the train state as float32 arrays.
HPARAMS = {"lam": "lam", "prior_var": "prior_var", "recon_scale": "recon.scale",
           "lr": "optim.lr", "adv_lr": "gan.lr"}


def hparams_of(c: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  return {k: jnp.asarray(config_lib.get(c, field), jnp.float32) for k, field in HPARAMS.items()}


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes.

  `hparams` holds the trial's continuous hyperparameters as arrays (see HPARAMS), so one
  compiled step serves trials that differ only in them, and `jax.vmap` over a stack of
  states trains several such trials at once.
  """
  step: jax.Array
  hparams: dict[str, jax.Array]
  params: Any  # {"encoder": ..., "decoder": ...}
  batch_stats: Any
  opt_state: Any
  adv_params: Any = None  # The latent adversary (WAE-GAN only).
  adv_opt_state: Any = None


@dataclasses.dataclass(frozen=True)
class Result:
  state: TrainState
  status: str  # "done" | "diverged" | "running" (stopped by a signal; resumable)
  metrics: dict[str, float]  # Held-out metrics of the last evaluation.
  history: dict[int, dict[str, float]]  # Train metrics written at each log step of this run.


def learning_rate(base: float, c: ml_collections.ConfigDict, steps_per_epoch: int):
  """The paper's piecewise-constant decay: base / factor[i] from epoch decay_epochs[i] on."""
  scales, previous = {}, 1.0
  for epoch, factor in zip(c.optim.decay_epochs, c.optim.decay_factors):
    scales[int(epoch * steps_per_epoch)] = previous / factor
    previous = factor
  return optax.piecewise_constant_schedule(base, scales)


def optimizer(c: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
  """Adam (beta1 = 0.5) descending along the decay schedule; times the state's base rate.

  The base rates (auto-encoder and adversary) are multiplied in by the step, from
  `state.hparams`, so they can differ between trials that share this transformation.
  """
  return optax.chain(optax.scale_by_adam(b1=c.optim.b1, b2=c.optim.b2),
                     optax.scale_by_schedule(learning_rate(-1.0, c, steps_per_epoch)))


def _apply(tx, grads, opt_state, params, lr):
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, jax.tree.map(lambda u: lr * u, updates)), opt_state


def init_state(c, model, adversary, tx, image_shape, rng) -> TrainState:
  model_rng, adv_rng = jax.random.split(rng)
  x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  variables = model.init(model_rng, x, jnp.zeros((1, c.z_dim)), train=False)
  params = variables["params"]
  adv_params = adv_opt_state = None
  if adversary is not None:
    adv_params = adversary.init(adv_rng, jnp.zeros((1, c.z_dim)))["params"]
    adv_opt_state = tx.init(adv_params)
  return TrainState(step=jnp.zeros((), jnp.int32), hparams=hparams_of(c), params=params,
                    batch_stats=variables["batch_stats"], opt_state=tx.init(params),
                    adv_params=adv_params, adv_opt_state=adv_opt_state)


def adversary_logits(c, adversary, params, z, prior_var):
  logits = adversary.apply({"params": params}, z)
  if c.gan.p_trick:
    logits = logits + losses.prior_log_density(z, prior_var)
  return logits


def train_step(state: TrainState, batch: jax.Array, rng: jax.Array, *, c, model, adversary,
               tx, mesh, symmetric) -> tuple[TrainState, dict[str, jax.Array]]:
  """One auto-encoder step then (WAE-GAN) one adversary step on the same batch.

  `c` supplies only what shapes the program (algorithm, kernel, nets); the numbers a sweep
  varies come from `state.hparams`.
  """
  hp = state.hparams
  x = data.to_float(batch, symmetric)
  noise_rng, code_rng, prior_rng, sw_rng = jax.random.split(rng, 4)
  rows = NamedSharding(mesh, P("data"))
  draw = lambda key, shape: jax.lax.with_sharding_constraint(jax.random.normal(key, shape), rows)
  z_prior = jnp.sqrt(hp["prior_var"]) * draw(prior_rng, (x.shape[0], c.z_dim))
  x_in = x
  if c.model.encoder == "deterministic" and c.model.input_noise > 0:
    x_in = x + c.model.input_noise * draw(noise_rng, x.shape)

  def loss_fn(params):
    (mean, log_var, z, x_hat), updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, x_in,
        draw(code_rng, (x.shape[0], c.z_dim)), train=True, mutable=["batch_stats"])
    recon = losses.reconstruction(x, x_hat, c.recon.cost, hp["recon_scale"])
    if c.algo == "wae_mmd":
      # k(a, b) with width C equals k(a / sqrt(C), b / sqrt(C)) with width 1, which keeps the
      # kernel static while C = 2 d_z sigma_z^2 varies per trial.
      unit = jax.lax.rsqrt(2.0 * c.z_dim * hp["prior_var"])
      penalty = mmd.mmd_sharded(z * unit, z_prior * unit, mesh=mesh, kernel=c.mmd.kernel,
                                c=1.0, scales=tuple(c.mmd.scales), block_size=c.mmd.block_size)
    elif c.algo == "wae_sw":
      penalty = sliced.sliced_wasserstein_sharded(z, z_prior, sw_rng, mesh=mesh,
                                                  num_projections=c.sw.num_projections, p=c.sw.p)
    elif c.algo == "wae_gan":
      penalty = losses.encoder_gan_penalty(
          adversary_logits(c, adversary, state.adv_params, z, hp["prior_var"]))
    else:
      penalty = losses.kl_to_prior(mean, log_var, hp["prior_var"])
    return recon + hp["lam"] * penalty, (recon, penalty, z, updates["batch_stats"])

  (loss, (recon, penalty, z, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  params, opt_state = _apply(tx, grads, state.opt_state, state.params, hp["lr"])
  state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                        opt_state=opt_state)
  metrics = {"loss": loss, "recon": recon, PENALTY[c.algo]: penalty}
  if adversary is not None:
    # The adversary sees this batch's codes as the encoder produced them before its update,
    # which saves a second encoder pass.
    z = jax.lax.stop_gradient(z)
    logits = lambda p, z_: adversary_logits(c, adversary, p, z_, hp["prior_var"])
    adv_loss_fn = lambda p: hp["lam"] * losses.adversary_loss(logits(p, z_prior), logits(p, z))
    adv_loss, adv_grads = jax.value_and_grad(adv_loss_fn)(state.adv_params)
    adv_params, adv_opt_state = _apply(tx, adv_grads, state.adv_opt_state, state.adv_params,
                                       hp["adv_lr"])
    state = state.replace(adv_params=adv_params, adv_opt_state=adv_opt_state)
    metrics["adv_loss"] = adv_loss
  return state, metrics


def pretrain_encoder(c, model, state, batches, symmetric) -> tuple[TrainState, int, float]:
  """Moves Q_Z's mean and covariance towards P_Z's until the loss is under `pretrain.tol`."""
  tx = optax.adam(c.optim.lr, b1=c.optim.b1, b2=c.optim.b2)

  @jax.jit
  def step(params, opt_state, batch_stats, batch):
    def loss_fn(enc_params):
      variables = {"params": {**params, "encoder": enc_params}, "batch_stats": batch_stats}
      (mean, _), updates = model.apply(variables, data.to_float(batch, symmetric), train=True,
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


class _Preemption:
  """Turns SIGTERM (TPU preemption) and SIGINT into a request to checkpoint and stop."""

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    logging.warning("Received %s: saving a checkpoint and stopping.", signal.Signals(signum).name)
    self.requested = True

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _mean_metrics(history: list[dict[str, np.ndarray]]) -> tuple[dict[str, float], int | None]:
  """Averages per-step metrics; also returns the index of the first non-finite loss, if any."""
  losses_ = np.array([m["loss"] for m in history])
  bad = np.flatnonzero(~np.isfinite(losses_))
  means = {k: float(np.mean([m[k] for m in history])) for k in history[0]}
  return means, (int(bad[0]) if len(bad) else None)


# Fields that may differ between the trials of one pack; all others shape the program.
PER_TRIAL = {"seed", "num_steps", "log_every", "ckpt_every", "eval_every", "keep_ckpts",
             *HPARAMS.values()}


def signature(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config fields that trials must share to train as one vmapped program."""
  return {k: v for k, v in config_lib.flatten(c).items()
          if k not in PER_TRIAL and not k.startswith("eval.")}


def setup(configs: list[ml_collections.ConfigDict], image_shape, symmetric: bool,
          steps_per_epoch: int, mesh: Mesh) -> tuple[models.AutoEncoder, TrainState, Any]:
  """The model, the trials' initial states stacked on a leading axis, and the jitted step.

  The step is `train_step` vmapped over that axis: `(states, batches, keys) -> (states,
  metrics)` with batches of shape (K, batch, H, W, C) sharded on the batch axis, and each
  trial's step rng `fold_in(keys[k], step)`. K = 1 is an ordinary run.
  """
  c = configs[0]
  model, adversary = models.build(c, image_shape, symmetric)
  tx = optimizer(c, steps_per_epoch)
  replicated = NamedSharding(mesh, P())
  states = [jax.jit(functools.partial(init_state, ck, model, adversary, tx, image_shape),
                    out_shardings=replicated)(jax.random.key(ck.seed)) for ck in configs]
  step = functools.partial(train_step, c=c, model=model, adversary=adversary, tx=tx, mesh=mesh,
                           symmetric=symmetric)

  def packed_step(states, batches, keys):
    rngs = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, states.step[0])
    return jax.vmap(step)(states, batches, rngs)

  step_fn = jax.jit(packed_step, donate_argnums=0,
                    in_shardings=(replicated, NamedSharding(mesh, P(None, "data")), replicated),
                    out_shardings=(replicated, replicated))
  return model, stack(states), step_fn


def stack(states: list[TrainState]) -> TrainState:
  return jax.tree.map(lambda *a: jnp.stack(a), *states)


def unstack(states: TrainState, k: int) -> TrainState:
  return jax.tree.map(lambda a: a[k], states)


def trial_keys(c: ml_collections.ConfigDict) -> jax.Array:
  """The trial's training and evaluation keys: functions of its seed alone."""
  return jax.random.split(jax.random.key(c.seed))


def checkpoint_manager(workdir: epath.PathLike, c: ml_collections.ConfigDict,
                       create: bool = False) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      (epath.Path(workdir) / workdir_lib.CHECKPOINTS).absolute(),
      options=ocp.CheckpointManagerOptions(max_to_keep=c.keep_ckpts, create=create))


def restore(manager: ocp.CheckpointManager, step: int, c: ml_collections.ConfigDict,
            ds: data.Dataset, mesh: Mesh) -> tuple[models.AutoEncoder, TrainState]:
  """The model and the single-trial state saved at `step`, replicated over `mesh`.

  The target is the abstract state `init_state` would make: nothing is initialised.
  """
  model, adversary = models.build(c, ds.image_shape, ds.symmetric)
  tx = optimizer(c, len(ds.train.images) // c.batch_size)
  replicated = NamedSharding(mesh, P())
  abstract = jax.eval_shape(functools.partial(init_state, c, model, adversary, tx,
                                              ds.image_shape), jax.random.key(c.seed))
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                          abstract)
  return model, manager.restore(step, args=ocp.args.StandardRestore(abstract))


class _Trial:
  """One trial's directory, writers and checkpoints, and its progress through the loop."""

  def __init__(self, c: ml_collections.ConfigDict, workdir: str):
    self.c, self.workdir = c, epath.Path(workdir)
    self.lead = jax.process_index() == 0
    self.started = time.time()
    self.flat = config_lib.flatten(c)
    self.previous = workdir_lib.read_metrics(self.workdir)  # Every host reads it: all agree.
    self.status, self.history, self.pending = "running", {}, []
    self.metrics = (self.previous or {}).get("metrics", {})
    self.extra = {k: v for k, v in (self.previous or {}).items() if k in workdir_lib.EVAL_FIELDS}

  @property
  def finished(self) -> bool:
    p = self.previous
    return bool(p) and p["status"] in workdir_lib.FINAL and p["step"] >= self.c.num_steps

  def open(self) -> None:
    self.ckpt = checkpoint_manager(self.workdir, self.c, create=True)
    self.start = self.ckpt.latest_step() or 0
    if self.lead:
      workdir_lib.write_json(self.workdir / workdir_lib.CONFIG, self.c.to_dict())
    # Only the lead host writes TensorBoard files and progress lines.
    self.writer = (metric_writers.create_default_writer(self.workdir) if self.lead
                   else metric_writers.MultiWriter([]))
    if self.start == 0:
      self.writer.write_hparams({k: str(v) if isinstance(v, list) else v
                                 for k, v in self.flat.items()})
    self.progress = periodic_actions.ReportProgress(
        num_train_steps=self.c.num_steps, writer=self.writer, every_steps=self.c.log_every)

  def write_status(self, status: str, step: int, error: str | None = None) -> None:
    if self.lead:
      workdir_lib.write_metrics(
          self.workdir, status=status, step=step, num_steps=self.c.num_steps,
          wall_s=time.time() - self.started + (self.previous or {}).get("wall_s", 0),
          metrics=self.metrics, config=self.flat, error=error, extra=self.extra)

  def after_step(self, step: int, metrics: dict[str, np.ndarray], stopping: bool) -> bool:
    """Logs (and checks for divergence); returns False once this trial has diverged."""
    self.pending.append(metrics)
    if step % self.c.log_every and step != self.c.num_steps and not stopping:
      return True
    means, bad = _mean_metrics(self.pending)
    first, self.pending = step - len(self.pending) + 1, []
    if bad is not None:
      bad_step = first + bad
      self.status = "diverged"
      error = f"loss became {means['loss']} at step {bad_step}"
      logging.error("%s diverged: %s.", self.workdir, error)
      self.write_status("diverged", bad_step, error)
      return False
    self.history[step] = means
    self.writer.write_scalars(step, {f"train/{k}": v for k, v in means.items()})
    return True

  def evaluate(self, step: int, evaluator, state, ds, rng) -> None:
    self.metrics, images, _ = evaluator(evaluate.variables_of(state), ds, rng, self.c)
    self.extra = {}
    self.writer.write_scalars(step, {f"eval/{k}": v for k, v in self.metrics.items()})
    self.writer.write_images(step, {k: v[None] for k, v in images.items()})
    if self.lead:
      for name, grid in images.items():
        evaluate.save_png(os.fspath(self.workdir / f"{name}.png"), grid)
    logging.info("Evaluation of %s at step %d: %s", self.workdir, step,
                 ", ".join(f"{k}={v:.4g}" for k, v in self.metrics.items()))

  def evaluate_fid(self, evaluator, state, ds, rng, inception_params) -> None:
    """What `wae-eval` computes, on the final state (`eval.final_fid`)."""
    self.metrics, self.extra = evaluate.final_metrics(
        self.c, evaluate.variables_of(state), ds, evaluator, rng,
        num_samples=self.c.eval.fid_num_samples, cache_dir=self.c.eval.cache_dir,
        inception_params=inception_params)

  def close(self, step: int) -> None:
    self.ckpt.wait_until_finished()
    self.writer.flush()
    if self.status == "done":
      self.write_status("done", step)
      logging.info("Done: metrics in %s, samples in %s.", self.workdir / workdir_lib.METRICS,
                   self.workdir / "samples.png")


def train_and_evaluate(c: ml_collections.ConfigDict, workdir: str) -> Result:
  """Trains (or resumes) the run in `workdir` to `c.num_steps` and evaluates it."""
  return train_pack([c], [workdir])[0]


def train_pack(configs: list[ml_collections.ConfigDict], workdirs: list[str]) -> list[Result]:
  """Trains trials that share their shapes as one program, vmapped over the trials.

  Each trial keeps its own seed (initialisation, rngs, data order), hyperparameters,
  checkpoints, metrics and `metrics.json`, exactly as if it had run alone; a diverging
  trial is recorded and dropped while the others go on.
  """
  mesh = Mesh(np.array(jax.devices()), ("data",))
  c = configs[0]
  for ck in configs:
    config_lib.validate(ck, jax.device_count())
    for field, value in signature(ck).items():
      if signature(c)[field] != value:
        raise config_lib.ConfigError(f"config.{field}: trials in one pack must agree "
                                     f"({signature(c)[field]!r} vs {value!r})")
  ds = data.load(c.data.source, c.data.heldout)
  f = 2 ** (c.model.dec_layers - 1)
  if ds.image_shape[0] % f or ds.image_shape[1] % f:
    raise config_lib.ConfigError(
        f"config.model.dec_layers: {c.model.dec_layers} layers need image sides divisible by "
        f"{f}, but {c.data.source} has {ds.image_shape[0]}x{ds.image_shape[1]} images")
  trials = [_Trial(ck, w) for ck, w in zip(configs, workdirs)]
  results = {id(t): Result(None, t.previous["status"], t.previous["metrics"], {})
             for t in trials if t.finished}
  for t in trials:
    if t.finished:
      logging.info("%s is already %s at step %d.", t.workdir, t.previous["status"],
                   t.previous["step"])
  active = [t for t in trials if not t.finished]
  if active:
    _train_active(active, ds, mesh, results)
  return [results[id(t)] for t in trials]


def _train_active(trials: list[_Trial], ds: data.Dataset, mesh: Mesh, results: dict) -> None:
  steps_per_epoch = len(ds.train.images) // trials[0].c.batch_size
  rows = NamedSharding(mesh, P("data"))
  model, states, step_fn = setup([t.c for t in trials], ds.image_shape, ds.symmetric,
                                 steps_per_epoch, mesh)
  for t in trials:
    t.open()
  start = trials[0].start
  if any(t.start != start for t in trials):
    raise config_lib.ConfigError("trials in one pack must resume from the same step, got "
                                 + ", ".join(f"{t.workdir}: {t.start}" for t in trials))
  singles = [unstack(states, k) for k in range(len(trials))]
  for k, t in enumerate(trials):
    if start:
      singles[k] = t.ckpt.restore(start, args=ocp.args.StandardRestore(singles[k]))
      logging.info("Resumed from the checkpoint at step %d in %s.", start, t.workdir)
    elif t.c.pretrain.max_steps > 0:
      singles[k], n, loss = pretrain_encoder(
          t.c, model, singles[k],
          data.batches(ds.train.images, t.c.batch_size, t.c.seed + 1, 0, rows), ds.symmetric)
      logging.info("Encoder pre-training of %s: %d steps, moment loss %.4f.", t.workdir, n, loss)
  states = jax.device_put(stack(singles), NamedSharding(mesh, P()))
  evaluator = evaluate.Evaluator(trials[0].c, model, mesh, ds.symmetric)
  # Loaded before training, so bad weights fail the run at once, not at its end.
  inception_params = (evaluate.load_inception() if any(t.c.eval.final_fid for t in trials)
                      else None)
  keys = [trial_keys(t.c) for t in trials]
  train_keys = jnp.stack([k[0] for k in keys])
  stacked_rows = NamedSharding(mesh, P(None, "data"))
  alive = list(range(len(trials)))
  for t in trials:
    t.write_status("running", start)
  end = max(t.c.num_steps for t in trials)
  pending, step = [], start  # Metrics stay on the device until a trial needs them.
  with _Preemption() as preemption:
    for step in range(start + 1, end + 1):
      batch = np.stack([ds.train.images[data.batch_indices(
          len(ds.train.images), t.c.batch_size, t.c.seed, step - 1)] for t in trials])
      states, metrics = step_fn(states, data.place(batch, stacked_rows, axis=1), train_keys)
      pending.append(metrics)
      for k in alive:
        trials[k].progress(step)
      due = lambda t, every: step % every == 0 or step == t.c.num_steps
      if not preemption.requested and not any(
          due(trials[k], trials[k].c.log_every) or due(trials[k], trials[k].c.eval_every)
          or due(trials[k], trials[k].c.ckpt_every) for k in alive):
        continue
      host = jax.device_get(pending)
      for offset, m in enumerate(host):
        s = step - len(host) + 1 + offset
        for k in list(alive):
          if not trials[k].after_step(s, {n: v[k] for n, v in m.items()},
                                      preemption.requested and s == step):
            alive.remove(k)
      pending = []
      for k in list(alive):
        t = trials[k]
        state_k = unstack(states, k)
        if due(t, t.c.eval_every):
          t.evaluate(step, evaluator, state_k, ds, keys[k][1])
        if due(t, t.c.ckpt_every) or preemption.requested:
          t.ckpt.save(step, args=ocp.args.StandardSave(state_k))
        if step == t.c.num_steps:
          if t.c.eval.final_fid:
            t.evaluate_fid(evaluator, state_k, ds, keys[k][1], inception_params)
          t.status = "done"
          alive.remove(k)
          results[id(t)] = Result(state_k, "done", t.metrics, t.history)
      if preemption.requested:
        for k in alive:
          trials[k].write_status("running", step)
        logging.warning("Stopped at step %d; run the same command again to resume.", step)
        break
      if not alive:
        break
  for k, t in enumerate(trials):
    t.close(t.c.num_steps if t.status == "done" else step)
    if id(t) not in results:
      results[id(t)] = Result(unstack(states, k), t.status, t.metrics, t.history)


_CONFIG = config_flags.DEFINE_config_file("config", None, "Config: name[:arg] or path.py[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Trial directory (local or gs://).")


def _parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with bundled config names and one-line errors (exit 2)."""
  try:
    argv = [argv[0]] + [_resolve_config_flag(a) for a in argv[1:]]
    rest = flags.FLAGS(argv)
    if _WORKDIR.value is None or _CONFIG.value is None:
      raise flags.Error("--config and --workdir are required")
  except (flags.Error, config_lib.ConfigError) as e:
    _fail(str(e).splitlines()[0])
  except (AttributeError, KeyError) as e:  # ml_collections' answer to --config.<unknown field>.
    field, *hint = str(e.args[0]).split("\n")
    _fail(f"--config: no field {field.strip(chr(39))!r}. {' '.join(hint)}".strip())
  return rest


def _fail(message: str) -> None:
  print(f"wae-train: error: {message}", file=sys.stderr)
  sys.exit(2)


def _resolve_config_flag(arg: str) -> str:
  if arg.startswith("--config="):
    return "--config=" + config_lib.resolve(arg[len("--config="):])
  return arg


def _join_hosts() -> None:
  """Joins the other processes of a multi-host run before JAX touches a device.

  On Cloud TPU VMs everything is auto-detected. Elsewhere (or to test on one machine) set
  JAX_COORDINATOR_ADDRESS=host:port, WAE_NUM_PROCESSES and WAE_PROCESS_ID.
  """
  n, i = os.environ.get("WAE_NUM_PROCESSES"), os.environ.get("WAE_PROCESS_ID")
  jax.distributed.initialize(num_processes=int(n) if n else None,
                             process_id=int(i) if i else None)


def _run(argv: list[str]) -> None:
  del argv
  c = _CONFIG.value
  if c.multihost:
    _join_hosts()
    if jax.process_index() != 0:  # One console: the other hosts report only problems.
      logging.set_verbosity(logging.WARNING)
  try:
    result = train_and_evaluate(c, _WORKDIR.value)
  except config_lib.ConfigError as e:
    _fail(str(e))
  except Exception as e:  # Record the crash in the trial directory, then fail loudly.
    last = (str(e).strip().splitlines() or [type(e).__name__])[-1]
    if jax.process_index() == 0:
      previous = workdir_lib.read_metrics(_WORKDIR.value) or {}
      workdir_lib.write_metrics(_WORKDIR.value, status="failed", step=previous.get("step", 0),
                                num_steps=c.num_steps, wall_s=previous.get("wall_s", 0.0),
                                metrics=previous.get("metrics", {}),
                                config=config_lib.flatten(c), error=f"{type(e).__name__}: {last}")
    raise
  if result.status == "running":
    sys.exit(143)  # Stopped by a signal with a checkpoint saved: not finished.


def quiet_libraries(record) -> bool:
  """Keeps the console to this program's progress: orbax logs every save at INFO."""
  return record.levelno >= logging.converter.STANDARD_WARNING or "/orbax/" not in record.pathname


def main() -> None:
  logging.get_absl_handler().python_handler.addFilter(quiet_libraries)
  app.run(_run, flags_parser=_parse_flags)


if __name__ == "__main__":
  main()
