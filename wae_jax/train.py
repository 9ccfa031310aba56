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
from wae_jax import workdir as workdir_lib

PENALTY = {"wae_mmd": "mmd", "wae_gan": "gan_penalty", "vae": "kl"}
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
  noise_rng, code_rng, prior_rng = jax.random.split(rng, 3)
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


def _mean_metrics(history: list[dict[str, jax.Array]]) -> tuple[dict[str, float], int | None]:
  """Averages per-step metrics; also returns the index of the first non-finite loss, if any."""
  host = jax.device_get(history)
  losses_ = np.array([m["loss"] for m in host])
  bad = np.flatnonzero(~np.isfinite(losses_))
  means = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
  return means, (int(bad[0]) if len(bad) else None)


def setup(c: ml_collections.ConfigDict, image_shape, symmetric: bool, steps_per_epoch: int,
          mesh: Mesh) -> tuple[models.AutoEncoder, TrainState, Any]:
  """The model, its initial state (replicated over `mesh`) and the jitted, sharded step."""
  model, adversary = models.build(c, image_shape, symmetric)
  tx = optimizer(c, steps_per_epoch)
  replicated, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  state = jax.jit(functools.partial(init_state, c, model, adversary, tx, image_shape),
                  out_shardings=replicated)(jax.random.key(c.seed))
  step_fn = jax.jit(
      functools.partial(train_step, c=c, model=model, adversary=adversary, tx=tx,
                        mesh=mesh, symmetric=symmetric),
      in_shardings=(replicated, rows, replicated), out_shardings=(replicated, replicated),
      donate_argnums=0)
  return model, state, step_fn


def train_and_evaluate(c: ml_collections.ConfigDict, workdir: str) -> Result:
  """Trains (or resumes) the run in `workdir` to `c.num_steps` and evaluates it."""
  started = time.time()
  mesh = Mesh(np.array(jax.devices()), ("data",))
  config_lib.validate(c, jax.device_count())
  ds = data.load(c.data.source, c.data.heldout)
  f = 2 ** (c.model.dec_layers - 1)
  if ds.image_shape[0] % f or ds.image_shape[1] % f:
    raise config_lib.ConfigError(
        f"config.model.dec_layers: {c.model.dec_layers} layers need image sides divisible by "
        f"{f}, but {c.data.source} has {ds.image_shape[0]}x{ds.image_shape[1]} images")
  workdir = epath.Path(workdir)
  lead = jax.process_index() == 0
  flat_config = config_lib.flatten(c)
  previous = workdir_lib.read_metrics(workdir)  # Every host reads it, so all agree.
  if previous and previous["status"] in workdir_lib.FINAL and previous["step"] >= c.num_steps:
    logging.info("%s is already %s at step %d; nothing to do.", workdir, previous["status"],
                 previous["step"])
    return Result(None, previous["status"], previous["metrics"], {})

  model, state, step_fn = setup(c, ds.image_shape, ds.symmetric,
                                len(ds.train.images) // c.batch_size, mesh)
  rows = NamedSharding(mesh, P("data"))

  ckpt = ocp.CheckpointManager(
      (workdir / workdir_lib.CHECKPOINTS).absolute(),
      options=ocp.CheckpointManagerOptions(max_to_keep=c.keep_ckpts, create=True))
  start = ckpt.latest_step() or 0
  if start:
    state = ckpt.restore(start, args=ocp.args.StandardRestore(state))
    logging.info("Resumed from the checkpoint at step %d.", start)
  elif c.pretrain.max_steps > 0:
    state, n, loss = pretrain_encoder(
        c, model, state, data.batches(ds.train.images, c.batch_size, c.seed + 1, 0, rows),
        ds.symmetric)
    logging.info("Encoder pre-training: %d steps, moment loss %.4f.", n, loss)

  if lead:
    workdir_lib.write_json(workdir / workdir_lib.CONFIG, c.to_dict())
  # Only the lead host writes TensorBoard files and progress lines.
  writer = metric_writers.create_default_writer(workdir) if lead else metric_writers.MultiWriter([])
  if start == 0:
    writer.write_hparams({k: str(v) if isinstance(v, list) else v for k, v in flat_config.items()})
  progress = periodic_actions.ReportProgress(num_train_steps=c.num_steps, writer=writer,
                                             every_steps=c.log_every)
  evaluator = evaluate.Evaluator(c, model, mesh, ds.symmetric)
  train_rng, eval_rng = jax.random.split(jax.random.key(c.seed))

  def write_status(status, step, metrics, error=None):
    if lead:
      workdir_lib.write_metrics(workdir, status=status, step=step, num_steps=c.num_steps,
                                wall_s=time.time() - started + (previous or {}).get("wall_s", 0),
                                metrics=metrics, config=flat_config, error=error)

  def run_eval(step):
    metrics, images = evaluator(evaluate.variables_of(state), ds, eval_rng)
    writer.write_scalars(step, {f"eval/{k}": v for k, v in metrics.items()})
    writer.write_images(step, {k: v[None] for k, v in images.items()})
    if lead:
      for name, grid in images.items():
        evaluate.save_png(os.fspath(workdir / f"{name}.png"), grid)
    logging.info("Evaluation at step %d: %s", step,
                 ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return metrics

  eval_metrics = (previous or {}).get("metrics", {})
  write_status("running", start, eval_metrics)
  history, pending, status = {}, [], "done"
  batches = data.batches(ds.train.images, c.batch_size, c.seed, start, rows)
  with _Preemption() as preemption:
    for step in range(start + 1, c.num_steps + 1):
      state, metrics = step_fn(state, next(batches), jax.random.fold_in(train_rng, step - 1))
      pending.append(metrics)
      if step % c.log_every == 0 or step == c.num_steps or preemption.requested:
        means, bad = _mean_metrics(pending)
        if bad is not None:
          status, bad_step = "diverged", step - len(pending) + bad + 1
          error = f"loss became {means['loss']} at step {bad_step}"
          logging.error("Diverged: %s.", error)
          write_status("diverged", bad_step, eval_metrics, error)
          break
        history[step] = means
        writer.write_scalars(step, {f"train/{k}": v for k, v in means.items()})
        pending = []
      progress(step)
      if step % c.eval_every == 0 or step == c.num_steps:
        eval_metrics = run_eval(step)
      if step % c.ckpt_every == 0 or step == c.num_steps or preemption.requested:
        ckpt.save(step, args=ocp.args.StandardSave(state))
      if preemption.requested:
        status = "running"
        write_status("running", step, eval_metrics)
        logging.warning("Stopped at step %d; run the same command again to resume.", step)
        break
  ckpt.wait_until_finished()
  writer.flush()
  if status == "done":
    write_status("done", c.num_steps, eval_metrics)
    logging.info("Done: metrics in %s, samples in %s.", workdir / workdir_lib.METRICS,
                 workdir / "samples.png")
  return Result(state, status, eval_metrics, history)


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


def _quiet_libraries(record) -> bool:
  """Keeps the console to this program's progress: orbax logs every save at INFO."""
  return record.levelno >= logging.converter.STANDARD_WARNING or "/orbax/" not in record.pathname


def main() -> None:
  logging.get_absl_handler().python_handler.addFilter(_quiet_libraries)
  app.run(_run, flags_parser=_parse_flags)


if __name__ == "__main__":
  main()
