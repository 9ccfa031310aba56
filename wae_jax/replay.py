"""A search replayed on the recorded curves of a finished full-budget study.

Before trusting a multi-fidelity search at scale, run a smaller study to its full budget
(random search), then replay the search on its curves: what it would have spent, whether it
keeps each algorithm's best trial, and where it would have lost it. Any registered search
replays, through the same interface the runner drives (`searches.Search`); a climb takes as
long as its steps, with `workers` trials training at once.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from typing import Mapping, Sequence

import numpy as np

from wae_jax import searches
from wae_jax import workdir as workdir_lib
from wae_jax.searches import asha


@dataclasses.dataclass(frozen=True)
class Replay:
  steps: int  # Model-steps the search would have spent.
  full_steps: int  # Those the full-budget study spent.
  share: dict[str, float]  # Per bracket: its model-steps over the full study's.
  decisions: tuple[int, ...]  # The steps below the full budget at which jobs ended.
  best_kept: dict[str, bool]  # Per bracket: does the search's best equal the study's best?
  best: dict[str, tuple[float | None, float | None]]  # Per bracket: (the search's, the study's).
  # Per bracket: the study's best trial's rank (1 = first) at each decision step among the
  # bracket's trials there. A cut that keeps fewer than that many loses it.
  best_rank: dict[str, dict[int, int]]
  # Per bracket, and over all brackets (key None): Spearman's rho of the metric at each
  # decision step with the final one.
  rank_corr: dict[str | None, dict[int, float]]
  # Per bracket, as the search went: (model-steps given to the bracket, its best metric at
  # the full budget so far), a point each time it improved.
  best_so_far: dict[str, list[tuple[int, float]]]


def replay(search: searches.Search, brackets: Mapping[str, Sequence[str]],
           curves: Mapping[str, Mapping[int, float]], metric: str, max_steps: int,
           workers: int = 1) -> Replay:
  """Runs `search` on `curves` ({trial: {step: metric}}) of brackets of trial ids."""
  if search.proposes:
    raise ValueError(f"the {search.name} search proposes new points, which a replay of "
                     "recorded curves cannot train; run it live on a study and compare "
                     "(benchmarks/searches.py)")
  trials = {t: {"config": b} for b, ids in brackets.items() for t in ids}
  # The recorded curves whole: a search reads a trial's only up to where it trained it.
  search.restore(searches.Ledger(trials, brackets, {t: {} for t in trials},
                                 {t: None for t in trials}, lambda t, m: curves.get(t, {})))
  at = {t: 0 for t in trials}  # Each trial's steps so far: a climb resumes there.
  bracket = {t: b for b, ids in brackets.items() for t in ids}
  key = asha.sort_key(metric)
  clock, running, free, order, ended = 0, [], workers, 0, set()
  best_so_far = {b: [] for b in brackets}
  while True:
    while free and (job := search.next()):
      if job.proposed:  # A search that did not say it proposes.
        raise ValueError(f"the {search.name} search proposed new points; a replay can only "
                         "run the recorded trials")
      steps = job.num_steps or max_steps
      cost = max(steps - at[t] for t in job.tids)
      at.update({t: max(at[t], steps) for t in job.tids})
      heapq.heappush(running, (clock + cost, order, job, steps))
      order, free = order + 1, free - 1
    if not running:
      break
    clock, _, job, steps = heapq.heappop(running)
    records = []
    for tid in job.tids:
      if steps not in curves.get(tid, {}):
        raise ValueError(f"trial {tid} has no {metric} at step {steps}; evaluate at every "
                         "step the search decides at for a replay")
      records.append({"status": workdir_lib.DONE, "step": steps, "num_steps": steps,
                      "metrics": {metric: curves[tid][steps]}})
    search.finished(job, records)
    ended.add(steps)
    free += 1
    for tid in job.tids:
      trace, value = best_so_far[bracket[tid]], curves[tid][steps]
      if steps == max_steps and math.isfinite(key(value)) and (
          not trace or key(value) < key(trace[-1][1])):
        trace.append((sum(at[t] for t in brackets[bracket[tid]]), value))
  decisions = tuple(sorted(s for s in ended if s < max_steps))
  final = {b: _best(key, ids, curves, max_steps) for b, ids in brackets.items()}
  kept = {b: _best(key, [t for t in ids if at[t] >= max_steps], curves, max_steps)
          for b, ids in brackets.items()}
  corr = {b: _spearman(key, ids, curves, decisions, max_steps) for b, ids in brackets.items()}
  corr[None] = _spearman(key, list(trials), curves, decisions, max_steps)
  value = lambda t: None if t is None else curves[t].get(max_steps)
  return Replay(
      steps=sum(at.values()), full_steps=max_steps * len(trials), decisions=decisions,
      share={b: sum(at[t] for t in ids) / (max_steps * len(ids)) for b, ids in brackets.items()},
      best_kept={b: kept[b] == final[b] for b in brackets},
      best={b: (value(kept[b]), value(final[b])) for b in brackets},
      best_rank={b: _ranks(key, brackets[b], curves, final[b], decisions) for b in brackets},
      rank_corr=corr, best_so_far=best_so_far)


def _spearman(key, ids, curves, decisions, max_steps) -> dict[int, float]:
  import scipy.stats  # pylint: disable=g-import-not-at-top  # Slow to import; replays only.
  out = {}
  for steps in decisions:
    pairs = np.array([(key(curves[t].get(steps)), key(curves[t].get(max_steps))) for t in ids])
    finite = np.isfinite(pairs).all(axis=1) if len(pairs) else np.zeros(0, bool)
    out[steps] = (float(scipy.stats.spearmanr(pairs[finite, 0], pairs[finite, 1])[0])
                  if finite.sum() > 2 else math.nan)
  return out


def _ranks(key, ids, curves, tid, decisions) -> dict[int, int]:
  if tid is None:
    return {}
  return {steps: 1 + sum(key(curves.get(t, {}).get(steps)) < key(curves[tid].get(steps))
                         for t in ids) for steps in decisions}


def _best(key, ids, curves, max_steps) -> str | None:
  done = [t for t in ids if math.isfinite(key(curves.get(t, {}).get(max_steps)))]
  return min(done, key=lambda t: key(curves[t][max_steps]), default=None)


def table(trials, curves: Mapping[str, Mapping[int, float]], metric: str, search: str,
          grid: Mapping[str, Sequence[object]]):
  """The search `search` replayed on a finished study (`results.Results.trials`), a row per
  point of `grid` ({option: values}; `max_steps` and `metric` default to the study's):
  the model-steps it would have spent, whether each algorithm (base config) keeps its best
  trial and that trial's rank at each decision step, and each step's rank correlation with
  the final metric, per algorithm and over all."""
  import pandas as pd  # pylint: disable=g-import-not-at-top  # The table only.
  done = trials[trials["status"] == workdir_lib.DONE]
  max_steps = int(done["num_steps"].max()) if len(done) else 0
  if len(done) < len(trials) or (done["num_steps"] != max_steps).any():
    raise ValueError(f"--replay needs a finished study of one full budget: "
                     f"{len(trials) - len(done)} of {len(trials)} trials are not done at "
                     f"{max_steps} steps")
  # The sweep's order within each bracket (the ledger's), as the live driver takes them.
  brackets = {b: list(g["trial"]) for b, g in done.groupby("base", sort=False)}
  cls = searches.get(search)
  rows = []
  for point in itertools.product(*grid.values()):
    options = dict(zip(grid, point))
    defaults = {k: v for k, v in (("max_steps", max_steps), ("metric", metric))
                if k in cls.option_names}
    try:
      s = cls({**defaults, **options})
    except searches.SweepError as e:
      raise ValueError(str(e)) from None
    result = replay(s, brackets, curves, metric, max_steps)
    row = {**options, "model-steps": result.steps,
           "of random search": f"{100 * result.steps / result.full_steps:.0f}%"}
    for b in brackets:
      kept, best = result.best[b]
      row[f"{b} model-steps"] = f"{100 * result.share[b]:.0f}%"
      row[f"{b} best kept"] = ("yes" if result.best_kept[b]
                               else f"no ({kept:.4g} vs {best:.4g}: {kept / best:.3f}x)"
                               if kept is not None else "no")
      row[f"{b} best's rank"] = ", ".join(f"{steps}: {rank}"
                                          for steps, rank in result.best_rank[b].items())
      row[f"{b} rank corr."] = _corr(result.rank_corr[b])
    row["rank corr. (all)"] = _corr(result.rank_corr[None])
    rows.append(row)
  return pd.DataFrame(rows)


def _corr(by_step: Mapping[int, float]) -> str:
  return ", ".join(f"{steps}: {rho:.2f}" for steps, rho in by_step.items())
