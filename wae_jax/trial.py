"""One trial as the training loop keeps it: its directory, event file, checkpoints and record.

A pack trains several trials in one program; each keeps its own `Trial`, so its directory
ends exactly as if it had run alone.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from absl import logging
from etils import epath
import jax
import ml_collections
import numpy as np

from wae_jax import config as config_lib
from wae_jax import errors
from wae_jax import evaluators
from wae_jax import events
from wae_jax import images
from wae_jax import progress
from wae_jax import state as state_lib
from wae_jax import workdir as workdir_lib


# Config fields a rerun may change on an existing trial directory: how long, how often and
# how fast, not what is trained (a sweep's next rung resumes with a larger num_steps).
MAY_CHANGE = ("num_steps", "log_every", "ckpt_every", "eval_every", "keep_ckpts", "multihost",
              "steps_per_dispatch", "data.device_max_mb")


# What TensorBoard's HParams dashboard shows of a trial run on its own: the numbers a sweep
# varies most. A sweep's trials show the fields their sweep sets instead.
HPARAMS = ("algo", "seed", "optim.lr", "lam", "prior_var", "recon.scale")


def check_path(workdir: epath.PathLike) -> None:
  """Refuses a trial directory that is a file, or whose checkpoints/ is (ConfigError)."""
  if problem := workdir_lib.not_a_directory(workdir):
    raise config_lib.ConfigError(problem)
  if (checkpoints := epath.Path(workdir) / workdir_lib.CHECKPOINTS).is_file():
    raise config_lib.ConfigError(f"{checkpoints} is a file, not a directory; move it aside")


def check_directory(c: ml_collections.ConfigDict, workdir: epath.PathLike,
                    restart: bool = False) -> None:
  """Refuses a trial directory that holds a trial of another config (ConfigError naming
  the differing fields); with `restart` moves such a trial aside.

  Cheap, so commands call it before any slow set-up; nothing is written unless `restart`.
  """
  workdir = epath.Path(workdir)
  try:
    saved = config_lib.read(workdir)
  except config_lib.ConfigError as e:
    saved = _config_of_record(workdir, e)
  if saved is None:
    return
  saved = config_lib.flatten(saved)
  new = config_lib.flatten(c)
  changed = [k for k in sorted(set(saved) | set(new)) if saved.get(k) != new.get(k)
             and k not in MAY_CHANGE and not k.startswith("eval.")]
  if not changed:
    return
  if restart:
    aside = workdir_lib.move_aside(workdir, "restart")
    logging.warning("Started %s over; what was there is in %s.", workdir, aside)
    return
  diff = ", ".join(f"{k} {saved.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
  more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
  raise config_lib.ConfigError(
      f"{workdir} holds a trial of another config ({diff}{more}); rerun with its own "
      "config, or with --restart to start it over (its files are moved aside)")


class Damaged(errors.TrialError):
  """A trial directory a person must look at before it can go on (`workdir.DAMAGED`)."""


def _config_of_record(workdir: epath.Path, error: config_lib.ConfigError
                      ) -> ml_collections.ConfigDict:
  """The config of a trial whose config.json cannot be read, rebuilt from the flat copy in
  its metrics.json (which `Trial.open` then writes back as config.json); Damaged if that
  cannot be read either: the trial may resume, but not on a guess."""
  record, problem = workdir_lib.load_record(workdir)
  flat = (record or {}).get("config")
  if not flat:
    raise Damaged(f"{error}, and {workdir_lib.METRICS} has no config to rebuild it from "
                  f"({problem or 'none there'}); restore it, or start the trial over "
                  "(wae-train --restart, or move the directory aside)")
  nested = {}
  for key, value in flat.items():
    *heads, last = key.split(".")
    node = nested
    for head in heads:
      node = node.setdefault(head, {})
    node[last] = value
  logging.warning("%s; rebuilt from %s.", error, workdir_lib.METRICS)
  return config_lib.from_dict(nested)


class Trial:
  """A trial's files and its progress: status, last evaluation, history of logged means."""

  def __init__(self, c: ml_collections.ConfigDict, workdir: epath.PathLike,
               hparams: Sequence[str] = HPARAMS):
    self.c, self.workdir, self.hparams = c, epath.Path(workdir), tuple(hparams)
    self.lead = jax.process_index() == 0  # Only the lead host writes files and progress.
    self.started = time.time()
    self.flat = config_lib.flatten(c)
    # Every host reads it, so all agree. One that cannot be read is rewritten: the
    # checkpoints, not metrics.json, say where training stands.
    self.previous, error = workdir_lib.load_record(self.workdir)
    if error:
      logging.warning("%s: %s; it is rewritten from the checkpoints.", self.workdir, error)
    self.status, self.history, self.pending = workdir_lib.RUNNING, {}, []
    self.rate, self._last = None, None  # Steps a second, and the last logged (step, time).
    self.writer: events.Writer | None = None  # TensorBoard's; the lead host's, once open.
    self.metrics = (self.previous or {}).get("metrics", {})
    self.fields = {k: v for k, v in (self.previous or {}).items()
                   if k in evaluators.fields() + (workdir_lib.TRAIN,)}

  @property
  def finished(self) -> bool:
    p = self.previous
    return bool(p) and p["status"] in workdir_lib.FINAL and p.get("step", 0) >= self.c.num_steps

  def open(self, target: state_lib.TrainState) -> int:
    """Creates the directory's event writer and checkpoint manager and restores the newest
    readable checkpoint (into `self.restored`, laid out as `target`); returns its step."""
    self.ckpt = state_lib.checkpoint_manager(self.workdir, self.c, create=True)
    self.restored, self.start = state_lib.restore_latest(self.ckpt, target, self.workdir)
    self.saved = self.start
    if self.start > self.c.num_steps:
      raise config_lib.ConfigError(f"config.num_steps: {self.c.num_steps} is below the step "
                                   f"{self.start} that {self.workdir} has trained to")
    # A kill after a save but before orbax removed the oldest leaves one too many; at the
    # last step no save comes to remove it.
    for old in sorted(self.ckpt.all_steps())[:-self.c.keep_ckpts]:
      self.ckpt.delete(old)
    if self.lead:
      workdir_lib.write_json(self.workdir / workdir_lib.CONFIG, self.c.to_dict())
      self.writer = events.Writer(self.workdir)
      if self.start == 0:
        self.writer.write_hparams({k: v for k, v in self.flat.items() if k in self.hparams})
    return self.start

  def due(self, step: int, every: int) -> bool:
    return step % every == 0 or step == self.c.num_steps

  def next_due(self, step: int) -> int:
    """The first step after `step` at which the trial logs, evaluates, checkpoints or ends:
    where the loop's dispatch of several steps must stop."""
    c = self.c
    return min(c.num_steps, *((step // every + 1) * every
                              for every in (c.log_every, c.eval_every, c.ckpt_every)))

  def saved_step(self) -> int:
    """The newest checkpoint's step once its save is complete (until then, the one before):
    the step a running record names, so it never runs ahead of what a kill leaves."""
    if not self.ckpt.is_saving_in_progress():
      self.saved = self.ckpt.latest_step() or 0
    return self.saved

  def write_status(self, status: str, step: int, error: str | None = None) -> None:
    if self.lead:
      workdir_lib.write_metrics(
          self.workdir, status=status, step=step, num_steps=self.c.num_steps,
          wall_s=time.time() - self.started + (self.previous or {}).get("wall_s", 0),
          metrics=self.metrics, config=self.flat, error=error, extra=self.fields)

  def log(self, step: int, metrics: dict[str, np.ndarray], stopping: bool) -> bool:
    """Collects the metrics of the steps up to `step` (arrays, an entry a step); at log
    steps writes their means, or finds a divergence.

    Returns False once the trial has diverged (recorded with the first bad step).
    """
    self.pending.append(metrics)
    if not self.due(step, self.c.log_every) and not stopping:
      return True
    block = {k: np.concatenate([m[k] for m in self.pending]) for k in self.pending[0]}
    means = {k: float(np.mean(v)) for k, v in block.items()}
    bad = np.flatnonzero(~np.isfinite(block["loss"]))
    first, self.pending = step - len(block["loss"]) + 1, []
    if len(bad):
      self.status = workdir_lib.DIVERGED
      error = f"loss became {means['loss']} at step {first + bad[0]}"
      logging.error("%s diverged: %s.", self.workdir, error)
      self.write_status(workdir_lib.DIVERGED, first + bad[0], error)
      return False
    self.history[step] = means
    self.fields[workdir_lib.TRAIN] = means
    self._report(step, means)
    # What `wae-sweep run` shows while it runs: the means of `step`, at the step it resumes.
    self.write_status(workdir_lib.RUNNING, self.saved_step())
    return True

  def _report(self, step: int, means: dict[str, float]) -> None:
    """One console line a log step: the means, the speed and an ETA, both smoothed over
    log steps (the first interval, which compiles, is left out)."""
    now = time.time()
    if self._last is not None:
      rate = (step - self._last[0]) / max(now - self._last[1], 1e-9)
      self.rate = rate if self.rate is None else 0.7 * self.rate + 0.3 * rate
    self._last = (step, now)
    if self.writer:
      speed = {} if self.rate is None else {"steps_per_sec": self.rate}  # Not a train metric.
      self.writer.write_scalars(step, {**{f"train/{k}": v for k, v in means.items()}, **speed})
    speed = ("" if self.rate is None else f"  {self.rate:.3g} steps/s  ETA "
             f"{progress.duration((self.c.num_steps - step) / self.rate)}")
    tail = ("lr", "grad_norm")
    order = ["loss", *sorted(set(means) - {"loss", *tail}), *tail]
    logging.info("%s  step %d/%d  %s%s", self.workdir.name, step, self.c.num_steps,
                 "  ".join(f"{k} {means[k]:.4g}" for k in order if k in means), speed)

  def record_evaluation(self, step: int, metrics: dict[str, float], fields: dict[str, Any],
                        pictures: dict[str, np.ndarray]) -> None:
    self.metrics = metrics
    train = {k: v for k, v in self.fields.items() if k == workdir_lib.TRAIN}
    self.fields = {**train, **fields}
    if self.writer:
      self.writer.write_scalars(step, {f"eval/{k}": v for k, v in metrics.items()})
      self.writer.write_images(step, pictures)
      for name, picture in pictures.items():
        images.save_png(self.workdir / f"{name}.png", picture)
    logging.info("%s  step %d  evaluation: %s", self.workdir.name, step,
                 "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

  def close(self, step: int) -> None:
    self.ckpt.wait_until_finished()
    if self.writer:
      if self.status in workdir_lib.FINAL:
        self.writer.write_hparams_end(self.status)
      self.writer.close()
    if self.status == workdir_lib.DONE:
      self.write_status(workdir_lib.DONE, step)
      logging.info("Done: metrics in %s, samples in %s.", self.workdir / workdir_lib.METRICS,
                   self.workdir / "samples.png")

