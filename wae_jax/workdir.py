"""The trial-directory contract: every file, status and exit code the parts agree on.

A trial directory holds `config.json`, `checkpoints/`, TensorBoard events, PNG grids,
`train.log` (under a sweep) and `metrics.json`, the single source of truth about the
trial's state. A sweep directory holds one trial directory per trial id and the ledger
`sweep.json`. JSON files are replaced atomically, so a reader sees the old or the new file,
never half of one. Paths may be local or `gs://`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import os
import time
import uuid
from typing import Any, Iterable, Mapping

from absl import logging
from etils import epath

CONFIG = "config.json"
METRICS = "metrics.json"
CHECKPOINTS = "checkpoints"
LOG = "train.log"  # The trainer's output under a sweep, from its latest attempt.
LEDGER = "sweep.json"  # A sweep directory's expected set of trials.
SEARCH = "search.json"  # What the sweep's search noted of the trial (`searches.Search.note`).
ASIDE = "aside"  # What a trial directory set aside (a restart's files, bad checkpoints).

# What a trainer writes into metrics.json.
RUNNING, DONE, DIVERGED, FAILED = "running", "done", "diverged", "failed"
# ...or the sweep runner, of a trial a person must look at (its config.json unreadable, with
# nothing to rebuild it from): not final, so each launch tries it again and names it.
DAMAGED = "damaged"
STATUSES = (RUNNING, DONE, DIVERGED, FAILED, DAMAGED)
FINAL = (DONE, DIVERGED, FAILED)  # A sweep never reruns these.
# What a reader may see besides: no metrics.json yet, or one it cannot read; and a trial
# whose task the sweep runner gave up on this launch (it resumes on the next).
PENDING, CORRUPT, INTERRUPTED = "pending", "corrupt", "interrupted"
STATES = STATUSES + (PENDING, CORRUPT, INTERRUPTED)

# Exit codes of the trainer, which the sweep runner reads.
EXIT_OK = 0
EXIT_CRASHED = 1  # The error is the output's last line and in metrics.json.
EXIT_USAGE = 2  # A refused flag or config: one line on stderr, nothing written.
EXIT_STOPPED = 143  # Stopped by a signal with a checkpoint saved: rerun to resume.
EXIT_BUSY = 75  # A trial directory is owned by another live trainer; nothing done.
EXIT_DAMAGED = 65  # A trial directory a person must look at (DAMAGED); nothing done.

TRAIN = "train"  # The top-level field of the last logged training means, by name.


def write_json(path: epath.PathLike, obj: Any) -> None:
  """Writes JSON via a temporary sibling and a rename, so readers see old or new, never half;
  durably (fsynced) on a local disk, as an object store's writes are."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if path.is_dir():  # Put there by hand: kept for a look, out of the way.
    aside = path.parent / f"{path.name}.directory-{time.strftime('%Y%m%d-%H%M%S')}"
    path.rename(aside)
    logging.warning("%s was a directory; moved to %s.", path, aside)
  tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
  text = json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + "\n"
  if is_local(path):
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
      os.fsync(directory)  # The rename itself.
    finally:
      os.close(directory)
  else:
    tmp.write_text(text)
    tmp.replace(path)


def not_a_directory(path: epath.PathLike) -> str | None:
  """Why `path` cannot be a trial or sweep directory (it, or a local parent, is a file), or
  None."""
  path = epath.Path(path)
  if path.is_file():
    return f"--workdir: {path} is a file, not a directory"
  if is_local(path):
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
      parent = parent.parent
    if not parent.is_dir():
      return f"--workdir: {parent} is a file, so {path} cannot be a directory"
  return None


def is_local(path: epath.PathLike) -> bool:
  """A path on this machine's disk, not on an object store (gs://, s3://)."""
  return "://" not in os.fspath(path)


def move_aside(workdir: epath.PathLike, why: str, names: Iterable[str] | None = None
               ) -> epath.Path:
  """Moves the trial directory's entries (`names`, or all but hidden files such as its lock)
  into `aside/<time>-<why>/`: kept for a person to look at, out of the way of every reader."""
  workdir = epath.Path(workdir)
  target = workdir / ASIDE / f"{time.strftime('%Y%m%d-%H%M%S')}-{why}"
  target.mkdir(parents=True, exist_ok=True)
  for entry in list(workdir.iterdir()) if names is None else [workdir / n for n in names]:
    if entry.name != ASIDE and not entry.name.startswith(".") and entry.exists():
      entry.rename(target / entry.name)
  return target


def _jsonable(value: Any) -> Any:
  if hasattr(value, "item"):  # numpy and jax scalars
    return value.item()
  return str(value)


def read_json(path: epath.PathLike) -> Any:
  """The JSON file at `path`, or None if it does not exist; ValueError, one line, if it
  cannot be read (a directory, no permission) or is not JSON."""
  path = epath.Path(path)
  if not path.exists():
    return None
  try:
    text = path.read_text()
  except OSError as e:
    raise ValueError(e.strerror or str(e)) from None
  return json.loads(text)


def read_metrics(workdir: epath.PathLike) -> dict[str, Any] | None:
  """The trial's `metrics.json`, or None if it does not exist yet."""
  return read_json(epath.Path(workdir) / METRICS)


def read_record(workdir: epath.PathLike) -> dict[str, Any]:
  """`metrics.json` as a supervisor reads it: {} when absent or unreadable (the trainer
  rewrites it on its next run)."""
  try:
    record = read_metrics(workdir)
  except (ValueError, OSError):
    return {}
  return record if isinstance(record, dict) else {}


def write_metrics(workdir: epath.PathLike, *, status: str, step: int, num_steps: int,
                  wall_s: float, metrics: Mapping[str, float], config: Mapping[str, Any],
                  error: str | None = None, extra: Mapping[str, Any] | None = None) -> None:
  """Writes `metrics.json`; non-finite metrics become null so the file stays valid JSON.

  `extra` holds further top-level fields: those evaluators return beside `metrics` (e.g. the
  hash of the Inception weights) and the last logged training means under TRAIN.
  """
  assert status in STATUSES, status
  write_json(epath.Path(workdir) / METRICS, {
      "status": status, "step": int(step), "num_steps": int(num_steps),
      "wall_s": round(float(wall_s), 3), "metrics": _finite(metrics), "error": error,
      "config": dict(config), "host": os.uname().nodename, **(extra or {}),
  })


def update_metrics(workdir: epath.PathLike, metrics: Mapping[str, float],
                   extra: Mapping[str, Any], drop: tuple[str, ...] = ()) -> None:
  """Merges a later evaluation into `metrics.json`, keeping status, step and config.

  Metrics and top-level fields named in `drop` go first, so results of an earlier
  evaluation that this one did not recompute do not stay beside its numbers.
  """
  record = {k: v for k, v in read_metrics(workdir).items() if k not in drop}
  kept = {k: v for k, v in record["metrics"].items() if k not in drop}
  write_json(epath.Path(workdir) / METRICS,
             {**record, **extra, "metrics": {**kept, **_finite(metrics)}})


def record_failure(workdir: epath.PathLike, error: str, *,
                   config: Mapping[str, Any] | None = None,
                   num_steps: int | None = None, status: str = FAILED) -> None:
  """Marks the trial `failed` (or `status`: DAMAGED) with a one-line `error`; the rest of
  its record stays.

  The one place a failure is written, by the trainer's crash handler and by a sweep whose
  trainer exited without saying why (then `config` and `num_steps` may be unknown).
  """
  record = read_record(workdir)
  record.update(status=status, error=error.strip().splitlines()[-1] if error.strip() else error)
  record.setdefault("step", 0)
  if config is not None:
    record["config"] = dict(config)
  if num_steps is not None:
    record["num_steps"] = int(num_steps)
  write_json(epath.Path(workdir) / METRICS, record)


def _finite(metrics: Mapping[str, float]) -> dict[str, float | None]:
  return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}


# ------------------------------------------------------------------------------------------
# A trial's state as a reader (the sweep runner, `wae-results`) sees it.


@dataclasses.dataclass(frozen=True)
class TrialState:
  status: str  # One of STATES.
  step: int = 0
  mtime: float | None = None  # When metrics.json was last written.
  error: str | None = None  # Why metrics.json is unusable (CORRUPT), or the trial's error.


def load_record(workdir: epath.PathLike) -> tuple[dict[str, Any] | None, str | None]:
  """(metrics.json as a dict, or None if absent; why it is unusable, or None)."""
  try:
    record = read_metrics(workdir)
  except (ValueError, OSError) as e:  # json.JSONDecodeError is a ValueError.
    return None, f"{METRICS} unreadable: {str(e).splitlines()[0]}"
  if record is None and not (epath.Path(workdir) / METRICS).exists():
    return None, None
  problem = _malformed(record)
  return (None, f"{METRICS} {problem}") if problem else (record, None)


def _malformed(record: Any) -> str | None:
  """What is wrong with the shape or types of a `metrics.json` record, or None."""
  if not isinstance(record, dict):
    return f"is not a JSON object (got {type(record).__name__})"
  if record.get("status") not in STATUSES:
    return f"has no valid status (got {record.get('status')!r})"
  number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
  checks = {"step": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            "num_steps": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
            "wall_s": lambda v: v is None or number(v),
            "error": lambda v: v is None or isinstance(v, str),
            "config": lambda v: isinstance(v, dict),
            "metrics": lambda v: isinstance(v, dict) and all(
                x is None or number(x) for x in v.values())}
  for field, ok in checks.items():
    if field in record and not ok(record[field]):
      return f"has a malformed {field!r} (got {record[field]!r:.60})"
  return None


def read_state(workdir: epath.PathLike) -> TrialState:
  workdir = epath.Path(workdir)
  record, error = load_record(workdir)
  if error:
    return TrialState(CORRUPT, error=error)
  if record is None:
    return TrialState(PENDING)
  try:
    mtime = (workdir / METRICS).stat().mtime
  except OSError:  # Replaced between the read and the stat: the next look sees it.
    mtime = None
  return TrialState(record["status"], int(record.get("step") or 0), mtime, record.get("error"))


def per_trial(read, sweep_dir: epath.PathLike, ids: Iterable[str]) -> dict[str, Any]:
  """`read(trial_dir)` of each trial, in parallel (thousands on gs:// are slow one by one)."""
  sweep_dir, ids = epath.Path(sweep_dir), list(ids)
  with concurrent.futures.ThreadPoolExecutor(32) as pool:
    return dict(zip(ids, pool.map(lambda i: read(sweep_dir / i), ids)))


def read_states(sweep_dir: epath.PathLike, ids: Iterable[str]) -> dict[str, TrialState]:
  return per_trial(read_state, sweep_dir, ids)


def read_records(sweep_dir: epath.PathLike, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
  """Each trial's `read_record`."""
  return per_trial(read_record, sweep_dir, ids)


def checkpoint_steps(workdir: epath.PathLike) -> list[int]:
  """The steps of the trial's finalized checkpoints, oldest first."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top  # Slow to import.
  return sorted(ocp.utils.checkpoint_steps(epath.Path(workdir) / CHECKPOINTS))


# ------------------------------------------------------------------------------------------
# The sweep ledger.


def read_ledger(sweep_dir: epath.PathLike) -> dict[str, Any] | None:
  """The ledger `W/sweep.json`, or None: {"sweeps": {spec: [ids]}, "trials": {id: trial},
  "search": {"name": .., **options}, "proposed": {spec: [ids the search made up]}}."""
  ledger = read_json(epath.Path(sweep_dir) / LEDGER)
  if ledger is None:
    return None
  shapes = {"sweeps": dict, "trials": dict, "search": (dict, type(None)),
            "proposed": dict, "launched_at": (int, float)}
  if not isinstance(ledger, dict) or not {"sweeps", "trials"} <= set(ledger):
    raise ValueError(f"{LEDGER} is not a ledger (no 'sweeps' and 'trials')")
  for field, kind in shapes.items():
    if field in ledger and not isinstance(ledger[field], kind):
      raise ValueError(f"{LEDGER} has a malformed {field!r} (got {ledger[field]!r:.60})")
  if not all(isinstance(t, dict) for t in ledger["trials"].values()):
    raise ValueError(f"{LEDGER} has a trial that is not a dict")
  return ledger


def add_to_ledger(sweep_dir: epath.PathLike, spec: str, trials: Mapping[str, Any],
                  search: Mapping[str, Any] | None = None) -> epath.Path | None:
  """Adds a sweep's trials to the ledger, the expected set that status and results read,
  and its search (None: random), which `wae-results` ranks by.

  The ledger is a union, so growing a sweep (more seeds, a new sub-study) into the same
  directory keeps the earlier trials in the table. One that cannot be read is renamed
  aside (its path returned) and a new one started: the trial directories are the record.
  """
  aside = None
  try:
    ledger = read_ledger(sweep_dir)
  except (ValueError, OSError):
    aside = epath.Path(sweep_dir) / f"{LEDGER}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
    (epath.Path(sweep_dir) / LEDGER).rename(aside)
    ledger = None
  ledger = ledger or {"sweeps": {}, "trials": {}}
  ledger["sweeps"][spec] = list(trials)
  ledger["trials"].update(trials)
  ledger["search"] = dict(search) if search else None
  ledger["launched_at"] = time.time()
  write_json(epath.Path(sweep_dir) / LEDGER, ledger)
  return aside


def add_proposals(sweep_dir: epath.PathLike, spec: str, trials: Mapping[str, Any]) -> None:
  """Records trials a search proposed for the sweep `spec` (before their trainers start)."""
  ledger = read_ledger(sweep_dir)
  proposed = ledger.setdefault("proposed", {}).setdefault(spec, [])
  proposed += [t for t in trials if t not in proposed]
  ledger["trials"].update(trials)
  write_json(epath.Path(sweep_dir) / LEDGER, ledger)


def ordered_ids(ledger: Mapping[str, Any]) -> list[str]:
  """The ledger's trial ids in the sweeps' own order (the live driver's; each sweep's
  proposals after its trials), then any other trial it records."""
  ordered = [t for spec, ids in ledger["sweeps"].items() for t in [*ids, *proposals(ledger, spec)]]
  return [t for t in dict.fromkeys([*ordered, *ledger["trials"]]) if t in ledger["trials"]]


def proposals(ledger: Mapping[str, Any] | None, spec: str) -> dict[str, Any]:
  """The trials a search proposed for the sweep `spec`, by id, in the order proposed."""
  ids = ((ledger or {}).get("proposed") or {}).get(spec) or []
  return {t: ledger["trials"][t] for t in ids if t in ledger.get("trials", {})}
