"""Searches chosen by name: what a sweep starts, climbs or proposes next.

A search decides; it never acts. It reads no file, keeps no clock and never calls the
engine: the runner (`runner.py`) hands it what the trial directories say (`Ledger`), asks
it for the next `Job`, launches that on an executor, and tells it how the job ended. What a
search must remember about a trial it returns from `note(tid)`; the runner writes that into
the trial's `search.json` before the trial's trainer starts, and a relaunch rebuilds the
search from those notes alone, so it finishes what it decided and never undoes a decision.
`replay.py` drives the same interface on the recorded curves of a finished study.

A sweep file's `get_search(arg=None)` returns `{"name": ..., **options}`; each search
parses and checks its own options (a `SweepError` naming `search.<option>`). The built-in
searches are modules of this package, imported by name on first use; a search outside the
package is a module on the Python path that registers itself under its own module name
(`@searches.register(__name__)`), and naming it imports it. The same holds for executors.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from wae_jax import hyper
from wae_jax import registry
from wae_jax.hyper import SweepError

DEFAULT = "random"


@dataclasses.dataclass(frozen=True)
class Job:
  """One launch: train the trials `tids` (one, or a pack) up to `num_steps` (None: each
  trial's own budget). `proposed` holds the trial dicts of points the search made up (not
  in the sweep file), which the runner writes to the ledger before their trainer starts.
  `note` is what the driver prints for the decision."""
  tids: tuple[str, ...]
  num_steps: int | None = None
  note: str = ""
  proposed: Mapping[str, hyper.Trial] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Ledger:
  """What the trial directories say, as a search is restored from it."""
  trials: Mapping[str, hyper.Trial]  # By id, the sweep file's order, proposals last.
  brackets: Mapping[str, Sequence[str]]  # Trial ids by base config: an algorithm each.
  records: Mapping[str, Mapping[str, Any]]  # Each trial's metrics.json ({}: none yet).
  notes: Mapping[str, Mapping[str, Any] | None]  # Each trial's search.json (None: none).
  # (trial id, metric) -> {step: value} of its recorded evaluations, to rebuild lost notes.
  curve: Callable[[str, str], Mapping[int, float]] = lambda tid, metric: {}
  pack: int = 1  # Trials a job may train at once as one program (`--pack`).
  resume_steps: Mapping[str, int] = dataclasses.field(default_factory=dict)  # For packs.
  # By bracket: the sweep file's template (`h.space`) a proposing search draws from.
  spaces: Mapping[str, hyper.Trial] = dataclasses.field(default_factory=dict)


class Search:
  """Base class: the interface the runner and the replay drive.

  A subclass sets `name` through `register`, parses its options in `__init__`, and
  implements `restore`, `next` and `finished`; the rest have defaults for a search that
  only starts trials.
  """
  name: str = ""
  option_names: tuple[str, ...] = ()  # What `get_search` may set besides `name`.
  metric: str | None = None  # What it ranks by, if anything (the results table's default).
  packs: bool = False  # Whether its jobs may train several trials as one pack.
  proposes: bool = False  # Whether it draws points of its own from the file's `h.space`s.

  def __init__(self, options: Mapping[str, Any]):
    if unknown := sorted(set(options) - set(self.option_names)):
      known = ", ".join(("name", *self.option_names))
      raise SweepError(f"search.{unknown[0]}: the {self.name} search has no such option "
                       f"(known: {known})")

  def options(self) -> dict[str, Any]:
    """Its options as the ledger records them (with `name`, `parse` takes them back)."""
    return {}

  def check(self, configs: Mapping[str, Any]) -> None:
    """Checks the search against every trial's resolved config (by id); SweepError."""

  def restore(self, ledger: Ledger) -> list[str]:
    """Takes up the sweep where the trial directories leave it; says how it found it."""
    raise NotImplementedError

  def next(self) -> Job | None:
    """The next job to launch now, decided and noted; None: none until a job ends."""
    raise NotImplementedError

  def finished(self, job: Job, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Takes the final records of a job's trials; returns what that meant, as lines."""
    raise NotImplementedError

  def note(self, tid: str) -> dict[str, Any] | None:
    """What the trial directory must keep for a relaunch (None: nothing)."""
    del tid
    return None

  def in_flight(self) -> list[str]:
    """Trials whose decided job has not ended (left to a relaunch when the driver stops)."""
    return []

  def stopped(self) -> set[str]:
    """Trials the search stopped for good before their full budget."""
    return set()

  def waiting(self) -> set[str]:
    """Trials done at a step the search may still take further."""
    return set()

  def planned(self) -> int | None:
    """Trials the sweep will have in all, proposals to come included (None: the file's)."""
    return None

  def spent(self) -> int | None:
    """Model-steps given out so far (None: the search does not count them)."""
    return None

  def status(self) -> list[str]:
    """Lines for `wae-sweep status`: where the search stands."""
    return []

  def summary(self) -> list[str]:
    """Lines for the end of a launch."""
    return []

  def describe(self) -> str:
    """One line for `wae-sweep list` and the driver's first line."""
    return self.name


def parse(spec: Mapping[str, Any] | None) -> Search:
  """A sweep file's `get_search()` (None: random search) as a search; SweepError naming
  the bad option."""
  if spec is None:
    spec = {"name": DEFAULT}
  if not isinstance(spec, Mapping):
    raise SweepError(f"search: get_search must return a dict, got {type(spec).__name__}")
  name = spec.get("name", DEFAULT)
  if not isinstance(name, str):
    raise SweepError(f"search.name: must be a search's name, got {name!r}")
  try:
    cls = get(name)
  except SweepError as e:
    raise SweepError(f"search.name: {e}") from None
  return cls({k: v for k, v in spec.items() if k != "name"})


def spec_of(search: Search) -> dict[str, Any]:
  """The search as the ledger records it: `parse(spec_of(s))` rebuilds it."""
  return {"name": search.name, **search.options()}


# Searches by name: `@register(name)` makes one available as `{"name": name, ...}`.
_PARTS = registry.Registry(
    __name__, {"random": "random", "asha": "asha", "curve": "curve", "tpe": "tpe"}, "search",
    SweepError)
register, get, names = _PARTS.register, _PARTS.get, _PARTS.names


def proposing() -> list[str]:
  """The built-in searches that propose points of their own."""
  return [n for n in names() if get(n).proposes]
