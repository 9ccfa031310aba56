"""ASHA whose new trials are proposed by a model of the results so far (BOHB's idea).

BOHB (Falkner et al., ICML 2018) keeps successive halving's early stopping but draws each
new point from a Tree-structured Parzen Estimator fitted on the results at the highest
budget that has enough of them, instead of at random. Here the ladder, the brackets (an
algorithm each) and the equal compute per algorithm are ASHA's; a bracket starts from the
sweep file's points of it (a random initial design, `h.random_search`) and then grows to
`trials` points, each proposed by Optuna's `TPESampler` (multivariate) through
ask-and-tell, over the bracket's `h.space` (the DSL's distributions as Optuna's,
`hyper.Distribution.optuna`), told the bracket's trials ranked as successive halving ranks
them (`_told`). Until `startup` trials have a result a proposal is a seeded random draw
from the same space.

A proposal is decided by the bracket's state and a seed of its own (the search's seed, the
bracket, its index); the runner writes it into the ledger before its trainer starts, so a
relaunch finds every proposal made and proposes only the ones still missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import warnings
from typing import Any, Mapping

from wae_jax import hyper
from wae_jax import searches
from wae_jax import study
from wae_jax.hyper import SweepError
from wae_jax.searches import asha

TRIES = 16  # Asks before a proposal that repeats a point gives way to a random draw.


class ProposingScheduler(asha.Scheduler):
  """ASHA's rule, with a bracket's next trial proposed (`propose(bracket)`) once the file's
  are all started and the bracket is below its size."""

  def __init__(self, *args, propose, **kwargs):
    super().__init__(*args, **kwargs)
    self.propose = propose

  def fresh(self, bracket: str) -> str | None:
    tid = super().fresh(bracket)
    if tid is None and len(self.brackets[bracket]) < self.sizes.get(bracket, 0):
      if (tid := self.propose(bracket)) is None:  # The space has no new point to give.
        self.sizes[bracket] = len(self.brackets[bracket])
      else:
        self.add(bracket, tid)
    return tid


@searches.register("tpe")
class Tpe(asha.Asha):
  """Options: ASHA's (min_steps, eta, max_steps, metric); trials (points per bracket, the
  file's included); startup (trials with a result before TPE models them; default 6); seed
  (default 0)."""
  option_names = (*asha.Asha.option_names, "trials", "startup", "seed")
  proposes = True

  def __init__(self, options: Mapping[str, Any]):
    super().__init__(options)
    own = {"trials": None, "startup": 6, "seed": 0} | {
        k: v for k, v in options.items() if k in ("trials", "startup", "seed")}
    if own["trials"] is None:
      raise SweepError("search.trials: the tpe search needs it (points a bracket, the file's "
                       "included)")
    for field, lowest in (("trials", 1), ("startup", 2), ("seed", 0)):
      value = own[field]
      if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
        raise SweepError(f"search.{field}: must be an integer >= {lowest}, got {value!r}")
    self.trials, self.startup, self.seed = own["trials"], own["startup"], own["seed"]

  def options(self) -> dict[str, Any]:
    return {**super().options(), "trials": self.trials, "startup": self.startup,
            "seed": self.seed}

  def describe(self) -> str:
    return (f"tpe: {self.trials} points a bracket, proposed by TPE once {self.startup} "
            f"have a result, climbing by {self.metric} over rungs {self._ladder()}")

  def scheduler_for(self, ledger: searches.Ledger) -> asha.Scheduler:
    for b, ids in ledger.brackets.items():
      for tid in ids:
        for key, dist in ledger.spaces.get(b, {}).items():
          if isinstance(dist, hyper.Distribution) and ledger.trials[tid].get(key) not in dist:
            raise SweepError(f"search: trial {tid} of {b} has {key}="
                             f"{ledger.trials[tid].get(key)!r}, outside its h.space ({dist})")
    self.spaces, self.trial_dicts = ledger.spaces, dict(ledger.trials)
    self.proposed: dict[str, hyper.Trial] = {}  # This launch's, until their job is out.
    # A bracket without its space (a ledger read without the sweep file) proposes nothing.
    sizes = {b: max(self.trials, len(ids)) if b in self.spaces else len(ids)
             for b, ids in ledger.brackets.items()}
    return ProposingScheduler(self.rungs, self.eta, self.key, ledger.brackets, sizes,
                              finalists=self.finalists, propose=self._propose)

  def restore(self, ledger: searches.Ledger) -> list[str]:
    lines = super().restore(ledger)
    return [f"{lines[0]}; {len(ledger.trials)} of {self.planned()} points drawn"]

  def planned(self) -> int:
    return sum(self.scheduler.sizes.values())

  def status(self) -> list[str]:
    drawn = sum(map(len, self.scheduler.brackets.values()))
    return [f"  {drawn} of {self.planned()} points drawn, the rest to be proposed by TPE",
            *super().status()]

  def next(self) -> searches.Job | None:
    job = super().next()
    if job and job.tids[0] in self.proposed:
      tid = job.tids[0]
      return dataclasses.replace(job, proposed={tid: self.proposed.pop(tid)})
    return job

  def _propose(self, bracket: str) -> str | None:
    """A new point of the bracket's space (None: every try repeated a known one)."""
    index = len(self.scheduler.brackets[bracket])
    seed = int(hashlib.sha256(f"{self.seed}:{bracket}:{index}".encode()).hexdigest()[:8], 16)
    template = self.spaces[bracket]
    dists = {k: v for k, v in template.items() if isinstance(v, hyper.Distribution)}
    told = self._told(bracket, dists)
    rng = random.Random(seed)
    for attempt in range(TRIES + 1):
      if told and attempt < TRIES:
        params = _ask(dists, told, seed + attempt)
      else:
        params = {k: d(rng.random()) for k, d in dists.items()}
      trial = {**template, **params}
      if (tid := study.trial_id(trial)) not in self.trial_dicts:
        break
    else:
      return None
    self.trial_dicts[tid] = self.proposed[tid] = trial
    self.bracket[tid] = bracket
    return tid

  def _told(self, bracket: str, dists) -> list[tuple[dict[str, Any], float]]:
    """(point, rank) of the bracket's trials with a result, once `startup` have one. A trial
    promoted higher ranks above every trial stopped below it (successive halving's own
    verdict), then by its value at its highest rung; a diverged one ranks last. (Told the
    values at one rung alone, TPE sees only the promoted trials there, all good, and
    proposes away from them.)"""
    reached = []
    for tid in self.scheduler.brackets[bracket]:
      results = self.scheduler.results.get(tid, {})
      if results:
        top = max(results)
        reached.append((-self.rungs.index(top), self.key(results[top]), tid))
    if len(reached) < self.startup:
      return []
    return [({k: self.trial_dicts[tid][k] for k in dists}, float(rank))
            for rank, (*_, tid) in enumerate(sorted(reached))]


def _ask(dists: Mapping[str, hyper.Distribution], told, seed: int) -> dict[str, Any]:
  """One point from a TPE fitted on `told` (ask-and-tell on a study in memory)."""
  import optuna  # pylint: disable=g-import-not-at-top  # Seconds to import: proposals only.
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  spaces = {k: d.optuna() for k, d in dists.items()}
  with warnings.catch_warnings():  # `multivariate` is marked experimental; it is the point.
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=0)
  s = optuna.create_study(sampler=sampler, direction="minimize")
  for params, value in told:
    s.add_trial(optuna.trial.create_trial(params=params, distributions=spaces, value=value))
  trial = s.ask(spaces)
  return {k: dists[k].value(v) for k, v in trial.params.items()}
