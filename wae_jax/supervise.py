"""A trial's trainer as a supervised subprocess, run to a final record: an executor's task.

The trainer runs in a subprocess, so a crashing trial cannot take its worker down, and it
dies with its worker (Linux's parent-death signal), checkpointing on its way out. A trainer
stopped before a final status raises `TrialInterrupted`, which executors retry: the trial
resumes from its checkpoint. With a pack, trials that share their array shapes and resume
step train K at a time as one vmapped program.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import signal
import subprocess
import sys
import tempfile
from typing import Any, Sequence

from absl import logging
from etils import epath

from wae_jax import hyper
from wae_jax import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class Task:
  """A job as an executor runs it: trials (one, or a pack) and their directories, to
  `num_steps` (None: their own budgets), by `trainer` (the command; None: `wae-train` in
  the worker's Python)."""
  trials: tuple[hyper.Trial, ...]
  dirs: tuple[str, ...]
  num_steps: int | None = None
  trainer: tuple[str, ...] | None = None

  def configured(self) -> list[hyper.Trial]:
    """The trials with the task's `num_steps` set (a search's climb)."""
    extra = {} if self.num_steps is None else {"config.num_steps": self.num_steps}
    return [{**t, **extra} for t in self.trials]


def run(task: Task) -> list[dict[str, Any]]:
  """Runs the task's trainer as a subprocess to the trials' final records (Ray's and the
  local pool's task body)."""
  from wae_jax import study  # pylint: disable=g-import-not-at-top  # Once a worker.
  if len(task.dirs) > 1:
    return run_pack(list(zip(task.trials, task.dirs)), task.trainer)
  base, *overrides = study.flags_of(task.configured()[0])
  flags = [base, f"--workdir={task.dirs[0]}", *overrides]
  return [run_trial(flags, task.dirs[0], task.trainer, task.num_steps)]


class TrialInterrupted(RuntimeError):
  """The trainer stopped before a final status (a signal, a kill): the executor retries."""


def default_trainer() -> list[str]:
  """`wae-train` on this (worker) machine, before a trial's flags."""
  return [sys.executable, "-m", "wae_jax.cli.train"]


def default_pack_trainer() -> list[str]:
  """`wae-train --pack` on this (worker) machine, before a pack's JSON."""
  return [*default_trainer(), "--pack"]


def run_trial(flags: Sequence[str], trial_dir: str,
              trainer: Sequence[str] | None = None, num_steps: int | None = None
              ) -> dict[str, Any]:
  """Runs `trainer flags` on `trial_dir` until it reports a final status; returns that record.

  `trainer` defaults to `default_trainer()`. `num_steps` is the step a search's climb ends
  at (the flags say so too): a trial done below it is not finished.
  """
  if _final(record := workdir_lib.read_record(trial_dir), num_steps):  # A finished retry.
    return record
  return _supervise([*(trainer or default_trainer()), *flags], [trial_dir])[0]


def run_pack(members: Sequence[tuple[hyper.Trial, str]],
             trainer: Sequence[str] | None = None) -> list[dict[str, Any]]:
  """Trains the (trial, trial_dir) members not yet final as one pack; returns their records.

  `trainer` is the command before the pack's JSON `[{"trial": .., "workdir": ..}, ...]`, by
  default `default_pack_trainer()`. A pack resumes from one checkpoint step; should a kill
  have left its members at different steps (their `ckpt_every` differ), the members at each
  step train as a pack of their own.
  """
  records = {d: workdir_lib.read_record(d) for _, d in members}
  pending = [(t, d) for t, d in members if records[d].get("status") not in workdir_lib.FINAL]
  by_step = {}
  for t, d in pending:
    by_step.setdefault(resume_step(d), []).append((t, d))
  for group in by_step.values():
    spec = json.dumps([{"trial": t, "workdir": d} for t, d in group])
    dirs = [d for _, d in group]
    records.update(zip(dirs, _supervise([*(trainer or default_pack_trainer()), spec], dirs)))
  return [records[d] for _, d in members]


def _supervise(command: Sequence[str], trial_dirs: Sequence[str]) -> list[dict[str, Any]]:
  """Runs a trainer of `trial_dirs` to its exit; returns each trial's final record.

  The trainer's output goes to every trial's `train.log`. A trainer that exits with an
  error leaves each trial it did not finish `failed` with its last output line (a bad
  config is refused before anything is written; a crash may leave `running` behind); one
  stopped by a signal raises TrialInterrupted, so the executor retries it and it resumes. One
  that a person must look at (EXIT_DAMAGED) is left `damaged`: not final, named again at
  each launch.
  """
  paths = [epath.Path(d) for d in trial_dirs]
  for path in paths:
    path.mkdir(parents=True, exist_ok=True)
  local = workdir_lib.is_local(trial_dirs[0])  # Stream the log into a trial dir; else upload.
  with (open(paths[0] / workdir_lib.LOG, "w+b") if local else tempfile.TemporaryFile()) as log:
    # In a session of its own where the parent-death signal exists (Linux), so that Ray's
    # SIGKILL of a dying driver's workers, sent to their process groups, leaves the trainer
    # the SIGTERM that saves its stop checkpoint.
    rc = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log,
                        stderr=subprocess.STDOUT, check=False, preexec_fn=die_with_parent,
                        start_new_session=sys.platform.startswith("linux")).returncode
    log.seek(0)
    output = log.read().decode(errors="replace")
  for path in paths[1:] if local else paths:
    (path / workdir_lib.LOG).write_text(output)
  records = [workdir_lib.read_record(path) for path in paths]
  unfinished = [i for i, r in enumerate(records) if r.get("status") not in workdir_lib.FINAL]
  if not unfinished:
    return records
  # Exited cleanly, by a signal (EXIT_STOPPED among them), or found another trainer on a
  # trial: unfinished but resumable, and not this task's to mark.
  if rc in (workdir_lib.EXIT_OK, workdir_lib.EXIT_BUSY) or rc < 0 or rc > 128:
    raise TrialInterrupted(f"trainer exited with code {rc} at step "
                           f"{records[unfinished[0]].get('step', 0)}")
  status = workdir_lib.DAMAGED if rc == workdir_lib.EXIT_DAMAGED else workdir_lib.FAILED
  for i in unfinished:
    workdir_lib.record_failure(paths[i], output.strip() or f"trainer exited with code {rc}",
                               status=status)
    records[i] = workdir_lib.read_record(paths[i])
  return records


def die_with_parent() -> None:
  """In a process, before it starts: SIGTERM when its parent dies (Linux's
  PR_SET_PDEATHSIG), so a killed driver or worker leaves no trainer behind, and the trainer
  checkpoints on its way out."""
  try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
  except (OSError, AttributeError):  # Not Linux: the trial locks still keep trainers apart.
    pass


def resume_step(trial_dir: str) -> int:
  """The step the trainer resumes `trial_dir` from: its latest finalized checkpoint, or 0."""
  return max(workdir_lib.checkpoint_steps(trial_dir), default=0)


def run_here(task: Task) -> list[dict[str, Any]]:
  """Trains the task in this process (a warm worker's body): what `wae-train` does for it,
  without a process start, imports and compile-cache loads for each climb. A refused config
  or a crash is recorded as the trainer records it; a stop by a signal (its checkpoint
  saved) or a trial owned by another trainer raises TrialInterrupted."""
  # pylint: disable=g-import-not-at-top  # JAX and the trainer: only a warm worker's.
  from wae_jax import config as config_lib
  from wae_jax import lock
  from wae_jax import loop
  from wae_jax import study
  from wae_jax import trial as trial_lib
  if task.trainer:
    raise ValueError("--trainer: a warm worker trains in its own process, with wae_jax's "
                     "trainer; use another executor for another trainer")
  records = [workdir_lib.read_record(d) for d in task.dirs]
  if all(_final(r, task.num_steps) for r in records):  # A retry of a finished task.
    return records
  with _logging_to(task.dirs):
    try:
      configs = [study.trial_config(t) for t in task.configured()]
      hparams = [[k[len("config."):] for k in t if k.startswith("config.")] or None
                 for t in task.trials]
      results = loop.train_pack(configs, list(task.dirs), False, hparams)
    except lock.Busy as e:
      raise TrialInterrupted(str(e)) from None
    except (config_lib.ConfigError, hyper.SweepError, trial_lib.Damaged) as e:  # Refused.
      results = None
      status = workdir_lib.DAMAGED if isinstance(e, trial_lib.Damaged) else workdir_lib.FAILED
      error = f"wae-train: error: {str(e).strip().splitlines()[0]}"
    except Exception as e:  # pylint: disable=broad-except  # Recorded, as the trainer does.
      results, status = None, workdir_lib.FAILED
      error = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[-1]}"
      logging.exception("Trial crashed")
  if results is None:
    for d in task.dirs:
      if workdir_lib.read_record(d).get("status") not in workdir_lib.FINAL:
        workdir_lib.record_failure(d, error, status=status)
  elif any(r.status == workdir_lib.RUNNING for r in results):
    raise TrialInterrupted("stopped by a signal, checkpoint saved")
  return [workdir_lib.read_record(d) for d in task.dirs]


def _final(record: dict[str, Any], num_steps: int | None) -> bool:
  """Whether a trial's record ends its task: final, and not done below a climb's end."""
  return record.get("status") in workdir_lib.FINAL and not (
      num_steps and record["status"] == workdir_lib.DONE and record.get("step", 0) < num_steps)


@contextlib.contextmanager
def _logging_to(trial_dirs: Sequence[str]):
  """The trainer's log lines go to the trials' `train.log` for the task, as a trainer
  subprocess's output does: streamed into the first when it is local, copied to the rest."""
  paths = [epath.Path(d) for d in trial_dirs]
  for path in paths:
    path.mkdir(parents=True, exist_ok=True)
  local = workdir_lib.is_local(trial_dirs[0])
  handler = logging.get_absl_handler().python_handler
  with (open(paths[0] / workdir_lib.LOG, "w+") if local else tempfile.TemporaryFile("w+")) as log:
    previous = handler.setStream(log)
    try:
      yield
    finally:
      handler.setStream(previous)
      log.seek(0)
      output = log.read()
      for path in paths[1:] if local else paths:
        (path / workdir_lib.LOG).write_text(output)
