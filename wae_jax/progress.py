"""How a sweep stands, as a person reads it: the driver's lines, `wae-sweep status`, a bar.

The driver prints a timestamped line for each decision and each job's end (what the search
says it meant), and every `runner.PROGRESS_S` seconds without one a line of the running
trials. A search that counts model-steps (`Search.spent`) is shown by them; otherwise a bar
and an ETA count steps, from the trials' records: the rate is this launch's steps a second,
and a trial that has not started counts the mean `num_steps` of those that have.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any, Mapping, Sequence, TextIO

from etils import epath
import numpy as np

from wae_jax import searches
from wae_jax import workdir as workdir_lib

SHOWN = 4  # Running trials named on a line.


def bar(fraction: float, width: int = 30) -> str:
  filled = int(round(fraction * width))
  return "[" + "#" * filled + "-" * (width - filled) + f"] {100 * fraction:5.1f}%"


def duration(seconds: float) -> str:
  """`h:mm:ss`, or `--` for an unknown (infinite) time."""
  if not math.isfinite(seconds):
    return "--"
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h}:{m:02d}:{s:02d}"


def counts(states: Mapping[str, workdir_lib.TrialState]) -> dict[str, int]:
  out = {}
  for st in states.values():
    out[st.status] = out.get(st.status, 0) + 1
  return out


def format_counts(c: Mapping[str, int]) -> str:
  order = list(workdir_lib.STATUSES) + sorted(set(c) - set(workdir_lib.STATUSES))
  return "  ".join(f"{k} {c[k]}" for k in order if c.get(k))


class Progress:
  """The driver's console."""

  def __init__(self, workdir: epath.Path, search, records: Mapping[str, Mapping[str, Any]],
               out: TextIO):
    self.workdir, self.search, self.out, self.start = workdir, search, out, time.time()
    self.records = dict(records)
    self.initial = self._steps()[0]

  def say(self, *lines: str) -> None:
    if lines:
      print(f"{time.strftime('%H:%M:%S')} {lines[0]}", *lines[1:], sep="\n", file=self.out,
            flush=True)

  def _steps(self) -> tuple[int, int]:
    """Steps done and to do in all, final trials counting as done."""
    known = [r["num_steps"] for r in self.records.values() if r.get("num_steps")]
    mean = int(np.mean(known)) if known else 0
    total = done = 0
    for r in self.records.values():
      n = r.get("num_steps") or mean
      total += n
      done += n if r.get("status") in workdir_lib.FINAL else min(r.get("step") or 0, n)
    return done, total

  def _where(self) -> str:
    elapsed = duration(time.time() - self.start)
    if (spent := self.search.spent()) is not None:
      return f"{spent:,} model-steps given out in {elapsed}"
    done, total = self._steps()
    rate = (done - self.initial) / max(time.time() - self.start, 1e-9)
    eta = (total - done) / rate if rate > 0 else math.inf
    return f"{bar(done / max(total, 1))} {done:,}/{total:,} steps  eta {duration(eta)}"

  def finished(self, job, records: Sequence[Mapping[str, Any]], lines: Sequence[str]) -> None:
    ends = []
    for tid, record in zip(job.tids, records):
      self.records[tid] = record
      error = f"  ({record['error']})" if record.get("error") else ""
      ends.append(f"{tid} {record.get('status')} at step {record.get('step', '?')}{error}")
    self.say(f"{self._where()}  " + ends[0], *ends[1:], *lines)

  def running(self, tids: Sequence[str]) -> None:
    self.records.update(workdir_lib.read_records(self.workdir, tids))
    shown = []
    for tid in tids[:SHOWN]:
      r = self.records[tid]
      loss = (r.get(workdir_lib.TRAIN) or {}).get("loss")
      value = (r.get("metrics") or {}).get(self.search.metric) if self.search.metric else None
      shown.append(f"{tid} {r.get('step', 0)}/{r.get('num_steps', '?')}"
                   + ("" if loss is None else f" loss {loss:.4g}")
                   + ("" if value is None else f" latest {self.search.metric} {value:.4g}"))
    more = f" +{len(tids) - SHOWN} more" if len(tids) > SHOWN else ""
    self.say(f"{self._where()}  running: {', '.join(shown)}{more}")


def status(s, workdir: epath.PathLike, out: TextIO | None = None) -> dict[str, int]:
  """`wae-sweep status`: counts per state, where the search stands, and a bar with an ETA
  from the rate of trials that became final since the last launch."""
  from wae_jax import runner  # pylint: disable=g-import-not-at-top  # Restores the search.
  out = out or sys.stdout
  workdir = epath.Path(workdir)
  try:
    recorded = workdir_lib.read_ledger(workdir) or {}
  except (ValueError, OSError):  # Unreadable: `run` starts a new one.
    recorded = {}
  search, by_file = s.search, s.search.name
  if (spec := recorded.get("search")) and spec.get("name") != by_file:
    # Run with another search than the file's (`--search=random`): that one's view.
    search = searches.parse(spec)
    s = dataclasses.replace(s, search=search, spaces={})
  ledger = runner.read_ledger(s, workdir)
  states = workdir_lib.read_states(workdir, ledger.trials)
  c = counts(states)
  print(f"{s.spec} in {workdir}: {len(states)} trials  " + format_counts(c), file=out)
  if search.name != by_file:
    print(f"  run by the {search.name} search (--search={search.name}), not the file's "
          f"{by_file}", file=out)
  search.restore(ledger)
  if lines := search.status():
    print(*lines, sep="\n", file=out)
  final = [st for st in states.values() if st.status in workdir_lib.FINAL]
  launched = recorded.get("launched_at")
  recent = sum(1 for st in final if launched and st.mtime and st.mtime >= launched)
  rate = recent / (time.time() - launched) if recent else 0.0
  total = max(len(states), search.planned() or 0)  # With the points still to be proposed.
  left = total - len(final)
  eta = left / rate if rate else math.inf if left else 0
  print(f"{bar(len(final) / total)} {len(final)}/{total} final  "
        f"{3600 * rate:.1f} trials/h  eta {duration(eta)}", file=out)
  return c
