"""Executors chosen by name: where a sweep's tasks run, and word of when each one ends.

An executor runs a task (`supervise.Task`: a trial, or a pack, to a number of steps) on some
worker, retries one that raised `supervise.TrialInterrupted` or lost its worker up to
`max_retries` times, and reports each ending as a `Done` with the trials' final records. It decides nothing:
the runner asks the search what to submit. The built-in executors are modules of this
package, imported by name on first use (`ray` for a cluster or a laptop, `local` for a
process pool with no Ray at all, `warm` for that pool training in its workers' own processes); one outside the package is a module on the Python path
that registers itself under its own module name, as searches do.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from wae_jax import registry
from wae_jax import supervise
from wae_jax.hyper import SweepError

DEFAULT = "ray"


@dataclasses.dataclass(frozen=True)
class Done:
  """A task's end: its trials' final records, or why there are none (out of retries)."""
  key: int
  result: list[dict[str, Any]] | None = None
  error: str | None = None


class Executor:
  """Base class. `options` are the `wae-sweep run` flags the executor takes (`parallel`,
  `max_retries` for all; others its own); one it does not take is refused by name."""
  takes: tuple[str, ...] = ("parallel", "max_retries")

  def __init__(self, options: Mapping[str, Any]):
    given = {k for k, v in options.items() if v is not None}
    if unknown := sorted(given - set(self.takes)):
      raise SweepError(f"--{unknown[0]}: the {self.name} executor does not take it "
                       f"(it takes {', '.join('--' + t for t in self.takes)})")
    self.parallel: int | None = options.get("parallel")
    self.max_retries: int = 2 if options.get("max_retries") is None else options["max_retries"]

  name = ""
  default_parallel: float = 1  # Tasks at a time without --parallel.

  def start(self) -> None:
    """Brings the workers up (the runner calls it once there is work)."""

  def submit(self, task: supervise.Task) -> int:
    """Starts the task on a worker; returns its key."""
    raise NotImplementedError

  def wait(self, timeout: float) -> list[Done]:
    """The tasks that ended since the last call, waiting up to `timeout` s for one."""
    raise NotImplementedError

  def shutdown(self) -> None:
    """Stops what `start` started; tasks still running are ended."""


# Executors by name: `@register(name)` makes one available as `--executor=name`.
_PARTS = registry.Registry(__name__, {"ray": "ray", "local": "local", "warm": "warm"},
                           "executor", SweepError)
register, get, names = _PARTS.register, _PARTS.get, _PARTS.names
