"""Running a sweep: any search on any executor, relaunch by relaunch.

The trial directories are the sweep's whole state. The runner restores the search from them
(`searches.Ledger`), asks it for jobs, writes each decision into the trial's `search.json`
(and each proposed point into the ledger) before its trainer starts, runs the job on the
executor (a `supervise.Task` on a worker), and tells the search how it
ended. So a killed sweep relaunched with the same command skips finished trials, finishes
the jobs in flight first and takes the same decisions. As it goes it mirrors the trials into
an Optuna study storage (`mirror.py`) for the live dashboard; nothing is read back from it.
"""

from __future__ import annotations

import concurrent.futures
import sys
from typing import Any, Mapping, Sequence, TextIO

from etils import epath

from wae_jax import curves
from wae_jax import errors
from wae_jax import executors
from wae_jax import hyper
from wae_jax import lock as lock_lib
from wae_jax import progress
from wae_jax import searches
from wae_jax import study
from wae_jax import supervise
from wae_jax import workdir as workdir_lib

PROGRESS_S = 30.0  # The driver's line of running trials, while no job ends.


def run_sweep(s: study.Sweep, workdir: epath.PathLike, *, executor: str = executors.DEFAULT,
              options: Mapping[str, Any] | None = None, pack: int = 1,
              trainer: Sequence[str] | None = None, storage: str | None = None,
              out: TextIO | None = None) -> dict[str, int]:
  """Runs the sweep `s` in `workdir` until its search has nothing left; returns the counts
  per state. `options` are the executor's (`--parallel`, `--ray_address`, ...); `pack` > 1
  trains trials that share their shapes as one program (searches that allow it); `trainer`
  is the command before a trial's flags (or a pack's JSON); `storage` the Optuna mirror's
  URL ("": none; default a SQLite file in `workdir`)."""
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  driver = lock_lib.Lock(workdir, "sweep driver")
  try:
    driver.acquire()
  except lock_lib.Busy as e:
    raise hyper.SweepError(f"{e}; one driver a sweep directory") from None
  except errors.TrialError as e:
    raise hyper.SweepError(str(e)) from None
  try:
    return _Driver(s, workdir, executors.get(executor)(options or {}), pack, trainer,
                   storage, out or sys.stdout).run()
  finally:
    driver.release()


def read_ledger(s: study.Sweep, workdir: epath.Path, pack: int = 1) -> searches.Ledger:
  """What the trial directories say of the sweep `s` (its proposals included), for a
  search to restore from."""
  try:
    ledger = workdir_lib.read_ledger(workdir)
  except (ValueError, OSError):  # Unreadable: `run` sets it aside and starts a new one.
    ledger = None
  trials = {**s.trials, **workdir_lib.proposals(ledger, s.spec)}
  notes = workdir_lib.per_trial(_read_note, workdir, trials)

  resume = {}
  if pack > 1:
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
      resume = dict(zip(trials, pool.map(lambda t: supervise.resume_step(str(workdir / t)),
                                         trials)))
  brackets = study.brackets(trials)
  for b in s.spaces:  # A bracket may be all proposals.
    brackets.setdefault(b, [])
  return searches.Ledger(trials, brackets, workdir_lib.read_records(workdir, trials), notes,
                         lambda t, m: curves.read_curve(workdir / t, m), pack, resume, s.spaces)


def _read_note(trial_dir: epath.Path) -> dict[str, Any] | None:
  try:
    note = workdir_lib.read_json(trial_dir / workdir_lib.SEARCH)
  except (ValueError, OSError):  # Unreadable: the search rebuilds it from the records.
    return None
  return note if isinstance(note, dict) else None


class _Driver:
  """One launch of a sweep: the loop between a search and an executor."""

  def __init__(self, s: study.Sweep, workdir: epath.Path, executor: executors.Executor,
               pack: int, trainer: Sequence[str] | None, storage: str | None, out: TextIO):
    if pack > 1 and not s.search.packs:
      raise hyper.SweepError(f"--pack: the {s.search.name} search trains trials one at a "
                             "time; use --pack=1")
    self.s, self.workdir, self.executor, self.pack = s, workdir, executor, pack
    self.trainer, self.search = trainer, s.search
    if aside := workdir_lib.add_to_ledger(workdir, s.spec, s.trials, searches.spec_of(s.search)):
      print(f"note: {workdir_lib.LEDGER} was unreadable; kept as {aside}, a new one started",
            file=out)
    ledger = read_ledger(s, workdir, pack)
    self.trials = dict(ledger.trials)
    self.states = {t: workdir_lib.TrialState(r.get("status", workdir_lib.PENDING), r.get("step", 0))
                   for t, r in ledger.records.items()}
    self.report = progress.Progress(workdir, s.search, ledger.records, out)
    self.report.say(f"{s.spec}: " + "; ".join(self.search.restore(ledger)) + f", in {workdir}")
    from wae_jax import mirror  # pylint: disable=g-import-not-at-top  # Optuna: a second.
    self.mirror = mirror.Live(workdir, self.search, storage, self.report.say,
                              lambda: self.report.records.values())
    self.running: dict[int, searches.Job] = {}

  def run(self) -> dict[str, int]:
    capacity = self.executor.parallel or self.executor.default_parallel
    started = False
    try:
      while True:
        while len(self.running) < capacity and (job := self.search.next()):
          if not started:
            self.executor.start()
            started = True
          self._launch(job)
        if not self.running:
          break
        self.mirror.sync(self.trials)
        if not (done := self.executor.wait(PROGRESS_S)):
          self.report.running([t for j in self.running.values() for t in j.tids])
        for d in done:
          self._finish(self.running.pop(d.key), d)
    finally:
      if started:
        self.executor.shutdown()
    for tid in self.search.in_flight():  # Left for the next launch.
      self.states[tid] = workdir_lib.TrialState(workdir_lib.INTERRUPTED, self.states[tid].step)
    self.report.say(*self.search.summary())
    counts = progress.counts(self.states)
    self.report.say(f"{self.s.spec}: {progress.format_counts(counts)}")
    self.mirror.sync(self.trials, final=True)
    return counts

  def _launch(self, job: searches.Job) -> None:
    if job.proposed:  # Recorded before anything of theirs exists.
      workdir_lib.add_proposals(self.workdir, self.s.spec, job.proposed)
      self.trials.update(job.proposed)
      self.states.update({t: workdir_lib.TrialState(workdir_lib.PENDING) for t in job.proposed})
    self._write_notes(job.tids)
    if job.note:
      self.report.say(*job.note.splitlines())
    key = self.executor.submit(supervise.Task(
        tuple(self.trials[t] for t in job.tids), tuple(str(self.workdir / t) for t in job.tids),
        job.num_steps, tuple(self.trainer) if self.trainer else None))
    self.running[key] = job

  def _finish(self, job: searches.Job, done: executors.Done) -> None:
    if done.error is None:
      records = done.result
    else:  # Out of retries: left for the next launch, but members of a pack may have finished.
      lost = {"status": workdir_lib.INTERRUPTED, "error": done.error}
      records = [workdir_lib.read_record(self.workdir / t) for t in job.tids]
      records = [r if r.get("status") in workdir_lib.FINAL else lost for r in records]
    for tid, record in zip(job.tids, records):
      self.states[tid] = workdir_lib.TrialState(record["status"], record.get("step", 0))
    lines = self.search.finished(job, records)
    self._write_notes(job.tids)
    self.report.finished(job, records, lines)

  def _write_notes(self, tids: Sequence[str]) -> None:
    for tid in tids:
      if (note := self.search.note(tid)) is not None:
        workdir_lib.write_json(self.workdir / tid / workdir_lib.SEARCH, note)


