"""ASHA that promotes on each trial's predicted final metric, not on its value at the rung.

A cut on the value at one rung throws away late bloomers: a trial still falling steeply
when the rung ends may finish first. This search keeps ASHA's ladder, brackets and equal
compute per algorithm, but ranks a rung by an optimistic prediction of the metric at the
full budget, from the evaluations the trial recorded up to the rung (Domhan et al., IJCAI
2015, extrapolate learning curves with an ensemble of parametric families; this is the
smallest such ensemble): power laws `u(t) = a + b t^-c` for a few fixed `c`, fitted by least
squares to the curve's later part, `u` the log of a positive lower-is-better metric (FID
falls by orders of magnitude early on) or its sort key otherwise. The prediction's spread
over the family and the fits' residuals give it an uncertainty; a trial ranks by
`mean - optimism * sd`, so a trial whose future is uncertain is given the benefit of it.

Each prediction is written into the trial's note with the rung's result, so a relaunch
ranks on the same numbers; a lost note is rebuilt from the trial's events.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from wae_jax import evaluators
from wae_jax import searches
from wae_jax.hyper import SweepError
from wae_jax.searches import asha

EXPONENTS = (0.5, 1.0, 2.0)  # The power laws' decay exponents: slow to fast.
TAIL = 0.25  # The fit uses evaluations after this fraction of the trial's steps so far.
# Fewer points than this in the tail: no fit, the last value. Two parameters through two
# or three noisy points extrapolate the noise: fitted at the first rung (150 steps, two
# evaluations), the search kept 48% of the studies' bests over shuffled orders, ranking
# there on the value 74% (docs/sweeps.md).
MIN_POINTS = 4


def extrapolate(curve: Mapping[int, float], at: int) -> tuple[float, float]:
  """(mean, sd) of the curve's value at step `at`, from its points (step: value) at
  steps >= TAIL of the last. Fewer than MIN_POINTS there: the last value, with no spread."""
  last = max(curve)
  steps = np.array([s for s in sorted(curve) if s >= TAIL * last], float)
  values = np.array([curve[int(s)] for s in steps], float)
  if len(steps) < MIN_POINTS:
    return float(values[-1]), 0.0
  predictions, residuals = [], []
  for c in EXPONENTS:
    x = steps ** -c
    design = np.stack([np.ones_like(x), x], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, values, rcond=None)
    predictions.append(a + b * at ** -c)
    residuals.append(np.mean((design @ np.array([a, b]) - values) ** 2))
  return float(np.mean(predictions)), float(math.sqrt(np.var(predictions) + np.mean(residuals)))


class CurveScheduler(asha.Scheduler):
  """ASHA's rule, each rung below the last ranked by `predict(tid, steps)`'s optimistic
  bound (in the units `predict` gives, lower first)."""

  def __init__(self, *args, predict: Callable[[str, int], tuple[float, float]],
               optimism: float, **kwargs):
    super().__init__(*args, **kwargs)
    self.predict, self.optimism = predict, optimism

  def score(self, tid: str, steps: int) -> float:
    value = self.results[tid][steps]
    if steps == self.rungs[-1] or not math.isfinite(self.key(value)):
      return self.key(value)
    mean, sd = self.predict(tid, steps)
    return mean - self.optimism * sd


@searches.register("curve")
class Curve(asha.Asha):
  """Options: ASHA's (min_steps, eta, max_steps, metric), and optimism (how many standard
  deviations of its prediction a trial is credited with; default 1; 0 ranks by the
  prediction alone)."""
  option_names = (*asha.Asha.option_names, "optimism")

  def __init__(self, options: Mapping[str, Any]):
    super().__init__(options)
    optimism = options.get("optimism", 1.0)
    if (not isinstance(optimism, (int, float)) or isinstance(optimism, bool)
        or not 0 <= optimism < math.inf):
      raise SweepError(f"search.optimism: must be a finite number >= 0, got {optimism!r}")
    self.optimism = float(optimism)
    # Log of a positive lower-is-better metric (FID's early values span decades).
    self.log = not evaluators.metrics()[self.metric].higher_is_better

  def options(self) -> dict[str, Any]:
    return {**super().options(), "optimism": self.optimism}

  def describe(self) -> str:
    return (f"curve by {self.metric}'s predicted value at {self.max_steps} steps (optimism "
            f"{self.optimism:g}) over rungs {self._ladder()}, a bracket per base config")

  def scheduler_for(self, ledger: searches.Ledger) -> asha.Scheduler:
    self.curve, self.predictions = ledger.curve, {}
    for tid, note in ledger.notes.items():
      for steps, (mean, sd) in ((note or {}).get("predicted") or {}).items():
        self.predictions[(tid, int(steps))] = (float(mean), float(sd))
    return CurveScheduler(self.rungs, self.eta, self.key, ledger.brackets,
                          finalists=self.finalists, predict=self._predict,
                          optimism=self.optimism)

  def _predict(self, tid: str, steps: int) -> tuple[float, float]:
    """From the evaluations up to the rung (a replay's curves go further: cut here)."""
    if (tid, steps) not in self.predictions:
      curve = {s: v for s, v in self.curve(tid, self.metric).items()
               if s <= steps and math.isfinite(v)}
      curve[steps] = self.scheduler.results[tid][steps]  # The rung's own value rules.
      if self.log and all(v > 0 for v in curve.values()):
        curve = {s: math.log(v) for s, v in curve.items()}
      else:
        curve = {s: self.key(v) for s, v in curve.items()}
      self.predictions[(tid, steps)] = extrapolate(curve, self.max_steps)
    return self.predictions[(tid, steps)]

  def finished(self, job: searches.Job, records: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = super().finished(job, records)
    (tid,) = job.tids
    if job.num_steps in self.scheduler.results.get(tid, {}) and job.num_steps < self.max_steps:
      if math.isfinite(self.key(self.scheduler.results[tid][job.num_steps])):
        mean, sd = self._predict(tid, job.num_steps)
        shown = math.exp(mean) if self.log else mean
        lines[0] += f"; predicted at {self.max_steps}: {shown:.4g} (sd {sd:.2g})"
    return lines

  def note(self, tid: str) -> dict[str, Any] | None:
    note = super().note(tid)
    predicted = {str(s): list(p) for (t, s), p in sorted(self.predictions.items()) if t == tid}
    return note if note is None or not predicted else {**note, "predicted": predicted}
