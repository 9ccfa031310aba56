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

With `pool`, one TPE models every bracket at once (its `group` option: each point has the
parameters of its own bracket): a parameter every bracket's space has alike (the learning
rate, the architecture, ...) is modelled on all of them, the others on their own bracket's,
and each trial is told its rank within its bracket as a fraction, since one algorithm's
metric does not compare with another's. On the studies the learning rate ranked the final
FID alike in every algorithm (docs/sweeps.md), so a bracket need not learn it alone from its
6 to 15 results.

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
  """Options: ASHA's (min_steps, eta, max_steps, metric, finalists); trials (points per
  bracket, the file's included); startup (a bracket's trials with a result before TPE models
  it; default 6); seed (default 0); pool (one model over every bracket; default false)."""
  option_names = (*asha.Asha.option_names, "trials", "startup", "seed", "pool")
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
    if not isinstance(pool := options.get("pool", False), bool):
      raise SweepError(f"search.pool: must be true or false, got {pool!r}")
    self.pool = pool

  def options(self) -> dict[str, Any]:
    return {**super().options(), "trials": self.trials, "startup": self.startup,
            "seed": self.seed, "pool": self.pool}

  def describe(self) -> str:
    model = "one TPE over every bracket" if self.pool else "TPE"
    return (f"tpe: {self.trials} points a bracket, proposed by {model} once {self.startup} "
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
    template, dists = self.spaces[bracket], self._dists(bracket)
    told = self._told(bracket)
    if told and self.pool:  # Every bracket's results, each ranked within its bracket.
      told = [t for b in self.spaces for t in self._told(b, least=2)]
    rng = random.Random(seed)
    for attempt in range(TRIES + 1):
      if told and attempt < TRIES:
        asked = _ask(self._named(bracket, dists), told, seed + attempt, group=self.pool)
        params = {k: asked[self._name(bracket, k)] for k in dists}
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

  def _dists(self, bracket: str) -> dict[str, hyper.Distribution]:
    return {k: v for k, v in self.spaces[bracket].items() if isinstance(v, hyper.Distribution)}

  def _name(self, bracket: str, key: str) -> str:
    """A parameter's name in the model: pooled, its own where every bracket's space has it
    alike, else prefixed by its bracket (WAE-GAN's `lam` is not WAE-MMD's)."""
    dist = self.spaces[bracket][key]
    if not self.pool or all(space.get(key) == dist for space in self.spaces.values()):
      return key
    return f"{bracket}/{key}"

  def _named(self, bracket: str, point: Mapping[str, Any]) -> dict[str, Any]:
    return {self._name(bracket, k): v for k, v in point.items()}

  def _told(self, bracket: str, least: int | None = None
            ) -> list[tuple[dict[str, Any], dict[str, hyper.Distribution], float]]:
    """(point, its distributions, rank) of the bracket's trials with a result, once `least`
    (default `startup`) have one, under the model's names. A trial promoted higher ranks
    above every trial stopped below it (successive halving's own verdict), then by its value
    at its highest rung; a diverged one ranks last. (Told the values at one rung alone, TPE
    sees only the promoted trials there, all good, and proposes away from them.) Pooled, a
    rank is its fraction of the bracket's last, 0 to 1: one algorithm's metric says nothing
    of another's."""
    reached = []
    for tid in self.scheduler.brackets[bracket]:
      results = self.scheduler.results.get(tid, {})
      if results:
        top = max(results)
        reached.append((-self.rungs.index(top), self.key(results[top]), tid))
    if len(reached) < (self.startup if least is None else least):
      return []
    dists, last = self._dists(bracket), (len(reached) - 1 if self.pool else 1)
    return [(self._named(bracket, {k: self.trial_dicts[tid][k] for k in dists}),
             self._named(bracket, dists), rank / last)
            for rank, (*_, tid) in enumerate(sorted(reached))]


def _ask(dists: Mapping[str, hyper.Distribution], told, seed: int, group: bool
         ) -> dict[str, Any]:
  """One point of `dists` from a TPE fitted on `told` (ask-and-tell on a study in memory);
  `group` where the told points have other parameters than these."""
  import optuna  # pylint: disable=g-import-not-at-top  # Seconds to import: proposals only.
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  with warnings.catch_warnings():  # `multivariate` and `group` are marked experimental.
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=group,
                                         n_startup_trials=0)
  s = optuna.create_study(sampler=sampler, direction="minimize")
  for params, spaces, value in told:
    s.add_trial(optuna.trial.create_trial(
        params=params, distributions={k: d.optuna() for k, d in spaces.items()}, value=value))
  trial = s.ask({k: d.optuna() for k, d in dists.items()})
  return {k: dists[k].value(v) for k, v in trial.params.items()}
