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

import collections
import concurrent.futures
import ctypes
import dataclasses
import json
import math
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Mapping, Sequence, TextIO

from etils import epath
import numpy as np

from wae_jax import asha
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
              trainer: Sequence[str] | None = None, num_steps: int | None = None
              ) -> dict[str, Any]:
  """Runs `trainer flags` on `trial_dir` until it reports a final status; returns that record.

  `trainer` defaults to `default_trainer()`. `num_steps` is the step a climb of an ASHA
  search ends at (the flags say so too): a trial done below it is not finished.
  """
  record = workdir_lib.read_record(trial_dir)
  if record.get("status") in workdir_lib.FINAL and not (  # A retry of a finished task.
      num_steps and record["status"] == workdir_lib.DONE and record.get("step", 0) < num_steps):
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

  if pack > 1 and s.search:
    raise hyper.SweepError("--pack: an asha search climbs trials one at a time; use --pack=1")
  aside = workdir_lib.add_to_ledger(workdir, s.spec, s.trials,
                                    s.search and dataclasses.asdict(s.search))
  if aside:
    print(f"note: {workdir_lib.LEDGER} was unreadable; kept as {aside}, a new one started",
          file=out)
  states = workdir_lib.read_states(workdir, s.trials)
  plan = _Ladder(s, workdir, out) if s.search else _full_budget(s, workdir, states, pack, out)
  if plan.idle():
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

  def launch(job: Job):
    if pack > 1:
      return pack_task.remote([(s.trials[i], str(workdir / i)) for i in job.unit], trainer)
    tid, = job.unit
    trial = s.trials[tid] if job.num_steps is None else {**s.trials[tid],
                                                         "config.num_steps": job.num_steps}
    base, *overrides = study.flags_of(trial)
    flags = [base, f"--workdir={workdir / tid}", *overrides]
    return trial_task.remote(flags, str(workdir / tid), trainer, job.num_steps)

  running = {}
  try:
    while True:
      while len(running) < (parallel or math.inf) and (job := plan.next()):
        running[launch(job)] = job
      if not running:
        break
      ready, _ = ray.wait(list(running), num_returns=1, timeout=PROGRESS_S)
      if not ready:
        plan.running(list(running.values()))
        continue
      ref = ready[0]
      job = running.pop(ref)
      try:
        records = ray.get(ref)
        records = records if pack > 1 else [records]
      except ray.exceptions.RayError as e:  # Out of retries: left for the next launch.
        lost = {"status": workdir_lib.INTERRUPTED, "error": str(e).strip().splitlines()[-1]}
        # Members of a pack may have finished.
        records = [workdir_lib.read_record(workdir / i) for i in job.unit]
        records = [r if r.get("status") in workdir_lib.FINAL else lost for r in records]
      for tid, record in zip(job.unit, records):
        states[tid] = workdir_lib.TrialState(record["status"], record.get("step", 0))
      plan.finished(job, records)
  finally:
    if started_ray:
      ray.shutdown()
  for tid in plan.unfinished():  # Climbs left for the next launch (a trial may be done below).
    states[tid] = workdir_lib.TrialState(workdir_lib.INTERRUPTED, states[tid].step)
  counts = _counts(states)
  plan.summary()
  print(f"{s.spec}: " + _format_counts(counts), file=out, flush=True)
  return counts


@dataclasses.dataclass(frozen=True)
class Job:
  """One Ray task: a trial (or a pack), to its full budget or, climbing, to `num_steps`."""
  unit: tuple[str, ...]
  num_steps: int | None = None


class _FullBudget:
  """Random search: every trial not yet final, to its full budget, in the sweep's order."""

  def __init__(self, jobs: Sequence[Job], report: _Progress):
    self.queue, self.report = list(reversed(jobs)), report

  def idle(self) -> bool:
    return not self.queue

  def next(self) -> Job | None:
    return self.queue.pop() if self.queue else None

  def running(self, jobs: Sequence[Job]) -> None:
    self.report.running([i for job in jobs for i in job.unit])

  def finished(self, job: Job, records: Sequence[dict[str, Any]]) -> None:
    for tid, record in zip(job.unit, records):
      self.report.finished(tid, record)

  def unfinished(self) -> list[str]:
    return []

  def summary(self) -> None:
    pass


def _full_budget(s: study.Sweep, workdir: epath.Path,
                 states: Mapping[str, workdir_lib.TrialState], pack: int,
                 out: TextIO) -> _FullBudget:
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
  return _FullBudget([Job(tuple(u)) for u in units], _Progress(workdir, todo, out) if todo
                     else None)


def restore_scheduler(s: study.Sweep, workdir: epath.Path) -> asha.Scheduler:
  """The ASHA scheduler as the trial directories leave it: each one's rungs.json, else (lost
  or unreadable) what its events and metrics.json say of the rungs it reached."""

  def read(tid):
    target, results = asha.read_rungs(workdir / tid)
    if target is None and workdir_lib.read_record(workdir / tid):
      target, results = asha.rebuild_rungs(s.search, workdir / tid)
    return target, results

  scheduler = asha.Scheduler(s.search, s.brackets())
  with concurrent.futures.ThreadPoolExecutor(32) as pool:
    for tid, (target, results) in zip(s.trials, pool.map(read, s.trials)):
      scheduler.restore(tid, target, results)
  return scheduler


class _Ladder:
  """An ASHA search: each decision is written to the trial's `rungs.json` before its climb
  starts and each rung's metric when it ends, so a relaunch (which first finishes the
  climbs in flight) takes the same decisions. Prints the decisions as they are taken."""

  def __init__(self, s: study.Sweep, workdir: epath.Path, out: TextIO):
    self.s, self.search, self.workdir, self.out = s, s.search, workdir, out
    self.scheduler = restore_scheduler(s, workdir)
    self.bracket = {tid: b for b, ids in self.scheduler.brackets.items() for tid in ids}
    self.resume = self.scheduler.in_flight()
    self.announced = {(b, k) for b in self.scheduler.brackets
                      for k in range(len(self.search.rungs)) if self.scheduler.complete(b, k)}
    self.start = time.time()
    climbs = sum(len(r) for r in self.scheduler.results.values())
    print(f"{s.spec}: {len(s.trials)} trials in {len(self.scheduler.brackets)} brackets, ASHA "
          f"by {self.search.metric} over rungs {', '.join(map(str, self.search.rungs))} "
          f"(eta {self.search.eta}); {climbs} rungs reached, {len(self.resume)} climbs to "
          f"resume, in {workdir}", file=out, flush=True)

  def idle(self) -> bool:
    return not self.resume and not any(map(self.scheduler.candidate, self.scheduler.brackets))

  def next(self) -> Job | None:
    if self.resume:
      tid, steps = self.resume.pop(0)
      self._say(f"resume  {tid}  {self.bracket[tid]}  to rung {steps}")
    elif job := self.scheduler.next_job():
      tid, steps = job
      rungs = self.search.rungs
      asha.write_rungs(self.workdir / tid, steps, self.scheduler.results.get(tid, {}))
      if steps == rungs[0]:
        self._say(f"start   {tid}  {self.bracket[tid]}  to rung {steps}")
      else:
        below = rungs[rungs.index(steps) - 1]
        self._say(f"promote {tid}  {self.bracket[tid]}  {below} -> {steps}  "
                  f"({self._standing(tid, below)})")
      self._announce_stops()
    else:
      return None
    return Job((tid,), steps)

  def finished(self, job: Job, records: Sequence[dict[str, Any]]) -> None:
    (tid,), (record,) = job.unit, records
    value = asha.rung_value(self.search, record, job.num_steps)
    if value is False:  # Interrupted: its climb resumes at the next launch.
      self._say(f"{tid}  {record.get('status')} at step {record.get('step', 0)}"
                + (f"  ({record['error']})" if record.get("error") else ""))
      return
    self.scheduler.record(tid, job.num_steps, value)
    asha.write_rungs(self.workdir / tid, job.num_steps, self.scheduler.results[tid])
    error = f"  {record['status']}: {record.get('error')}" if value is None else ""
    self._say(f"rung    {tid}  {self.bracket[tid]}  {job.num_steps}: "
              f"{self._standing(tid, job.num_steps)}{error}")
    self._announce_stops()

  def _standing(self, tid: str, steps: int) -> str:
    ranked = self.scheduler.ranked(self.bracket[tid], steps)
    value = self.scheduler.results[tid][steps]
    shown = "none" if value is None else f"{value:.4g}"
    return f"{self.search.metric} {shown}, {ranked.index(tid) + 1} of {len(ranked)}"

  def _announce_stops(self) -> None:
    for b in self.scheduler.brackets:
      for k, steps in enumerate(self.search.rungs[:-1]):
        if (b, k) not in self.announced and self.scheduler.complete(b, k):
          self.announced.add((b, k))
          stopped = self.scheduler.stopped(b, k)
          up = len(self.scheduler.ranked(b, steps)) - len(stopped)
          self._say(f"rung {steps} of {b} complete: {up} promoted, {len(stopped)} stopped "
                    f"({', '.join(stopped) or 'none'})")

  def running(self, jobs: Sequence[Job]) -> None:
    records = workdir_lib.read_records(self.workdir, [j.unit[0] for j in jobs])
    lines = []
    for job in jobs[:SHOWN]:
      tid = job.unit[0]
      r = records.get(tid) or {}
      value = (r.get("metrics") or {}).get(self.search.metric)
      latest = "" if value is None else f"  {self.search.metric} {value:.4g} at the last rung"
      lines.append(f"  {tid}  {self.bracket[tid]}  rung {job.num_steps}  step "
                   f"{r.get('step', 0)}/{job.num_steps}{latest}")
    more = [f"  +{len(jobs) - SHOWN} more"] if len(jobs) > SHOWN else []
    self._say(f"running; {self._spent()} so far:", *lines, *more)

  def unfinished(self) -> list[str]:
    return [tid for tid, _ in self.scheduler.in_flight()]

  def _spent(self) -> str:
    done = sum(self.scheduler.spent(b) for b in self.scheduler.brackets)
    full = self.search.max_steps * len(self.s.trials)
    return f"{done:,} model-steps ({100 * done / full:.0f}% of random search's {full:,})"

  def _say(self, *lines: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"{stamp} {lines[0]}", *lines[1:], sep="\n", file=self.out, flush=True)

  def summary(self) -> None:
    self._say(f"ASHA: {self._spent()} given out in {progress.duration(time.time() - self.start)}")
    for b in self.scheduler.brackets:
      best = self.scheduler.best(b)
      reached = collections.Counter(self.scheduler.reached(t) for t in self.scheduler.brackets[b])
      rungs = ", ".join(f"{reached[r]} at {r}" for r in self.search.rungs if reached[r])
      shown = (f"best {best} ({self.search.metric} "
               f"{self.scheduler.results[best][self.search.max_steps]:.4g})" if best
               else "no trial at the full budget yet")
      self._say(f"  {b}: {shown}; {self.scheduler.spent(b):,} model-steps; trials: {rungs}")


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
  if s.search:  # A trial done at a rung may climb on: say where each bracket stands.
    scheduler = restore_scheduler(s, workdir)
    for bracket, ids in scheduler.brackets.items():
      reached = collections.Counter(scheduler.reached(t) for t in ids)
      print(f"  {bracket}: " + ", ".join(f"{reached[r]} at rung {r}" for r in s.search.rungs)
            + f", {sum(t in ids for t, _ in scheduler.in_flight())} climbing, "
            f"{reached[0]} not started; {scheduler.spent(bracket):,} model-steps", file=out)
    return counts
  print(f"{progress.bar(len(final) / len(states))} {len(final)}/{len(states)} final  "
        f"{3600 * rate:.1f} trials/h  eta {progress.duration(eta)}",
        file=out)
  return counts


def list_sweep(s: study.Sweep, out: TextIO | None = None) -> dict[str, int]:
  """Prints one line per trial (id and flags) and the number of trials per base config."""
  out = out or sys.stdout
  per_base = {}
  for tid, trial in s.trials.items():
    print(tid, *map(shlex.quote, study.flags_of(trial)), file=out)  # Pasteable into a shell.
    per_base[trial[study.BASE]] = per_base.get(trial[study.BASE], 0) + 1
  for base, n in per_base.items():
    print(f"# {base}: {n} trials", file=out)
  print(f"# {s.spec}: {len(s.trials)} trials", file=out)
  if s.search:
    print(f"# search: asha by {s.search.metric} over rungs "
          f"{', '.join(map(str, s.search.rungs))} (eta {s.search.eta}), a bracket per base",
          file=out)
  return per_base
