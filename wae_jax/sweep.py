r"""Sweeps: studies written as data, trials kept as directories, fanned out on Ray.

  wae-sweep list   sweeps/bigwae.py
  wae-sweep run    sweeps/bigwae.py:debug --workdir=/tmp/sweep [--parallel=2] [--pack=8]
  wae-sweep status sweeps/bigwae.py:debug --workdir=/tmp/sweep

A sweep file defines `get_hyper(h, arg=None)` and builds its trials with the DSL in `h`
(`fixed`, `sweep`, `product`, `zipit`, `chainit`, `random_search` over `uniform`,
`loguniform`, `choice`). A trial is a flat dict: the key `config` names the base config
(`name[:arg]`, as for `wae-train --config`), every other key is a `config.<field>` override.
Its id is a hash of that dict, so the same file yields the same ids in every process and
every run, and `W/<id>/` is the trial's whole state: the runner decides what to (re)run only
from each trial's `metrics.json`, so a killed sweep relaunched with the same command skips
finished trials and resumes the others from their checkpoints.

Each trial runs the trainer as a subprocess inside a Ray task, so a crashing trial cannot
take the sweep down, and a worker that dies takes its trainer with it (Ray kills the
worker's process group) and has its task retried. With `--pack=K`, trials that share their
array shapes (`train.signature`) and their resume step train K at a time as one vmapped
program (`train.train_pack`) in one task: K small models fill a device one cannot.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
import types
from typing import Any, Callable, Iterable, Mapping, NoReturn, Sequence, TextIO

from absl import app
from absl import logging
from etils import epath
import ml_collections

from wae_jax import config as config_lib
from wae_jax import results as results_lib
from wae_jax import workdir as workdir_lib

Trial = dict[str, Any]
BASE = "config"  # The trial key naming the base config; every other key is an override.
LEDGER = results_lib.LEDGER
LOG = "train.log"  # The trainer's stdout and stderr, from its latest attempt.
TRAIN_PACK = "train_pack"  # `python -m wae_jax.sweep train_pack JSON`: what a pack's task runs.


class SweepError(ValueError):
  """A sweep file or a sweep command is wrong; the message says how, in one line."""


# ----------------------------------------------------------------------------------------
# The DSL. A sweep is a list of partial trials; the combinators merge them.


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


@dataclasses.dataclass(frozen=True)
class Uniform:
  lo: float
  hi: float
  digits: int = 3

  def __call__(self, u: float) -> float:
    return _round(self.lo + u * (self.hi - self.lo), self.digits)


@dataclasses.dataclass(frozen=True)
class LogUniform:
  lo: float
  hi: float
  digits: int = 3

  def __call__(self, u: float) -> float:
    return _round(self.lo * (self.hi / self.lo) ** u, self.digits)


@dataclasses.dataclass(frozen=True)
class Choice:
  values: tuple[Any, ...]

  def __call__(self, u: float) -> Any:
    return self.values[min(int(u * len(self.values)), len(self.values) - 1)]


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


HYPER = types.SimpleNamespace(
    fixed=fixed, sweep=sweep, product=product, zipit=zipit, chainit=chainit,
    random_search=random_search, uniform=uniform, loguniform=loguniform, choice=choice)


# ----------------------------------------------------------------------------------------
# Trials: ids, command lines, validation.


def trial_id(trial: Trial) -> str:
  """A short stable hash of the trial: sha256 of its canonical JSON."""
  canonical = json.dumps(trial, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _flag_value(value: Any) -> str:
  """The text absl/ml_collections parse back into `value` for a field of its type."""
  if isinstance(value, (list, tuple)):
    return repr(tuple(value))
  return value if isinstance(value, str) else repr(value)


def flags_of(trial: Trial) -> list[str]:
  """`wae-train` flags for the trial: `--config=<base>` then its overrides, sorted."""
  overrides = sorted((k, v) for k, v in trial.items() if k != BASE)
  return [f"--config={trial[BASE]}"] + [f"--{k}={_flag_value(v)}" for k, v in overrides]


def _check_form(trial: Trial, where: str) -> None:
  if not isinstance(trial.get(BASE), str):
    raise SweepError(f"{where}: no base config; add h.fixed('config', '<name>[:arg]')")
  for key, value in trial.items():
    if key != BASE and not key.startswith("config."):
      raise SweepError(f"{where}: key {key!r} is neither 'config' nor a 'config.<field>' "
                       "override")
    scalars = value if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(v, (bool, int, float, str)) for v in scalars):
      raise SweepError(f"{where}: {key}={value!r} is not a number, string, bool or list")


def check_configs(trials: Mapping[str, Trial], num_devices: int = 1) -> None:
  """Builds every trial's config and validates it, so a typo fails before any launch.

  `num_devices` is what each trial will train on (the driver cannot ask: on a TPU VM,
  initialising JAX here would hold the chips the trainers need). The trainer checks the
  rest (data on disk) when it starts.
  """
  bases = {}
  for tid, trial in trials.items():
    c = trial_config(trial, bases, tid)
    try:
      config_lib.validate(c, num_devices=num_devices)
    except (config_lib.ConfigError, TypeError) as e:
      raise SweepError(f"trial {tid} ({' '.join(flags_of(trial))}): "
                       f"{str(e).strip().splitlines()[0]}") from None


def trial_config(trial: Trial, bases: dict[str, ml_collections.ConfigDict] | None = None,
                 tid: str | None = None) -> ml_collections.ConfigDict:
  """The trial's config: its base config with its overrides, as `wae-train` would build it.

  `bases` caches the base configs by name across calls (loading one runs its file).
  """
  bases = {} if bases is None else bases
  try:
    if trial[BASE] not in bases:
      bases[trial[BASE]] = config_lib.load(trial[BASE])
    c = bases[trial[BASE]].copy_and_resolve_references()
    for key, value in trial.items():
      if key != BASE:
        _set_field(c, key[len("config."):], value)
  except (config_lib.ConfigError, TypeError, KeyError, AttributeError) as e:
    raise SweepError(f"trial {tid or trial_id(trial)} ({' '.join(flags_of(trial))}): "
                     f"{str(e).strip().splitlines()[0]}") from None
  return c


def _set_field(c, field: str, value: Any) -> None:
  *parents, name = field.split(".")
  for part in parents:
    c = c[part]
  if name not in c:
    raise KeyError(f"config.{field}: no such field")
  c[name] = tuple(value) if isinstance(value, list) else value


@dataclasses.dataclass(frozen=True)
class Sweep:
  spec: str  # The sweep file and its argument, `path.py[:arg]`.
  trials: dict[str, Trial]  # By trial id, in the file's order.


def load_sweep(spec: str, check: bool = True, num_devices: int = 1) -> Sweep:
  """Evaluates the sweep file `path.py[:arg]`; with `check`, validates every trial's config
  for training on `num_devices` devices."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise SweepError(f"no sweep file {path!r}")
  module_spec = importlib.util.spec_from_file_location("_wae_sweep", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_hyper"):
    raise SweepError(f"{path} defines no get_hyper(h, arg=None)")
  try:
    trials = module.get_hyper(HYPER, arg) if arg else module.get_hyper(HYPER)
  except (ValueError, TypeError) as e:
    raise SweepError(f"{spec}: {str(e).strip().splitlines()[0]}") from None
  by_id = {}
  for i, trial in enumerate(trials):
    _check_form(trial, f"{spec} trial #{i}")
    tid = trial_id(trial)
    if tid in by_id:
      raise SweepError(f"{spec}: trial #{i} repeats an earlier trial ({tid}: "
                       f"{' '.join(flags_of(trial))})")
    by_id[tid] = trial
  if not by_id:
    raise SweepError(f"{spec} has no trials")
  if check:
    check_configs(by_id, num_devices)
  return Sweep(spec, by_id)


def write_ledger(workdir: epath.Path, s: Sweep) -> None:
  """Adds the sweep's trials to `W/sweep.json`, the expected set that status and results read.

  The ledger is a union, so growing a sweep (more seeds, a new sub-study) into the same
  workdir keeps the earlier trials in the table.
  """
  ledger = results_lib.read_ledger(workdir) or {"sweeps": {}, "trials": {}}
  ledger["sweeps"][s.spec] = list(s.trials)
  ledger["trials"].update(s.trials)
  ledger["launched_at"] = time.time()
  workdir_lib.write_json(workdir / LEDGER, ledger)


# ----------------------------------------------------------------------------------------
# Running trials: the bodies of Ray tasks.


class TrialInterrupted(RuntimeError):
  """The trainer stopped before a final status (a signal, a kill): Ray retries the task."""


def run_trial(flags: Sequence[str], trial_dir: str,
              trainer: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs `trainer flags` on `trial_dir` until it reports a final status; returns that record.

  `trainer` defaults to this (worker) machine's `python -m wae_jax.train`.
  """
  record = _read(epath.Path(trial_dir))
  if record.get("status") in workdir_lib.FINAL:  # A retry of a task whose trainer finished.
    return record
  return _supervise([*(trainer or default_trainer()), *flags], [trial_dir])[0]


def run_pack(members: Sequence[tuple[Trial, str]],
             trainer: Sequence[str] | None = None) -> list[dict[str, Any]]:
  """Trains the (trial, trial_dir) members not yet final as one pack; returns their records.

  `trainer` is the command before the pack's JSON, by default this (worker) machine's
  `python -m wae_jax.sweep train_pack`. A pack resumes from one checkpoint step; should a
  kill have left its members at different steps (their `ckpt_every` differ), the members at
  each step train as a pack of their own.
  """
  records = {d: _read(epath.Path(d)) for _, d in members}
  pending = [(t, d) for t, d in members if records[d].get("status") not in workdir_lib.FINAL]
  by_step = {}
  for t, d in pending:
    by_step.setdefault(resume_step(d), []).append((t, d))
  for group in by_step.values():
    spec = json.dumps([{"trial": t, "workdir": d} for t, d in group])
    dirs = [d for _, d in group]
    records.update(zip(dirs, _supervise([*(trainer or default_pack_trainer()), spec], dirs)))
  return [records[d] for _, d in members]


def _supervise(command: Sequence[str], trial_dirs: Sequence[str]) -> list[dict[str, Any]]:
  """Runs a trainer of `trial_dirs` to its exit; returns each trial's final record.

  The trainer's output goes to every trial's `train.log`. A trainer that exits with an
  error leaves each trial it did not finish `failed` with its last output line (a bad
  config is refused before anything is written; a crash may leave `running` behind); one
  stopped by a signal raises TrialInterrupted, so Ray retries it and it resumes.
  """
  paths = [epath.Path(d) for d in trial_dirs]
  for path in paths:
    path.mkdir(parents=True, exist_ok=True)
  local = "://" not in trial_dirs[0]  # Stream the log into a trial dir; upload it otherwise.
  with (open(paths[0] / LOG, "w+b") if local else tempfile.TemporaryFile()) as log:
    rc = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log,
                        stderr=subprocess.STDOUT, check=False).returncode
    log.seek(0)
    output = log.read().decode(errors="replace")
  for path in paths[1:] if local else paths:
    (path / LOG).write_text(output)
  records = [_read(path) for path in paths]
  unfinished = [(p, r) for p, r in zip(paths, records)
                if r.get("status") not in workdir_lib.FINAL]
  if not unfinished:
    return records
  if rc == 0 or rc < 0 or rc > 128:  # Exited cleanly or by a signal, unfinished: resumable.
    raise TrialInterrupted(f"trainer exited with code {rc} at step "
                           f"{unfinished[0][1].get('step', 0)}")
  last = next((l.strip() for l in reversed(output.splitlines()) if l.strip()), "")
  for path, record in unfinished:
    record.update(status="failed", error=last or f"trainer exited with code {rc}")
    record.setdefault("step", 0)
    workdir_lib.write_json(path / workdir_lib.METRICS, record)
  return records


def resume_step(trial_dir: str) -> int:
  """The step the trainer resumes `trial_dir` from: its latest finalized checkpoint, or 0."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top  # Slow; packs only.
  return max(ocp.utils.checkpoint_steps(epath.Path(trial_dir) / workdir_lib.CHECKPOINTS),
             default=0)


def _read(trial_dir: epath.Path) -> dict[str, Any]:
  try:
    return workdir_lib.read_metrics(trial_dir) or {}
  except (ValueError, OSError):  # A corrupt file: rerun the trial; the trainer rewrites it.
    return {}


# ----------------------------------------------------------------------------------------
# Training a pack: the subprocess of a pack's task.


def train_pack_main(spec: str) -> None:
  """Trains the pack `spec`, JSON `[{"trial": <trial>, "workdir": <dir>}, ...]`.

  Exits as `wae-train` does: 2 with one line for a config it refuses, 143 when a signal
  stopped it (with checkpoints saved), and 1 after a crash with the error as its last line,
  which `run_pack` records in the `metrics.json` of each member the crash left unfinished.
  """
  from wae_jax import train  # pylint: disable=g-import-not-at-top  # Imports JAX.
  # The log keeps to progress lines, as wae-train's does: orbax logs every save at INFO.
  quiet = train.quiet_libraries
  logging.get_absl_handler().python_handler.addFilter(quiet)
  members, bases = json.loads(spec), {}
  try:
    configs = [trial_config(m["trial"], bases) for m in members]
    results = train.train_pack(configs, [m["workdir"] for m in members])
  except (SweepError, config_lib.ConfigError) as e:
    _last_words(f"wae-train: error: {str(e).strip().splitlines()[0]}", 2)
  except Exception as e:  # pylint: disable=broad-except  # Any crash: logged, then summed up.
    traceback.print_exc()
    _last_words(f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[-1]}", 1)
  if any(r.status == "running" for r in results):
    sys.exit(143)  # Stopped by a signal with checkpoints saved: not finished.


def _last_words(line: str, code: int) -> NoReturn:
  """Exits with `line` as the log's last line, the one the runner records as the error."""
  sys.stdout.flush()
  print(line, file=sys.stderr, flush=True)
  sys.exit(code)


# ----------------------------------------------------------------------------------------
# Running a sweep.


def default_trainer() -> list[str]:
  return [sys.executable, "-m", "wae_jax.train"]


def default_pack_trainer() -> list[str]:
  return [sys.executable, "-m", "wae_jax.sweep", TRAIN_PACK]


def read_states(workdir: epath.Path, ids: Iterable[str]) -> dict[str, results_lib.TrialState]:
  """Each trial's state from its directory, read in parallel (many trials on gs:// are slow)."""
  ids = list(ids)
  with concurrent.futures.ThreadPoolExecutor(32) as pool:
    return dict(zip(ids, pool.map(lambda i: results_lib.read_state(workdir / i), ids)))


def pack_trials(trials: Mapping[str, Trial], resume_steps: Mapping[str, int],
                size: int) -> list[list[str]]:
  """Trial ids in packs of at most `size` that can train as one program, in the sweep's order.

  Trials share a pack only if their configs agree on every field that shapes the program
  (`train.signature`: not on seeds, lambda, learning rates, step counts) and they resume
  from the same checkpoint step (`resume_steps`, 0 if absent). Each such group is cut into
  the fewest packs, of sizes that differ by at most one.
  """
  from wae_jax import train  # pylint: disable=g-import-not-at-top  # Imports JAX; packs only.
  groups, bases = {}, {}
  for tid, trial in trials.items():
    shapes = json.dumps(train.signature(trial_config(trial, bases, tid)), sort_keys=True)
    groups.setdefault((shapes, resume_steps.get(tid, 0)), []).append(tid)
  packs = []
  for ids in groups.values():
    n = -(-len(ids) // size)
    cuts = [len(ids) * i // n for i in range(n + 1)]
    packs += [ids[a:b] for a, b in zip(cuts, cuts[1:])]
  return packs


def run_sweep(s: Sweep, workdir: epath.PathLike, *, parallel: int | None = None,
              pack: int = 1, ray_address: str | None = None,
              trainer: Sequence[str] | None = None,
              resources: Mapping[str, float] | None = None, max_retries: int = 2,
              out: TextIO | None = None) -> dict[str, int]:
  """Runs every trial of `s` not yet final in `workdir`; returns the counts per status.

  With `pack` > 1, trials train up to `pack` at a time as one program (see `pack_trials`);
  each pack is one Ray task, and `trainer` is the command before its JSON (by default
  `python -m wae_jax.sweep train_pack` on the worker). Otherwise each trial is a task, and
  `trainer` the command before `--config=...` (by default `python -m wae_jax.train`).
  Without `ray_address`, starts a local Ray with `parallel` CPUs (one task each), unless
  Ray is already initialised in this process. `parallel` also caps the tasks in flight;
  `resources` are each task's Ray resources (default one CPU).
  """
  import ray  # pylint: disable=g-import-not-at-top  # Slow to import; only `run` needs it.

  out = out or sys.stdout
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  write_ledger(workdir, s)
  states = read_states(workdir, s.trials)
  todo = [i for i, st in states.items() if st.status not in workdir_lib.FINAL]
  if pack > 1:
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
      steps = dict(zip(todo, pool.map(lambda i: resume_step(str(workdir / i)), todo)))
    units = pack_trials({i: s.trials[i] for i in todo}, steps, pack)
  else:
    units = [[i] for i in todo]
  packs = f" as {len(units)} pack{'s' * (len(units) != 1)} of <= {pack}" if pack > 1 else ""
  print(f"{s.spec}: {len(s.trials)} trials, {len(s.trials) - len(todo)} already final, "
        f"{len(todo)} to run{packs} in {workdir}", file=out, flush=True)
  if not todo:
    return _counts(states)
  started_ray = not ray.is_initialized()
  if started_ray:
    try:
      ray.init(address=ray_address or "local",  # "local": a new instance, never a stale one.
               num_cpus=None if ray_address else (parallel or 1), include_dashboard=False,
               log_to_driver=False, logging_level="ERROR")
    except ConnectionError as e:
      raise SweepError(f"--ray_address: {str(e).strip().splitlines()[-1]}") from None
  resources = dict(resources or {"CPU": 1})
  options = dict(
      num_cpus=resources.pop("CPU", 0), num_gpus=resources.pop("GPU", 0), resources=resources,
      max_retries=max_retries, retry_exceptions=[TrialInterrupted])
  trial_task = ray.remote(run_trial).options(**options)
  pack_task = ray.remote(run_pack).options(**options)

  def launch(unit: list[str]):
    if pack > 1:
      return pack_task.remote([(s.trials[i], str(workdir / i)) for i in unit], trainer)
    base, *overrides = flags_of(s.trials[unit[0]])
    flags = [base, f"--workdir={workdir / unit[0]}", *overrides]
    return trial_task.remote(flags, str(workdir / unit[0]), trainer)

  progress = _Progress(len(todo), out)
  queue, running = list(reversed(units)), {}
  try:
    while queue or running:
      while queue and len(running) < (parallel or len(units)):
        unit = queue.pop()
        running[launch(unit)] = unit
      [ref], _ = ray.wait(list(running), num_returns=1)
      unit = running.pop(ref)
      try:
        records = ray.get(ref)
        records = records if pack > 1 else [records]
      except ray.exceptions.RayError as e:  # Out of retries: left for the next launch.
        lost = {"status": "interrupted", "error": str(e).strip().splitlines()[-1]}
        records = [_read(workdir / i) for i in unit]  # Members of a pack may have finished.
        records = [r if r.get("status") in workdir_lib.FINAL else lost for r in records]
      for tid, record in zip(unit, records):
        states[tid] = results_lib.TrialState(record["status"], record.get("step", 0))
        progress.update(tid, record)
  finally:
    if started_ray:
      ray.shutdown()
  counts = _counts(states)
  print(f"{s.spec}: " + _format_counts(counts), file=out, flush=True)
  return counts


def _counts(states: Mapping[str, results_lib.TrialState]) -> dict[str, int]:
  counts = {}
  for st in states.values():
    counts[st.status] = counts.get(st.status, 0) + 1
  return counts


def _format_counts(counts: Mapping[str, int]) -> str:
  order = list(workdir_lib.STATUSES) + sorted(set(counts) - set(workdir_lib.STATUSES))
  return "  ".join(f"{k} {counts[k]}" for k in order if counts.get(k))


def _bar(fraction: float, width: int = 30) -> str:
  filled = int(round(fraction * width))
  return "[" + "#" * filled + "-" * (width - filled) + f"] {100 * fraction:5.1f}%"


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "--"
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h}:{m:02d}:{s:02d}"


class _Progress:
  """One line per finished trial: its outcome, the bar, and an ETA from this run's rate."""

  def __init__(self, total: int, out: TextIO):
    self.total, self.out, self.done, self.start = total, out, 0, time.time()

  def update(self, tid: str, record: Mapping[str, Any]) -> None:
    self.done += 1
    elapsed = time.time() - self.start
    eta = elapsed / self.done * (self.total - self.done)
    error = f"  ({record['error']})" if record.get("error") else ""
    print(f"{_bar(self.done / self.total)} {self.done}/{self.total}  eta {_duration(eta)}  "
          f"{tid} {record['status']} at step {record.get('step', '?')}{error}",
          file=self.out, flush=True)


def sweep_status(s: Sweep, workdir: epath.PathLike,
                 out: TextIO | None = None) -> dict[str, int]:
  """Prints counts per state, a progress bar, and an ETA from the rate since the last launch.

  The rate counts trials whose `metrics.json` became final after the ledger's launch time.
  """
  out = out or sys.stdout
  workdir = epath.Path(workdir)
  states = read_states(workdir, s.trials)
  counts = _counts(states)
  final = [st for st in states.values() if st.status in workdir_lib.FINAL]
  launched = (results_lib.read_ledger(workdir) or {}).get("launched_at")
  now = time.time()
  recent = sum(1 for st in final if launched and st.mtime and st.mtime >= launched)
  rate = recent / (now - launched) if recent else 0.0
  eta = (len(states) - len(final)) / rate if rate else math.inf
  print(f"{s.spec} in {workdir}: {len(states)} trials  " + _format_counts(counts), file=out)
  print(f"{_bar(len(final) / len(states))} {len(final)}/{len(states)} final  "
        f"{3600 * rate:.1f} trials/h  eta {_duration(0 if len(final) == len(states) else eta)}",
        file=out)
  return counts


def list_sweep(s: Sweep, out: TextIO | None = None) -> dict[str, int]:
  """Prints one line per trial (id and flags) and the number of trials per base config."""
  out = out or sys.stdout
  per_base = {}
  for tid, trial in s.trials.items():
    print(tid, *flags_of(trial), file=out)
    per_base[trial[BASE]] = per_base.get(trial[BASE], 0) + 1
  for base, n in per_base.items():
    print(f"# {base}: {n} trials", file=out)
  print(f"# {s.spec}: {len(s.trials)} trials", file=out)
  return per_base


def main(argv: Sequence[str] | None = None) -> None:
  argv = sys.argv[1:] if argv is None else list(argv)
  if argv[:1] == [TRAIN_PACK] and len(argv) == 2:  # A pack's subprocess; not for users.
    app.run(lambda _: train_pack_main(argv[1]), argv=[f"wae-sweep {TRAIN_PACK}", "--"])
    return
  parser = argparse.ArgumentParser(prog="wae-sweep", description=__doc__.split("\n\n")[1])
  parser.add_argument("command", choices=("list", "run", "status"))
  parser.add_argument("sweep", help="sweep file and optional argument: path.py[:arg]")
  parser.add_argument("--workdir", help="sweep directory (local or gs://); one subdir a trial")
  parser.add_argument("--parallel", type=int, default=None,
                      help="tasks (trials, or packs) at a time (local Ray: its CPU count; "
                           "default 1 locally, unbounded on a cluster)")
  parser.add_argument("--pack", type=int, default=1,
                      help="train up to this many trials that share their shapes as one "
                           "vmapped program, one Ray task a pack (default 1: a task a trial)")
  parser.add_argument("--ray_address", default=None, help="join this Ray cluster ('auto', ...)")
  parser.add_argument("--trainer", default=None,
                      help="trainer command before --config (default: python -m wae_jax.train)"
                           f"; with --pack > 1, before the pack's JSON (default: python -m "
                           f"wae_jax.sweep {TRAIN_PACK})")
  parser.add_argument("--resources", default=None, type=json.loads,
                      help='Ray resources per task (a trial, or a pack) as JSON, e.g. '
                           '\'{"TPU": 4}\' (default {"CPU": 1})')
  parser.add_argument("--max_retries", type=int, default=2,
                      help="retries of a task whose worker or trainer is lost")
  parser.add_argument("--devices", type=int, default=1,
                      help="devices each trial trains on, for the up-front check that its "
                           "batch divides over them (8 on a v2-8; default 1)")
  parser.add_argument("--nocheck", action="store_true",
                      help="do not validate the trials' configs before running")
  args = parser.parse_args(argv)
  try:
    if args.command != "list" and not args.workdir:
      raise SweepError(f"{args.command} needs --workdir")
    if args.parallel is not None and args.parallel < 1:
      raise SweepError(f"--parallel must be >= 1, got {args.parallel}")
    if args.pack < 1:
      raise SweepError(f"--pack must be >= 1, got {args.pack}")
    if args.devices < 1:
      raise SweepError(f"--devices must be >= 1, got {args.devices}")
    s = load_sweep(args.sweep, check=not args.nocheck, num_devices=args.devices)
    if args.command == "list":
      list_sweep(s)
    elif args.command == "status":
      sweep_status(s, args.workdir)
    else:
      counts = run_sweep(s, args.workdir, parallel=args.parallel, pack=args.pack,
                         ray_address=args.ray_address,
                         trainer=shlex.split(args.trainer) if args.trainer else None,
                         resources=args.resources, max_retries=args.max_retries)
      sys.exit(0 if set(counts) <= set(workdir_lib.FINAL) else 1)
  except SweepError as e:
    print(f"wae-sweep: error: {e}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print("wae-sweep: interrupted; run the same command again to resume", file=sys.stderr)
    sys.exit(130)


if __name__ == "__main__":
  main()
