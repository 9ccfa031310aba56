"""The sweep DSL: a study written as data, a list of partial trials and their combinators.

A sweep file's `get_hyper(h, arg=None)` receives `HYPER` as `h`. A (partial) trial is a flat
dict of keys to values; `product`, `zipit` and `chainit` merge lists of them, and
`random_search` draws them from `uniform`, `loguniform` and `choice`. `space` leaves them
undrawn: a template a search that proposes points (`searches/tpe.py`) draws from, through
each distribution's Optuna counterpart (`Distribution.optuna`). Pure Python, so a sweep
file loads without Ray or JAX.
"""

from __future__ import annotations

import dataclasses
import random
import types
from typing import Any, Callable, Iterable, Mapping, Sequence

Trial = dict[str, Any]


class SweepError(ValueError):
  """A sweep file or a sweep command is wrong; the message says how, in one line."""


def fixed(key: str, value: Any) -> list[Trial]:
  """One value for `key` (used inside `product` to set it for every trial)."""
  return [{key: value}]


def sweep(key: str, values: Iterable[Any]) -> list[Trial]:
  """One partial trial per value of `key`."""
  return [{key: v} for v in values]


def _merge(parts: Sequence[Trial], combinator: str) -> Trial:
  merged = {}
  for part in parts:
    for key, value in part.items():
      if key in merged:
        raise SweepError(f"{combinator}: key {key!r} is set by two of its sweeps")
      merged[key] = value
  return merged


def product(sweeps: Sequence[list[Trial]]) -> list[Trial]:
  """The cross product: every combination of one partial trial from each sweep."""
  out = [{}]
  for s in sweeps:
    out = [_merge([a, b], "product") for a in out for b in s]
  return out


def zipit(sweeps: Sequence[list[Trial]]) -> list[Trial]:
  """The i-th trial merges the i-th partial trial of every sweep (all of one length)."""
  lengths = sorted({len(s) for s in sweeps})
  if len(lengths) > 1:
    raise SweepError(f"zipit: sweeps have different lengths {lengths}")
  return [_merge(parts, "zipit") for parts in zip(*sweeps)]


def chainit(sweeps: Sequence[list[Trial]]) -> list[Trial]:
  """One sweep after the other (e.g. one sub-study per algorithm)."""
  return [trial for s in sweeps for trial in s]


class Distribution:
  """A hyperparameter's distribution: `dist(u)` maps u ~ U[0, 1) to a value (what
  `random_search` draws), `optuna()` is the same space for Optuna's samplers, and `value`
  rounds a value a sampler proposed as a draw would be."""

  def optuna(self):
    raise NotImplementedError

  def value(self, x: Any) -> Any:
    return x

  def __contains__(self, x: Any) -> bool:
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Uniform(Distribution):
  lo: float
  hi: float
  digits: int = 3

  def __call__(self, u: float) -> float:
    return _round(self.lo + u * (self.hi - self.lo), self.digits)

  def optuna(self):
    from optuna import distributions  # pylint: disable=g-import-not-at-top  # Searches only.
    return distributions.FloatDistribution(self.lo, self.hi)

  def value(self, x: float) -> float:
    return _round(x, self.digits)

  def __contains__(self, x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and self.lo <= x <= self.hi

  def __str__(self) -> str:  # As the sweep file writes it.
    return f"{type(self).__name__.lower()}({self.lo:g}, {self.hi:g})"


@dataclasses.dataclass(frozen=True)
class LogUniform(Uniform):

  def __call__(self, u: float) -> float:
    return _round(self.lo * (self.hi / self.lo) ** u, self.digits)

  def optuna(self):
    from optuna import distributions  # pylint: disable=g-import-not-at-top
    return distributions.FloatDistribution(self.lo, self.hi, log=True)


@dataclasses.dataclass(frozen=True)
class Choice(Distribution):
  values: tuple[Any, ...]

  def __call__(self, u: float) -> Any:
    return self.values[min(int(u * len(self.values)), len(self.values) - 1)]

  def optuna(self):
    from optuna import distributions  # pylint: disable=g-import-not-at-top
    return distributions.CategoricalDistribution(self.values)

  def __contains__(self, x: Any) -> bool:
    return x in self.values

  def __str__(self) -> str:
    return f"choice({list(self.values)})"


def _round(x: float, digits: int) -> float:
  """Rounds to significant digits: short flags and ids that do not hinge on float printing."""
  return float(f"{x:.{digits}g}")


def uniform(lo: float, hi: float, digits: int = 3) -> Uniform:
  return Uniform(float(lo), float(hi), digits)


def loguniform(lo: float, hi: float, digits: int = 3) -> LogUniform:
  if not 0 < lo < hi:
    raise SweepError(f"loguniform: needs 0 < lo < hi, got {lo}, {hi}")
  return LogUniform(float(lo), float(hi), digits)


def choice(values: Iterable[Any]) -> Choice:
  return Choice(tuple(values))


def random_search(n: int, space: Mapping[str, Callable[[float], Any]], seed: int) -> list[Trial]:
  """`n` partial trials with each key drawn from its distribution.

  Each key has its own stream, seeded by (seed, key): adding a key to a space leaves the
  values of the others (and so their trials' ids) unchanged. Only `random.Random.random`
  is used, whose sequence Python keeps identical across versions for a given seed.
  """
  streams = {key: random.Random(f"{seed}:{key}") for key in space}
  return [{key: dist(streams[key].random()) for key, dist in space.items()} for _ in range(n)]


def space(dists: Mapping[str, Distribution]) -> list[Trial]:
  """A template: a partial trial whose keys keep their distributions, for a search that
  proposes its own points (its `product` with fixed keys names the bracket and the rest)."""
  if bad := [k for k, d in dists.items() if not isinstance(d, Distribution)]:
    raise SweepError(f"space: {bad[0]!r} is not a distribution (h.uniform, h.loguniform, "
                     "h.choice)")
  return [dict(dists)]


def is_template(trial: Trial) -> bool:
  return any(isinstance(v, Distribution) for v in trial.values())


HYPER = types.SimpleNamespace(
    fixed=fixed, sweep=sweep, product=product, zipit=zipit, chainit=chainit,
    random_search=random_search, space=space, uniform=uniform, loguniform=loguniform,
    choice=choice)
