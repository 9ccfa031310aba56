"""Asynchronous successive halving (ASHA; Li et al., MLSys 2020) over a sweep's trials.

A trial climbs rungs of `min_steps * eta**k` steps, up to `max_steps`, by resuming from its
own checkpoint with a larger `num_steps`; the end of each climb evaluates it, and that
metric decides the next climb. A trial goes up as soon as it is in the top 1/eta of the
results its rung has so far, so no rung waits for stragglers. Each base config (an
algorithm) is a bracket of its own, ranked only against itself, and the next job goes to
the bracket that has been given the fewest model-steps, so algorithms get equal compute.

`Scheduler` is the promotion rule alone, without files or time: the sweep runner drives it
with the trials' results, and `replay` drives it with the curves of a finished random search
to estimate, offline, what ASHA would have spent and kept. A trial directory's `rungs.json`
(`workdir.RUNGS`) records the rung the trial was sent to and the metric at every rung it
reached; a relaunched sweep rebuilds the scheduler from those files alone, so it finishes
the climbs in flight first and never undoes a decision.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from typing import Any, Mapping, Sequence

from etils import epath
import numpy as np

from wae_jax import evaluators
from wae_jax import workdir as workdir_lib
from wae_jax.hyper import SweepError

RANDOM, ASHA = "random", "asha"
SEARCHES = (RANDOM, ASHA)


@dataclasses.dataclass(frozen=True)
class Asha:
  min_steps: int  # r: the first rung.
  eta: int  # Reduction factor: 1/eta of a rung goes up, with eta times the steps.
  max_steps: int  # R: the last rung, every trial's full budget.
  metric: str  # A declared metric (`evaluators.metrics()`), ranked in its own direction.

  @property
  def rungs(self) -> tuple[int, ...]:
    """r, r eta, r eta^2, ... while below R, then R."""
    steps = []
    while (r := self.min_steps * self.eta ** len(steps)) < self.max_steps:
      steps.append(r)
    return (*steps, self.max_steps)

  @property
  def higher_is_better(self) -> bool:
    return bool(evaluators.metrics()[self.metric].higher_is_better)

  def key(self, value: float | None) -> float:
    """Sort key, best first; a missing or non-finite value (a diverged trial) is last."""
    if value is None or not math.isfinite(value):
      return math.inf
    return -value if self.higher_is_better else value


def parse(spec: Mapping[str, Any] | None) -> Asha | None:
  """A sweep file's `get_search()` as an `Asha`, or None for random search (every trial to
  its full budget). SweepError naming the field for a bad one."""
  if spec is None:
    return None
  if not isinstance(spec, Mapping):
    raise SweepError(f"search: get_search must return a dict, got {type(spec).__name__}")
  name = spec.get("name", RANDOM)
  if name not in SEARCHES:
    raise SweepError(f"search.name: unknown search {name!r} (known: {', '.join(SEARCHES)})")
  fields = {f.name for f in dataclasses.fields(Asha)}
  if unknown := sorted(set(spec) - fields - {"name"}):
    raise SweepError(f"search.{unknown[0]}: no such field (known: name, {', '.join(fields)})")
  if name == RANDOM:
    return None
  if missing := sorted(fields - set(spec)):
    raise SweepError(f"search.{missing[0]}: an asha search needs it")
  for field, lowest in (("min_steps", 1), ("eta", 2), ("max_steps", 1)):
    value = spec[field]
    if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
      raise SweepError(f"search.{field}: must be an integer >= {lowest}, got {value!r}")
  if spec["max_steps"] < spec["min_steps"]:
    raise SweepError(f"search.max_steps: {spec['max_steps']} is below search.min_steps "
                     f"{spec['min_steps']}")
  declared = evaluators.metrics()
  if spec["metric"] not in declared or declared[spec["metric"]].higher_is_better is None:
    scores = sorted(m for m, d in declared.items() if d.higher_is_better is not None)
    raise SweepError(f"search.metric: {spec['metric']!r} is not a declared score (known: "
                     f"{', '.join(scores)})")
  return Asha(**{f: spec[f] for f in fields})


class Scheduler:
  """The promotion rule over brackets of trial ids (each in the sweep's order).

  `next_job` takes a decision and returns it: (trial id, rung steps). `record` gives the
  metric a trial reached at a rung. `restore` puts back what a trial directory says.
  """

  def __init__(self, search: Asha, brackets: Mapping[str, Sequence[str]]):
    self.search = search
    self.brackets = {b: list(ids) for b, ids in brackets.items()}
    self.order = {tid: i for ids in self.brackets.values() for i, tid in enumerate(ids)}
    self.target: dict[str, int] = {}  # The rung each started trial was sent to last.
    self.results: dict[str, dict[int, float | None]] = {}  # Metric by rung reached.

  def restore(self, tid: str, target: int | None, results: Mapping[int, float | None]) -> None:
    if target is not None:
      self.target[tid] = target
    self.results[tid] = dict(results)

  def record(self, tid: str, steps: int, value: float | None) -> None:
    self.results.setdefault(tid, {})[steps] = value

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
    return sorted(done, key=lambda t: (self.search.key(self.results[t][steps]), self.order[t]))

  def promotable(self, bracket: str, k: int) -> list[str]:
    """Trials of rung k in the top 1/eta of its results so far, not yet sent higher."""
    if k == len(self.search.rungs) - 1:
      return []
    steps = self.search.rungs[k]
    ranked = self.ranked(bracket, steps)
    # A rung that can get no further result sends its best on even when 1/eta of it rounds
    # to none: each bracket's best of a finite trial set reaches the full budget.
    top = ranked[:len(ranked) // self.search.eta or int(self._arrived(bracket, k))]
    return [t for t in top if self.target.get(t) == steps
            and math.isfinite(self.search.key(self.results[t][steps]))]

  def candidate(self, bracket: str) -> tuple[str, int] | None:
    """The bracket's next climb, not yet decided: its best promotion, else a new trial."""
    rungs = self.search.rungs
    for k in reversed(range(len(rungs) - 1)):  # The highest promotion first.
      if up := self.promotable(bracket, k):
        return up[0], rungs[k + 1]
    fresh = next((t for t in self.brackets[bracket] if t not in self.target), None)
    return None if fresh is None else (fresh, rungs[0])

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
    steps = self.search.rungs[k]
    if k > 0 and not self.complete(bracket, k - 1):
      return False
    return all(steps in self.results.get(t, {}) for t in self.brackets[bracket]
               if k == 0 or self.target.get(t, 0) >= steps)

  def complete(self, bracket: str, k: int) -> bool:
    """Whether rung k of the bracket is settled: no result can still arrive, and every
    promotion it earned is decided (so the trials left at k stop there for good)."""
    return self._arrived(bracket, k) and not self.promotable(bracket, k)

  def stopped(self, bracket: str, k: int) -> list[str]:
    """Trials whose climb ended at rung k for good (rung complete, not promoted)."""
    if k == len(self.search.rungs) - 1 or not self.complete(bracket, k):
      return []
    return [t for t in self.ranked(bracket, self.search.rungs[k])
            if self.target.get(t) == self.search.rungs[k]]

  def best(self, bracket: str) -> str | None:
    """The bracket's best trial at the full budget (None before one reaches it)."""
    ranked = self.ranked(bracket, self.search.max_steps)
    return ranked[0] if ranked else None


# ------------------------------------------------------------------------------------------
# The trial directory's record of its climb.


def read_rungs(trial_dir: epath.PathLike) -> tuple[int | None, dict[int, float | None]]:
  """(the rung the trial was sent to, {rung steps: metric}) from its `rungs.json`; a trial
  without one (or with an unreadable one: its climb is redone) has not started."""
  try:
    record = workdir_lib.read_json(epath.Path(trial_dir) / workdir_lib.RUNGS)
    return int(record["target"]), {int(k): v for k, v in record["results"].items()}
  except (ValueError, TypeError, KeyError, AttributeError, OSError):
    return None, {}


def write_rungs(trial_dir: epath.PathLike, target: int,
                results: Mapping[int, float | None]) -> None:
  workdir_lib.write_json(epath.Path(trial_dir) / workdir_lib.RUNGS, {
      "target": int(target), "results": {str(k): v for k, v in sorted(results.items())}})


def rebuild_rungs(search: Asha, trial_dir: epath.PathLike
                  ) -> tuple[int | None, dict[int, float | None]]:
  """What `rungs.json` said, from the trial's other records (for one lost or damaged): the
  climb its metrics.json was at, and the metric its events recorded at each rung below."""
  from wae_jax import events  # pylint: disable=g-import-not-at-top  # Only for a damaged trial.
  record = workdir_lib.read_record(trial_dir)
  target = record.get("num_steps")
  if target not in search.rungs:
    return None, {}
  scalars = events.read_scalars(trial_dir)
  results = {r: scalars[(r, f"eval/{search.metric}")] for r in search.rungs
             if r < target and (r, f"eval/{search.metric}") in scalars}
  if (value := rung_value(search, record, target)) is not False:
    results[target] = value
  return target, results


def rung_value(search: Asha, record: Mapping[str, Any], steps: int) -> float | None | bool:
  """The metric a trainer's final record gives rung `steps`: its value, None for a trial
  that cannot climb (diverged, failed, no such metric), or False while it has not got
  there (the climb is to be resumed)."""
  status = record.get("status")
  if status in (workdir_lib.DIVERGED, workdir_lib.FAILED):
    return None
  if status != workdir_lib.DONE or record.get("step", 0) < steps:
    return False
  value = (record.get("metrics") or {}).get(search.metric)
  return float(value) if isinstance(value, (int, float)) else None


# ------------------------------------------------------------------------------------------
# Replay: ASHA simulated on the curves of a finished full-budget study.


@dataclasses.dataclass(frozen=True)
class Replay:
  search: Asha
  steps: int  # Model-steps ASHA would have spent.
  full_steps: int  # Those the full-budget study spent.
  best_kept: dict[str, bool]  # Per bracket: does ASHA's best equal the study's best?
  best: dict[str, tuple[float | None, float | None]]  # Per bracket: (ASHA's, the study's).
  rank_corr: dict[int, float]  # Spearman's rho of each rung's metric with the final one.
  # Per bracket: the study's best trial's rank (1 = first) at each rung below R, among the
  # bracket's trials there. A rung that promotes fewer than that many loses it.
  best_rank: dict[str, dict[int, int]]


def replay(search: Asha, brackets: Mapping[str, Sequence[str]],
           curves: Mapping[str, Mapping[int, float | None]], workers: int = 1) -> Replay:
  """Runs the scheduler on recorded curves ({trial: {step: metric}}, every rung's step
  among them) with `workers` trials training at once, a climb taking as long as its steps.
  """
  scheduler = Scheduler(search, brackets)
  clock, running, free = 0, [], workers
  while True:
    while free and (job := scheduler.next_job()):
      tid, steps = job
      below = max((r for r in search.rungs if r < steps), default=0)
      heapq.heappush(running, (clock + steps - below, scheduler.order[tid], tid, steps))
      free -= 1
    if not running:
      break
    clock, _, tid, steps = heapq.heappop(running)
    if steps not in curves.get(tid, {}):
      raise ValueError(f"trial {tid} has no {search.metric} at step {steps}; evaluate every "
                       f"{search.min_steps} steps (or a divisor) for a replay at these rungs")
    scheduler.record(tid, steps, curves[tid][steps])
    free += 1
  import scipy.stats  # pylint: disable=g-import-not-at-top  # Slow to import; replays only.
  final = {b: _best(search, ids, curves) for b, ids in brackets.items()}
  kept = {b: scheduler.best(b) for b in brackets}
  corr = {}
  ids = [t for b in brackets.values() for t in b]
  for steps in search.rungs[:-1]:
    pairs = np.array([(search.key(curves[t].get(steps)), search.key(curves[t].get(
        search.max_steps))) for t in ids])
    finite = np.isfinite(pairs).all(axis=1)
    corr[steps] = (float(scipy.stats.spearmanr(pairs[finite, 0], pairs[finite, 1])[0])
                   if finite.sum() > 2 else math.nan)
  return Replay(
      search, steps=sum(scheduler.target.values()),
      full_steps=search.max_steps * sum(len(ids) for ids in brackets.values()),
      best_kept={b: kept[b] == final[b] for b in brackets},
      best={b: (_final(search, curves, kept[b]), _final(search, curves, final[b]))
            for b in brackets},
      rank_corr=corr,
      best_rank={b: _ranks(search, brackets[b], curves, final[b]) for b in brackets})


def _ranks(search: Asha, ids: Sequence[str], curves, tid: str | None) -> dict[int, int]:
  if tid is None:
    return {}
  return {steps: 1 + sum(search.key(curves.get(t, {}).get(steps))
                         < search.key(curves[tid].get(steps)) for t in ids)
          for steps in search.rungs[:-1]}


def _final(search: Asha, curves, tid: str | None) -> float | None:
  return None if tid is None else curves[tid].get(search.max_steps)


def _best(search: Asha, ids: Sequence[str], curves) -> str | None:
  done = [t for t in ids if math.isfinite(search.key(curves.get(t, {}).get(search.max_steps)))]
  return min(done, key=lambda t: search.key(curves[t][search.max_steps]), default=None)
