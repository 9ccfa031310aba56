"""Asynchronous successive halving (ASHA; Li et al., MLSys 2020) over a sweep's trials.

A trial climbs rungs of `min_steps * eta**k` steps, up to `max_steps`, by resuming from its
own checkpoint with a larger `num_steps`; the end of each climb evaluates it, and that
metric decides the next climb. A trial goes up as soon as it is in the top 1/eta of the
results its rung has so far, so no rung waits for stragglers. Each base config (an
algorithm) is a bracket of its own, ranked only against itself, and the next job goes to
the bracket that has been given the fewest model-steps, so algorithms get equal compute.
With `finalists` > 1, the rung below the full budget sends at least that many of each
bracket on once it is settled: its ranks are the noisiest cut that matters (one of four
goes on at eta 4), and the second best there is often the best at the end.

`Scheduler` is the promotion rule alone; `Asha` is the search around it: a trial's note
(`search.json`) is the rung it was sent to and its metric at every rung it reached, written
before each climb starts, so a relaunch finishes the climbs in flight first.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Mapping, Sequence

from wae_jax import evaluators
from wae_jax import searches
from wae_jax import workdir as workdir_lib
from wae_jax.hyper import SweepError

OPTIONS = ("min_steps", "eta", "max_steps", "metric")  # What every ASHA variant needs.
OPTIONAL = {"finalists": 1}  # ... and what it may set (default).


def rungs_of(min_steps: int, eta: int, max_steps: int) -> tuple[int, ...]:
  """r, r eta, r eta^2, ... while below R, then R."""
  steps = []
  while (r := min_steps * eta ** len(steps)) < max_steps:
    steps.append(r)
  return (*steps, max_steps)


def sort_key(metric: str):
  """Sort key of a metric's values, best first; a missing or non-finite value (a diverged
  trial) is last."""
  higher = bool(evaluators.metrics()[metric].higher_is_better)

  def key(value: float | None) -> float:
    if value is None or not math.isfinite(value):
      return math.inf
    return -value if higher else value
  return key


def check_metric(metric: Any, field: str = "search.metric") -> str:
  declared = evaluators.metrics()
  if metric not in declared or declared[metric].higher_is_better is None:
    scores = sorted(m for m, d in declared.items() if d.higher_is_better is not None)
    raise SweepError(f"{field}: {metric!r} is not a declared score (known: {', '.join(scores)})")
  return metric


class Scheduler:
  """The promotion rule over brackets of trial ids (each in the sweep's order), without
  files or time. `next_job` takes a decision: (trial id, rung steps); `record` gives the
  metric a trial reached at a rung; `restore` puts back what a trial's note says.

  A rung ranks its trials by `score` (the metric's sort key; a curve-aware search ranks by a
  prediction instead). A bracket whose trials are proposed as it goes (`add`) has a planned
  size (`sizes`): its first rung is not complete while trials may still join it.
  """

  def __init__(self, rungs: Sequence[int], eta: int, key,
               brackets: Mapping[str, Sequence[str]], sizes: Mapping[str, int] | None = None,
               finalists: int = 1):
    self.rungs, self.eta, self.key, self.finalists = tuple(rungs), eta, key, finalists
    self.brackets = {b: list(ids) for b, ids in brackets.items()}
    self.sizes = dict(sizes or {})
    self.order = {tid: i for ids in self.brackets.values() for i, tid in enumerate(ids)}
    self.target: dict[str, int] = {}  # The rung each started trial was sent to last.
    self.results: dict[str, dict[int, float | None]] = {}  # Metric by rung reached.

  def restore(self, tid: str, target: int | None, results: Mapping[int, float | None]) -> None:
    if target is not None:
      self.target[tid] = target
    self.results[tid] = dict(results)

  def record(self, tid: str, steps: int, value: float | None) -> None:
    self.results.setdefault(tid, {})[steps] = value

  def add(self, bracket: str, tid: str) -> None:
    """A trial joins the bracket (a proposed point), last in its order."""
    self.order[tid] = len(self.brackets[bracket])
    self.brackets[bracket].append(tid)
    self.results[tid] = {}

  def score(self, tid: str, steps: int) -> float:
    """What rung `steps` ranks the trial by, lower first."""
    return self.key(self.results[tid][steps])

  def fresh(self, bracket: str) -> str | None:
    """The bracket's next trial to start (None: none left)."""
    return next((t for t in self.brackets[bracket] if t not in self.target), None)

  def in_flight(self) -> list[tuple[str, int]]:
    """Climbs decided but without a result (at a relaunch: the ones to finish first)."""
    return [(tid, steps) for tid, steps in self.target.items()
            if steps not in self.results.get(tid, {})]

  def spent(self, bracket: str) -> int:
    """Model-steps the bracket has been given: each trial's steps up to its latest rung."""
    return sum(self.target.get(tid, 0) for tid in self.brackets[bracket])

  def ranked(self, bracket: str, steps: int) -> list[str]:
    """The bracket's trials with a result at rung `steps`, best first (ties: sweep order)."""
    done = [tid for tid in self.brackets[bracket] if steps in self.results.get(tid, {})]
    return sorted(done, key=lambda t: (self.score(t, steps), self.order[t]))

  def promotable(self, bracket: str, k: int) -> list[str]:
    """Trials of rung k in the top 1/eta of its results so far, not yet sent higher."""
    if k == len(self.rungs) - 1:
      return []
    steps = self.rungs[k]
    ranked = self.ranked(bracket, steps)
    # A rung that can get no further result sends its best on even when 1/eta of it rounds
    # to none (each bracket's best of a finite trial set reaches the full budget), and the
    # rung below the full budget at least `finalists`.
    least = (self.finalists if k == len(self.rungs) - 2 else 1) if self._arrived(bracket, k) else 0
    top = ranked[:max(len(ranked) // self.eta, least)]
    return [t for t in top if self.target.get(t) == steps
            and math.isfinite(self.score(t, steps))]

  def candidate(self, bracket: str) -> tuple[str, int] | None:
    """The bracket's next climb, not yet decided: its best promotion, else a new trial."""
    for k in reversed(range(len(self.rungs) - 1)):  # The highest promotion first.
      if up := self.promotable(bracket, k):
        return up[0], self.rungs[k + 1]
    fresh = self.fresh(bracket)
    return None if fresh is None else (fresh, self.rungs[0])

  def next_job(self) -> tuple[str, int] | None:
    """Decides the next climb, for the bracket given the fewest model-steps that has one."""
    for bracket in sorted(self.brackets, key=self.spent):  # Stable: ties in sweep order.
      if job := self.candidate(bracket):
        self.target[job[0]] = job[1]
        return job
    return None

  def reached(self, tid: str) -> int:
    """The highest rung (steps) with a result, 0 for none."""
    return max(self.results.get(tid, {}), default=0)

  def _arrived(self, bracket: str, k: int) -> bool:
    """Whether rung k of the bracket can get no further result."""
    steps = self.rungs[k]
    if k > 0 and not self.complete(bracket, k - 1):
      return False
    if len(self.brackets[bracket]) < self.sizes.get(bracket, 0):  # More are to join it.
      return False
    return all(steps in self.results.get(t, {}) for t in self.brackets[bracket]
               if k == 0 or self.target.get(t, 0) >= steps)

  def complete(self, bracket: str, k: int) -> bool:
    """Whether rung k of the bracket is settled: no result can still arrive, and every
    promotion it earned is decided (so the trials left at k stop there for good)."""
    return self._arrived(bracket, k) and not self.promotable(bracket, k)

  def stopped(self, bracket: str, k: int) -> list[str]:
    """Trials whose climb ended at rung k for good (rung complete, not promoted)."""
    if k == len(self.rungs) - 1 or not self.complete(bracket, k):
      return []
    return [t for t in self.ranked(bracket, self.rungs[k]) if self.target.get(t) == self.rungs[k]]

  def best(self, bracket: str) -> str | None:
    """The bracket's best trial at the full budget (None before one reaches it)."""
    ranked = self.ranked(bracket, self.rungs[-1])
    return ranked[0] if ranked else None


def rung_value(metric: str, record: Mapping[str, Any], steps: int) -> float | None | bool:
  """The metric a trainer's final record gives rung `steps`: its value, None for a trial
  that cannot climb (diverged, failed, no such metric), or False while it has not got
  there (the climb is to be resumed)."""
  status = record.get("status")
  if status in (workdir_lib.DIVERGED, workdir_lib.FAILED):
    return None
  if status != workdir_lib.DONE or record.get("step", 0) < steps:
    return False
  value = (record.get("metrics") or {}).get(metric)
  return float(value) if isinstance(value, (int, float)) else None


@searches.register("asha")
class Asha(searches.Search):
  """Options: min_steps (r, the first rung), eta (1/eta of a rung goes up, with eta times
  the steps), max_steps (R, every trial's full budget), metric (a declared score), and
  finalists (at least this many of a bracket reach R; default 1)."""
  option_names = (*OPTIONS, *OPTIONAL)

  def __init__(self, options: Mapping[str, Any]):
    super().__init__(options)
    if missing := [f for f in OPTIONS if f not in options]:
      raise SweepError(f"search.{missing[0]}: the {self.name} search needs it")
    options = {**OPTIONAL, **options}
    for field, lowest in (("min_steps", 1), ("eta", 2), ("max_steps", 1), ("finalists", 1)):
      value = options[field]
      if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
        raise SweepError(f"search.{field}: must be an integer >= {lowest}, got {value!r}")
    if options["max_steps"] < options["min_steps"]:
      raise SweepError(f"search.max_steps: {options['max_steps']} is below search.min_steps "
                       f"{options['min_steps']}")
    self.min_steps, self.eta = options["min_steps"], options["eta"]
    self.max_steps, self.metric = options["max_steps"], check_metric(options["metric"])
    self.rungs = rungs_of(self.min_steps, self.eta, self.max_steps)
    self.finalists = options["finalists"]
    self.key = sort_key(self.metric)

  def options(self) -> dict[str, Any]:
    return {f: getattr(self, f) for f in (*OPTIONS, *OPTIONAL)}

  def describe(self) -> str:
    return (f"asha by {self.metric} over rungs {self._ladder()}, a bracket per base config")

  def _ladder(self) -> str:
    finalists = f", {self.finalists} to the last" if self.finalists > 1 else ""
    return f"{', '.join(map(str, self.rungs))} (eta {self.eta}{finalists})"

  def check(self, configs: Mapping[str, Any]) -> None:
    """Every trial's full budget is the last rung, and its evaluators measure the metric."""
    for tid, c in configs.items():
      if c.num_steps != self.max_steps:
        raise SweepError(f"search.max_steps: {self.max_steps} is not trial {tid}'s "
                         f"config.num_steps {c.num_steps}; the last rung is the full budget")
      measured = {m.name for e in c.eval.evaluators for m in evaluators.get(e).metrics}
      if self.metric not in measured:
        raise SweepError(f"search.metric: trial {tid}'s config.eval.evaluators "
                         f"({', '.join(c.eval.evaluators)}) do not measure "
                         f"{self.metric!r}; add its evaluator")

  # --- Driven by the runner (and the replay).

  def scheduler_for(self, ledger: searches.Ledger) -> Scheduler:
    """The promotion rule over the ledger's brackets (a variant's own rule here)."""
    return Scheduler(self.rungs, self.eta, self.key, ledger.brackets,
                     finalists=self.finalists)

  def restore(self, ledger: searches.Ledger) -> list[str]:
    self.scheduler = self.scheduler_for(ledger)
    self.bracket = {t: b for b, ids in ledger.brackets.items() for t in ids}
    for tid in ledger.trials:
      target, results = _from_note(ledger.notes.get(tid))
      if target is None and ledger.records.get(tid):  # Lost or damaged: from the records.
        target, results = self._rebuild(ledger.records[tid], ledger.curve(tid, self.metric))
      self.scheduler.restore(tid, target, results)
    self.resume = self.scheduler.in_flight()
    self.announced = {(b, k) for b in self.scheduler.brackets
                      for k in range(len(self.rungs)) if self.scheduler.complete(b, k)}
    climbs = sum(len(r) for r in self.scheduler.results.values())
    return [f"{len(ledger.trials)} trials in {len(ledger.brackets)} brackets, {self.describe()}"
            f"; {climbs} rungs reached, {len(self.resume)} climbs to resume"]

  def _rebuild(self, record: Mapping[str, Any], curve: Mapping[int, float]
               ) -> tuple[int | None, dict[int, float | None]]:
    """A note from the trial's other records: the climb its metrics.json was at, and the
    metric its events recorded at each rung below."""
    target = record.get("num_steps")
    if target not in self.rungs:
      return None, {}
    results = {r: curve[r] for r in self.rungs if r < target and r in curve}
    if (value := rung_value(self.metric, record, target)) is not False:
      results[target] = value
    return target, results

  def next(self) -> searches.Job | None:
    if self.resume:
      tid, steps = self.resume.pop(0)
      return searches.Job((tid,), steps, f"resume  {tid}  {self.bracket[tid]}  to rung {steps}")
    if not (decision := self.scheduler.next_job()):
      return None
    tid, steps = decision
    if steps == self.rungs[0]:
      note = f"start   {tid}  {self.bracket[tid]}  to rung {steps}"
    else:
      below = self.rungs[self.rungs.index(steps) - 1]
      note = (f"promote {tid}  {self.bracket[tid]}  {below} -> {steps}  "
              f"({self._standing(tid, below)})")
    return searches.Job((tid,), steps, "\n".join([note, *self._stops()]))

  def finished(self, job: searches.Job, records: Sequence[Mapping[str, Any]]) -> list[str]:
    (tid,), (record,) = job.tids, records
    value = rung_value(self.metric, record, job.num_steps)
    if value is False:  # Interrupted: its climb resumes at the next launch.
      error = f"  ({record['error']})" if record.get("error") else ""
      return [f"{tid}  {record.get('status')} at step {record.get('step', 0)}{error}"]
    self.scheduler.record(tid, job.num_steps, value)
    error = f"  {record['status']}: {record.get('error')}" if value is None else ""
    return [f"rung    {tid}  {self.bracket[tid]}  {job.num_steps}: "
            f"{self._standing(tid, job.num_steps)}{error}", *self._stops()]

  def note(self, tid: str) -> dict[str, Any] | None:
    if tid not in self.scheduler.target:
      return None
    return {"target": self.scheduler.target[tid],
            "results": {str(k): v for k, v in sorted(self.scheduler.results[tid].items())}}

  def in_flight(self) -> list[str]:
    return [tid for tid, _ in self.scheduler.in_flight()]

  def stopped(self) -> set[str]:
    return {t for b in self.scheduler.brackets for k in range(len(self.rungs) - 1)
            for t in self.scheduler.stopped(b, k)}

  def waiting(self) -> set[str]:
    climbing = set(self.in_flight())
    return {t for t, steps in self.scheduler.target.items()
            if steps < self.max_steps and t not in climbing} - self.stopped()

  def spent(self) -> int:
    return sum(self.scheduler.spent(b) for b in self.scheduler.brackets)

  def _standing(self, tid: str, steps: int) -> str:
    ranked = self.scheduler.ranked(self.bracket[tid], steps)
    value = self.scheduler.results[tid][steps]
    shown = "none" if value is None else f"{value:.4g}"
    return f"{self.metric} {shown}, {ranked.index(tid) + 1} of {len(ranked)}"

  def _stops(self) -> list[str]:
    """Rungs settled since the last look: how many went on, which stopped."""
    lines = []
    for b in self.scheduler.brackets:
      for k, steps in enumerate(self.rungs[:-1]):
        if (b, k) not in self.announced and self.scheduler.complete(b, k):
          self.announced.add((b, k))
          stopped = self.scheduler.stopped(b, k)
          up = len(self.scheduler.ranked(b, steps)) - len(stopped)
          lines.append(f"rung {steps} of {b} complete: {up} promoted, {len(stopped)} stopped "
                       f"({', '.join(stopped) or 'none'})")
    return lines

  def _share(self) -> str:
    full = self.max_steps * len(self.scheduler.order)
    return f"{self.spent():,} model-steps ({100 * self.spent() / full:.0f}% of random search's {full:,})"

  def status(self) -> list[str]:
    climbing = set(self.in_flight())
    lines = []
    for b, ids in self.scheduler.brackets.items():
      reached = collections.Counter(self.scheduler.reached(t) for t in ids)
      lines.append(f"  {b}: " + ", ".join(f"{reached[r]} at rung {r}" for r in self.rungs)
                   + f", {len(climbing & set(ids))} climbing, {reached[0]} not started; "
                   f"{self.scheduler.spent(b):,} model-steps")
    return lines

  def summary(self) -> list[str]:
    lines = [f"{self.name}: {self._share()} given out"]
    for b in self.scheduler.brackets:
      best = self.scheduler.best(b)
      reached = collections.Counter(self.scheduler.reached(t) for t in self.scheduler.brackets[b])
      rungs = ", ".join(f"{reached[r]} at {r}" for r in self.rungs if reached[r])
      shown = (f"best {best} ({self.metric} "
               f"{self.scheduler.results[best][self.max_steps]:.4g})" if best
               else "no trial at the full budget yet")
      lines.append(f"  {b}: {shown}; {self.scheduler.spent(b):,} model-steps; trials: {rungs}")
    return lines


def _from_note(note: Mapping[str, Any] | None) -> tuple[int | None, dict[int, float | None]]:
  """(the rung the trial was sent to, {rung steps: metric}) from its note; a trial without
  one (or with an unreadable one: its climb is redone) has not started."""
  try:
    return int(note["target"]), {int(k): v for k, v in note["results"].items()}
  except (ValueError, TypeError, KeyError, AttributeError):
    return None, {}
