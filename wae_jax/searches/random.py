"""Random search: every trial of the sweep file to its own full budget, in the file's order.

The trials are the search (the sweep file drew them); this only runs what is not final yet.
With `--pack` > 1, trials that can train as one program go together (`pack_trials`).
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from wae_jax import hyper
from wae_jax import searches
from wae_jax import workdir as workdir_lib


@searches.register("random")
class Random(searches.Search):
  packs = True

  def restore(self, ledger: searches.Ledger) -> list[str]:
    todo = [t for t in ledger.trials
            if ledger.records[t].get("status") not in workdir_lib.FINAL]
    units = (pack_trials({t: ledger.trials[t] for t in todo}, ledger.resume_steps, ledger.pack)
             if ledger.pack > 1 else [[t] for t in todo])
    self.queue = [searches.Job(tuple(u)) for u in reversed(units)]
    self.running: set[str] = set()
    packs = (f" as {len(units)} pack{'s' * (len(units) != 1)} of <= {ledger.pack}"
             if ledger.pack > 1 else "")
    return [f"{len(ledger.trials)} trials, {len(ledger.trials) - len(todo)} already final, "
            f"{len(todo)} to run{packs}"]

  def next(self) -> searches.Job | None:
    if not self.queue:
      return None
    job = self.queue.pop()
    self.running.update(job.tids)
    return job

  def finished(self, job: searches.Job, records: Sequence[Mapping[str, Any]]) -> list[str]:
    self.running.difference_update(job.tids)
    return []

  def in_flight(self) -> list[str]:
    return sorted(self.running)

  def describe(self) -> str:
    return "random: every trial to its full budget"


def pack_trials(trials: Mapping[str, hyper.Trial], resume_steps: Mapping[str, int],
                size: int) -> list[list[str]]:
  """Trial ids in packs of at most `size` that can train as one program, in the sweep's order.

  Trials share a pack only if their configs agree on every field that shapes the program
  (`pack.signature`: not on seeds, lambda, learning rates, step counts) and they resume
  from the same checkpoint step (`resume_steps`, 0 if absent). Each such group is cut into
  the fewest packs, of sizes that differ by at most one.
  """
  # pylint: disable-next=g-import-not-at-top  # JAX and the configs: only for packs.
  from wae_jax import pack, study
  groups, bases = {}, {}
  for tid, trial in trials.items():
    shapes = json.dumps(pack.signature(study.trial_config(trial, bases, tid)), sort_keys=True)
    groups.setdefault((shapes, resume_steps.get(tid, 0)), []).append(tid)
  packs = []
  for ids in groups.values():
    n = -(-len(ids) // size)
    cuts = [len(ids) * i // n for i in range(n + 1)]
    packs += [ids[a:b] for a, b in zip(cuts, cuts[1:])]
  return packs
