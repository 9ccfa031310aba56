"""Running a sweep: its trials' trainers as subprocesses of Ray tasks, relaunch by relaunch.

A trial directory's `metrics.json` is the trial's whole state: the runner decides what to
(re)run only from it, so a killed sweep relaunched with the same command skips finished
trials and resumes the others from their checkpoints. Each trial runs the trainer as a
subprocess inside a Ray task, so a crashing trial cannot take the sweep down, and a worker
that dies takes its trainer with it (Ray kills the worker's process group) and has its task
retried. With `pack` > 1, trials that share their array shapes (`pack.signature`) and their
resume step train K at a time as one vmapped program in one task: K small models fill a
device one cannot.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Mapping, Sequence, TextIO

from etils import epath
import numpy as np

from wae_jax import hyper
from wae_jax import lock as lock_lib
from wae_jax import progress
from wae_jax import study
from wae_jax import workdir as workdir_lib


PROGRESS_S = 30.0  # The driver's line of running trials, while none finishes.
SHOWN = 4  # Running trials named on it.


class TrialInterrupted(RuntimeError):
  """The trainer stopped before a final status (a signal, a kill): Ray retries the task."""


def default_trainer() -> list[str]:
  """`wae-train` on this (worker) machine, before a trial's flags."""
  return [sys.executable, "-m", "wae_jax.cli.train"]


def default_pack_trainer() -> list[str]:
  """`wae-train --pack` on this (worker) machine, before a pack's JSON."""
  return [*default_trainer(), "--pack"]


# ----------------------------------------------------------------------------------------
# The bodies of Ray tasks.


def run_trial(flags: Sequence[str], trial_dir: str,
              trainer: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs `trainer flags` on `trial_dir` until it reports a final status; returns that record.

  `trainer` defaults to `default_trainer()`.
  """
  record = workdir_lib.read_record(trial_dir)
  if record.get("status") in workdir_lib.FINAL:  # A retry of a task whose trainer finished.
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
  stopped by a signal raises TrialInterrupted, so Ray retries it and it resumes.
  """
  paths = [epath.Path(d) for d in trial_dirs]
  for path in paths:
    path.mkdir(parents=True, exist_ok=True)
  local = workdir_lib.is_local(trial_dirs[0])  # Stream the log into a trial dir; else upload.
  with (open(paths[0] / workdir_lib.LOG, "w+b") if local else tempfile.TemporaryFile()) as log:
    rc = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log,
                        stderr=subprocess.STDOUT, check=False,
                        preexec_fn=_die_with_parent).returncode
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
  for i in unfinished:
    workdir_lib.record_failure(paths[i], output.strip() or f"trainer exited with code {rc}")
    records[i] = workdir_lib.read_record(paths[i])
  return records


def _die_with_parent() -> None:
  """In the trainer's process, before it starts: SIGTERM when its Ray worker dies (Linux's
  PR_SET_PDEATHSIG), so a killed driver leaves no trainer behind, and the trainer
  checkpoints on its way out."""
  try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
  except (OSError, AttributeError):  # Not Linux: the trial locks still keep trainers apart.
    pass


def resume_step(trial_dir: str) -> int:
  """The step the trainer resumes `trial_dir` from: its latest finalized checkpoint, or 0."""
  return max(workdir_lib.checkpoint_steps(trial_dir), default=0)


# ----------------------------------------------------------------------------------------
# The driver.


def pack_trials(trials: Mapping[str, hyper.Trial], resume_steps: Mapping[str, int],
                size: int) -> list[list[str]]:
  """Trial ids in packs of at most `size` that can train as one program, in the sweep's order.

  Trials share a pack only if their configs agree on every field that shapes the program
  (`pack.signature`: not on seeds, lambda, learning rates, step counts) and they resume
  from the same checkpoint step (`resume_steps`, 0 if absent). Each such group is cut into
  the fewest packs, of sizes that differ by at most one.
  """
  from wae_jax import pack  # pylint: disable=g-import-not-at-top  # Imports JAX; packs only.
  groups, bases = {}, {}
  for tid, trial in trials.items():
    shapes = json.dumps(pack.signature(study.trial_config(trial, bases, tid)), sort_keys=True)
    groups.setdefault((shapes, resume_steps.get(tid, 0)), []).append(tid)
  packs = []
  for ids in groups.values():
    n = -(-len(ids) // size)
    cuts = [len(ids) * i // n for i in range(n + 1)]
    packs += [ids[a:b] for a, b in zip(cuts, cuts[1:])]
  return packs


def run_sweep(s: study.Sweep, workdir: epath.PathLike, *, parallel: int | None = None,
              pack: int = 1, ray_address: str | None = None,
              trainer: Sequence[str] | None = None,
              resources: Mapping[str, float] | None = None, max_retries: int = 2,
              out: TextIO | None = None) -> dict[str, int]:
  """Runs every trial of `s` not yet final in `workdir`; returns the counts per state.

  With `pack` > 1, trials train up to `pack` at a time as one program (see `pack_trials`);
  each pack is one Ray task, and `trainer` is the command before its JSON (see `run_pack`).
  Otherwise each trial is a task, and `trainer` the command before `--config=...` (see
  `run_trial`). Without `ray_address`, starts a local Ray with `parallel` CPUs (one task
  each), unless Ray is already initialised in this process. `parallel` also caps the tasks
  in flight; `resources` are each task's Ray resources (default one CPU).
  """
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  driver = lock_lib.Lock(workdir, "sweep driver")
  try:
    driver.acquire()
  except lock_lib.Busy as e:
    raise hyper.SweepError(f"{e}; one driver a sweep directory") from None
  try:
    return _run_owned(s, workdir, out or sys.stdout, parallel=parallel, pack=pack,
                      ray_address=ray_address, trainer=trainer, resources=resources,
                      max_retries=max_retries)
  finally:
    driver.release()


def _run_owned(s: study.Sweep, workdir: epath.Path, out: TextIO, *, parallel, pack,
               ray_address, trainer, resources, max_retries) -> dict[str, int]:
  import ray  # pylint: disable=g-import-not-at-top  # Slow to import; only `run` needs it.

  aside = workdir_lib.add_to_ledger(workdir, s.spec, s.trials)
  if aside:
    print(f"note: {workdir_lib.LEDGER} was unreadable; kept as {aside}, a new one started",
          file=out)
  states = workdir_lib.read_states(workdir, s.trials)
  todo = [i for i, st in states.items() if st.status not in workdir_lib.FINAL]
  if pack > 1:
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
      steps = dict(zip(todo, pool.map(lambda i: resume_step(str(workdir / i)), todo)))
    units = pack_trials({i: s.trials[i] for i in todo}, steps, pack)
  else:
    units = [[i] for i in todo]
  packs = f" as {len(units)} pack{'s' * (len(units) != 1)} of <= {pack}" if pack > 1 else ""
  print(f"{s.spec}: {len(s.trials)} trials, {len(s.trials) - len(todo)} already final, "
        f"{len(todo)} to run{packs} in {workdir}", file=out, flush=True)
  if not todo:
    return _counts(states)
  started_ray = not ray.is_initialized()
  if started_ray:
    try:
      ray.init(address=ray_address or "local",  # "local": a new instance, never a stale one.
               num_cpus=None if ray_address else (parallel or 1), include_dashboard=False,
               log_to_driver=False, logging_level="ERROR")
    except ConnectionError as e:
      raise hyper.SweepError(f"--ray_address: {str(e).strip().splitlines()[-1]}") from None
  resources = dict(resources or {"CPU": 1})
  options = dict(
      num_cpus=resources.pop("CPU", 0), num_gpus=resources.pop("GPU", 0), resources=resources,
      max_retries=max_retries, retry_exceptions=[TrialInterrupted])
  trial_task = ray.remote(run_trial).options(**options)
  pack_task = ray.remote(run_pack).options(**options)

  def launch(unit: list[str]):
    if pack > 1:
      return pack_task.remote([(s.trials[i], str(workdir / i)) for i in unit], trainer)
    base, *overrides = study.flags_of(s.trials[unit[0]])
    flags = [base, f"--workdir={workdir / unit[0]}", *overrides]
    return trial_task.remote(flags, str(workdir / unit[0]), trainer)

  report = _Progress(workdir, todo, out)
  queue, running = list(reversed(units)), {}
  try:
    while queue or running:
      while queue and len(running) < (parallel or len(units)):
        unit = queue.pop()
        running[launch(unit)] = unit
      ready, _ = ray.wait(list(running), num_returns=1, timeout=PROGRESS_S)
      if not ready:
        report.running([i for unit in running.values() for i in unit])
        continue
      ref = ready[0]
      unit = running.pop(ref)
      try:
        records = ray.get(ref)
        records = records if pack > 1 else [records]
      except ray.exceptions.RayError as e:  # Out of retries: left for the next launch.
        lost = {"status": workdir_lib.INTERRUPTED, "error": str(e).strip().splitlines()[-1]}
        # Members of a pack may have finished.
        records = [workdir_lib.read_record(workdir / i) for i in unit]
        records = [r if r.get("status") in workdir_lib.FINAL else lost for r in records]
      for tid, record in zip(unit, records):
        states[tid] = workdir_lib.TrialState(record["status"], record.get("step", 0))
        report.finished(tid, record)
  finally:
    if started_ray:
      ray.shutdown()
  counts = _counts(states)
  print(f"{s.spec}: " + _format_counts(counts), file=out, flush=True)
  return counts


# ----------------------------------------------------------------------------------------
# What the driver prints.


def _counts(states: Mapping[str, workdir_lib.TrialState]) -> dict[str, int]:
  counts = {}
  for st in states.values():
    counts[st.status] = counts.get(st.status, 0) + 1
  return counts


def _format_counts(counts: Mapping[str, int]) -> str:
  order = list(workdir_lib.STATUSES) + sorted(set(counts) - set(workdir_lib.STATUSES))
  return "  ".join(f"{k} {counts[k]}" for k in order if counts.get(k))


class _Progress:
  """A line per finished trial (its outcome), and every PROGRESS_S seconds without one a
  line of the running trials (step, loss). The bar and the ETA count steps, from the
  trials' records: the rate is this run's steps a second, and a trial that has not started
  counts the mean `num_steps` of those that have."""

  def __init__(self, workdir: epath.Path, todo: Sequence[str], out: TextIO):
    self.workdir, self.out, self.start = workdir, out, time.time()
    self.records: dict[str, Mapping[str, Any]] = {}
    self._read(todo)
    self.initial = self._steps()[0]

  def _read(self, tids: Sequence[str]) -> None:
    self.records.update(workdir_lib.read_records(self.workdir, tids))

  def _steps(self) -> tuple[int, int]:
    """Steps done and to do in all, final trials counting as done."""
    known = [r["num_steps"] for r in self.records.values() if r.get("num_steps")]
    mean = int(np.mean(known)) if known else 0
    total = done = 0
    for r in self.records.values():
      n = r.get("num_steps") or mean
      total += n
      done += n if r.get("status") in workdir_lib.FINAL else min(r.get("step") or 0, n)
    return done, total

  def _line(self) -> str:
    done, total = self._steps()
    rate = (done - self.initial) / (time.time() - self.start)
    eta = (total - done) / rate if rate > 0 else math.inf
    return (f"{progress.bar(done / max(total, 1))} {done:,}/{total:,} steps  "
            f"eta {progress.duration(eta)}")

  def finished(self, tid: str, record: Mapping[str, Any]) -> None:
    self.records[tid] = record
    error = f"  ({record['error']})" if record.get("error") else ""
    print(f"{self._line()}  {tid} {record['status']} at step {record.get('step', '?')}{error}",
          file=self.out, flush=True)

  def running(self, tids: Sequence[str]) -> None:
    self._read(tids)
    shown = []
    for tid in tids[:SHOWN]:
      r = self.records[tid]
      loss = (r.get(workdir_lib.TRAIN) or {}).get("loss")
      shown.append(f"{tid} {r.get('step', 0)}/{r.get('num_steps', '?')}"
                   + ("" if loss is None else f" loss {loss:.4g}"))
    more = f" +{len(tids) - SHOWN} more" if len(tids) > SHOWN else ""
    print(f"{self._line()}  running: {', '.join(shown)}{more}", file=self.out, flush=True)


def sweep_status(s: study.Sweep, workdir: epath.PathLike,
                 out: TextIO | None = None) -> dict[str, int]:
  """Prints counts per state, a progress bar, and an ETA from the rate since the last launch.

  The rate counts trials whose `metrics.json` became final after the ledger's launch time.
  """
  out = out or sys.stdout
  workdir = epath.Path(workdir)
  states = workdir_lib.read_states(workdir, s.trials)
  counts = _counts(states)
  final = [st for st in states.values() if st.status in workdir_lib.FINAL]
  try:
    launched = (workdir_lib.read_ledger(workdir) or {}).get("launched_at")
  except (ValueError, OSError, AttributeError):  # Unreadable: `run` starts a new one.
    launched = None
  now = time.time()
  recent = sum(1 for st in final if launched and st.mtime and st.mtime >= launched)
  rate = recent / (now - launched) if recent else 0.0
  left = len(states) - len(final)
  eta = left / rate if rate else math.inf if left else 0
  print(f"{s.spec} in {workdir}: {len(states)} trials  " + _format_counts(counts), file=out)
  print(f"{progress.bar(len(final) / len(states))} {len(final)}/{len(states)} final  "
        f"{3600 * rate:.1f} trials/h  eta {progress.duration(eta)}",
        file=out)
  return counts


def list_sweep(s: study.Sweep, out: TextIO | None = None) -> dict[str, int]:
  """Prints one line per trial (id and flags) and the number of trials per base config."""
  out = out or sys.stdout
  per_base = {}
  for tid, trial in s.trials.items():
    print(tid, *study.flags_of(trial), file=out)
    per_base[trial[study.BASE]] = per_base.get(trial[study.BASE], 0) + 1
  for base, n in per_base.items():
    print(f"# {base}: {n} trials", file=out)
  print(f"# {s.spec}: {len(s.trials)} trials", file=out)
  return per_base
