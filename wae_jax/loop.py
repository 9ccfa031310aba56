"""The training loop: the (packed) step, then each trial's periodic hooks.

    until every trial is done:
      states, metrics = run_fn(states, feed, keys, n)  # n steps of K trials, one dispatch
      for each trial still training:
        log -> evaluate -> checkpoint -> finish       # when each is due

A dispatch runs up to `steps_per_dispatch` steps and stops where any trial has something
due, so the hooks see exactly the steps they would one step at a time. Metrics stay on the
device until some hook is due, so dispatches go back to back. A
trial that diverges is recorded and dropped while the others go on; SIGTERM (a TPU
preemption) or SIGINT checkpoints every trial and stops, and the same command resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
from typing import Any, Sequence

from absl import logging
from clu import parameter_overview
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import orbax.checkpoint as ocp

from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import evaluation
from wae_jax import feed
from wae_jax import lock as lock_lib
from wae_jax import memory
from wae_jax import pack
from wae_jax import state as state_lib
from wae_jax import step as step_lib
from wae_jax import workdir as workdir_lib
from wae_jax.evaluators import common as eval_common
from wae_jax import trial as trial_lib
from wae_jax.trial import Trial


@dataclasses.dataclass(frozen=True)
class Result:
  state: state_lib.TrainState | None  # None for a trial that was already finished.
  status: str  # DONE, DIVERGED, or RUNNING (stopped by a signal; resumable).
  metrics: dict[str, float]  # Held-out metrics of the last evaluation.
  history: dict[int, dict[str, float]]  # Train metrics written at each log step of this run.


class Preemption:
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


# ------------------------------------------------------------------------------------------
# Periodic hooks: `due(trial, step, stopping)` and `__call__(trial, step, state)`.


@dataclasses.dataclass
class Evaluate:
  """The config's evaluators on held-out data, every eval_every steps and at the end."""
  inference: eval_common.Inference
  dataset: data.Dataset
  key: jax.Array
  inception_params: Any = None  # (variables, sha256) where some trial asks for FID.

  def due(self, t: Trial, step: int, stopping: bool) -> bool:
    return t.due(step, t.c.eval_every)

  def __call__(self, t: Trial, step: int, s: state_lib.TrainState) -> None:
    context = eval_common.Context(
        self.inference, s.variables, self.dataset, self.key, t.c, t.c.eval.num_samples,
        cache_dir=t.c.eval.cache_dir or evaluation.default_cache_dir(),
        inception_params=self.inception_params)
    metrics, fields = eval_common.run(t.c.eval.evaluators, context)
    t.record_evaluation(step, metrics, fields, context.pictures())


class Checkpoint:
  """Saves the state every ckpt_every steps, at the end, and before stopping."""

  def due(self, t: Trial, step: int, stopping: bool) -> bool:
    # Not again: a run resumed at its last step has that checkpoint already.
    return (t.due(step, t.c.ckpt_every) or stopping) and t.ckpt.latest_step() != step

  def __call__(self, t: Trial, step: int, s: state_lib.TrainState) -> None:
    t.ckpt.save(step, args=ocp.args.StandardSave(s))


@dataclasses.dataclass
class Finish:
  """At num_steps: what `wae-eval` computes (with eval.final_fid), then status done."""
  evaluate: Evaluate

  def due(self, t: Trial, step: int, stopping: bool) -> bool:
    return step == t.c.num_steps

  def __call__(self, t: Trial, step: int, s: state_lib.TrainState) -> None:
    if t.c.eval.final_fid:
      metrics, fields = evaluation.final_metrics(
          t.c, s.variables, self.evaluate.dataset, self.evaluate.inference, self.evaluate.key,
          num_samples=t.c.eval.fid_num_samples, cache_dir=t.c.eval.cache_dir,
          inception_params=self.evaluate.inception_params)
      t.record_evaluation(step, metrics, fields, pictures={})
    t.status = workdir_lib.DONE


# ------------------------------------------------------------------------------------------


def train(c: ml_collections.ConfigDict, workdir: str, restart: bool = False,
          hparams: Sequence[str] = trial_lib.HPARAMS) -> Result:
  """Trains (or resumes) the run in `workdir` to `c.num_steps` and evaluates it.

  `restart` starts over a directory that holds a trial of another config (moved aside);
  without it such a directory is refused (`trial.check_directory`). `hparams` are the
  config fields TensorBoard's HParams dashboard shows (a sweep's: those it sets).
  """
  return train_pack([c], [workdir], restart, [hparams])[0]


def train_pack(configs: list[ml_collections.ConfigDict], workdirs: list[str],
               restart: bool = False, hparams: Sequence[Sequence[str]] | None = None
               ) -> list[Result]:
  """Trains trials that share their shapes (`pack.signature`) as one program.

  Each trial directory is owned for the run (`lock.Lock`; `lock.Busy` if a live trainer
  owns one); the cheap checks of configs and directories come before any slow set-up.
  """
  for c in configs:
    config_lib.validate(c, jax.device_count())
  pack.check(configs)
  for w in workdirs:
    trial_lib.check_path(w)
  lead = jax.process_index() == 0
  with contextlib.ExitStack() as owned:
    if lead:
      for w in workdirs:
        owned.enter_context(lock_lib.Lock(w, "trainer"))
    for c, w in zip(configs, workdirs):
      trial_lib.check_directory(c, w, restart and lead)
    return _train_owned(configs, workdirs, [h or trial_lib.HPARAMS for h in
                                            hparams or [None] * len(configs)])


def _train_owned(configs: list[ml_collections.ConfigDict], workdirs: list[str],
                 hparams: Sequence[Sequence[str]]) -> list[Result]:
  mesh = Mesh(np.array(jax.devices()), ("data",))
  c = configs[0]
  ds = data.load(c.data.source, c.data.heldout)
  for ck in configs:
    data.check_fits(ck, len(ds.train.images))
  f = 2 ** (c.model.dec_layers - 1)
  if ds.image_shape[0] % f or ds.image_shape[1] % f:
    raise config_lib.ConfigError(
        f"config.model.dec_layers: {c.model.dec_layers} layers need image sides divisible by "
        f"{f}, but {c.data.source} has {ds.image_shape[0]}x{ds.image_shape[1]} images")
  target = state_lib.abstract_state(c, ds, mesh)
  memory.check(configs, ds, mesh, target)
  trials = [Trial(ck, w, h) for ck, w, h in zip(configs, workdirs, hparams)]
  results = {}
  for t in trials:
    if t.finished:
      logging.info("%s is already %s at step %d.", t.workdir, t.previous["status"],
                   t.previous.get("step", 0))
      results[id(t)] = Result(None, t.previous["status"], t.previous.get("metrics", {}), {})
  by_start = {}
  for t in trials:
    if not t.finished:
      by_start.setdefault(t.open(target), []).append(t)
  for group in by_start.values():  # One, unless a bad checkpoint set some trials back.
    results.update(_train(group, ds, mesh))
  return [results[id(t)] for t in trials]


def _initial_states(trials: list[Trial], ds: data.Dataset, mesh: Mesh):
  """The model, the jitted loop and the trials' stacked states: restored, or fresh (after
  encoder pre-training, where configured)."""
  model, states, run_fn = pack.setup([t.c for t in trials], ds, mesh)
  start = trials[0].start
  singles = [state_lib.unstack(states, k) for k in range(len(trials))]
  for k, t in enumerate(trials):
    if start:
      singles[k] = t.restored
      logging.info("Resumed from the checkpoint at step %d in %s.", start, t.workdir)
    elif t.c.pretrain.max_steps > 0:
      batches = data.batches(ds.train.images, t.c.pretrain.batch_size, t.c.seed + 1, 0,
                             NamedSharding(mesh, P("data")))
      singles[k], n, loss = step_lib.pretrain_encoder(t.c, model, singles[k], batches, ds.pixels)
      logging.info("Encoder pre-training of %s: %d steps, moment loss %.4f.", t.workdir, n, loss)
  return model, run_fn, start, jax.device_put(state_lib.stack(singles), NamedSharding(mesh, P()))


def _train(trials: list[Trial], ds: data.Dataset, mesh: Mesh) -> dict[int, Result]:
  model, run_fn, start, states = _initial_states(trials, ds, mesh)
  inference = eval_common.Inference(trials[0].c, model, mesh, ds.pixels)
  # Loaded before training, so bad weights fail the run at once, not at its end.
  wants_fid = any(t.c.eval.final_fid or "fid" in t.c.eval.evaluators for t in trials)
  inception_params = evaluation.load_inception() if wants_fid else None
  keys = [state_lib.trial_keys(t.c) for t in trials]
  hooks = []
  for k in range(len(trials)):
    evaluator = Evaluate(inference, ds, keys[k][1], inception_params)
    hooks.append([evaluator, Checkpoint(), Finish(evaluator)])
  train_keys = jnp.stack([k[0] for k in keys])
  feeder = feed.Feeder([t.c for t in trials], ds.train.images, mesh,
                       trials[0].c.steps_per_dispatch)
  for t in trials:
    t.write_status(workdir_lib.RUNNING, start)
  results, alive = {}, list(range(len(trials)))
  pending, step = [], start

  def run_hooks(ks: list[int], step: int, stopping: bool) -> None:
    """The due hooks of trials `ks` at `step`; a trial that is done leaves `alive`."""
    for k in ks:
      t, state_k = trials[k], state_lib.unstack(states, k)
      for hook in hooks[k]:
        if hook.due(t, step, stopping):
          hook(t, step, state_k)
      if t.status == workdir_lib.DONE:
        alive.remove(k)
        results[id(t)] = Result(state_k, t.status, t.metrics, t.history)

  # Resumed at its last step (killed between the final checkpoint and `done`): what is left
  # of finishing (the final evaluation, the status) happens now; rerunning is idempotent.
  run_hooks([k for k in alive if trials[k].c.num_steps == start], start, False)
  if alive:
    logging.info("Training %s (%s auto-encoder parameters) from step %d to %d on %d device(s); "
                 "the first dispatch compiles.", ", ".join(trials[k].workdir.name for k in alive),
                 f"{parameter_overview.count_parameters(states.params) // len(trials):,}",
                 step, max(trials[k].c.num_steps for k in alive), mesh.size)

  def dispatch_length(step: int) -> int:
    """Steps in the dispatch from `step`: up to where any trial has something to do."""
    return min(feeder.n_max, min(trials[k].next_due(step) for k in alive) - step)

  with Preemption() as preemption:
    while alive:
      n = dispatch_length(step)
      states, metrics = run_fn(states, feeder(step, n), train_keys, n)
      pending.append((n, metrics))
      step += n
      if (guess := dispatch_length(step)) > 0:  # A trial that ends or diverges changes it.
        feeder.prefetch(step, guess)
      stopping = preemption.requested
      if not stopping and not any(trials[k].due(step, trials[k].c.log_every)
                                  or any(h.due(trials[k], step, False) for h in hooks[k])
                                  for k in alive):
        continue
      end = step - sum(count for count, _ in pending)
      for count, m in jax.device_get(pending):
        end += count
        alive = [k for k in alive if trials[k].log(
            end, {name: v[:count, k] for name, v in m.items()}, stopping and end == step)]
      pending = []
      run_hooks(list(alive), step, stopping)
      if stopping:
        for k in alive:
          trials[k].ckpt.wait_until_finished()  # The record never runs ahead of a checkpoint.
          trials[k].write_status(workdir_lib.RUNNING, step)
        logging.warning("Stopped at step %d; run the same command again to resume.", step)
        break
  for k, t in enumerate(trials):
    t.close(t.c.num_steps if t.status == workdir_lib.DONE else step)
    if id(t) not in results:
      results[id(t)] = Result(state_lib.unstack(states, k), t.status, t.metrics, t.history)
  return results
