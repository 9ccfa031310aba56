"""A sweep mirrored into an Optuna storage, for optuna-dashboard and Optuna's importances
(`importance.py`).

The trial directories stay the record: the mirror is derived from them and nothing reads it
back to take a decision, so it can be deleted and rebuilt at any time. Each bracket (the
trials of one base config, one algorithm) becomes one Optuna study named
`<sweep dir name>/<base config>`, optimised in the direction the metric declares. Each
wae-jax trial becomes one Optuna trial, found again by its id (the user attr `wae_trial_id`):

  no metrics.json yet          WAITING
  running, or done at a rung   RUNNING    (the search may still climb it)
  done                         COMPLETE   value: the metric in metrics.json
  stopped by the search        PRUNED     value: its last metric
  diverged or failed           FAIL       the error as the user attr `error`

Its params are the overrides that vary within its bracket, over distributions inferred from
the values the bracket holds; its intermediate values are its `eval/<metric>` curve. A sync
adds what is new and moves unfinished trials on; finished Optuna trials are left as they are,
and a study whose metric or distributions no longer match its bracket is rebuilt.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import math
import os
import shlex
import threading
import time
from typing import Any, Mapping

from absl import logging
from etils import epath
import optuna
from optuna import distributions as dists
from optuna.trial import TrialState

from wae_jax import evaluators
from wae_jax import curves
from wae_jax import errors
from wae_jax import study
from wae_jax import workdir as workdir_lib

DATABASE = "optuna.db"  # The default storage's file, inside a local sweep directory.
PREFIX = "config."  # Of every other trial key, left out of the param names.
TRIAL_ID = "wae_trial_id"  # The trial user attr that finds a wae-jax trial again.
SWEEP_DIR = "sweep_dir"  # The study user attr naming the sweep directory it mirrors.
# A study system attr: the metric, direction and distributions the study was built with.
SIGNATURE = "wae_jax:signature"
# What the search says of a trial (`search_states`): stopped for good, or waiting at a rung.
STOPPED, WAITING = "stopped", "waiting"


def default_storage(sweep_dir: epath.PathLike) -> str:
  """`sqlite:///<sweep dir>/optuna.db`: SQLite needs a local file, so a sweep on an object
  store must name its storage."""
  if not workdir_lib.is_local(sweep_dir):
    raise ValueError(f"{os.fspath(sweep_dir)} is not on a local disk, where the default "
                     f"SQLite mirror lives: pass a storage URL (sqlite:////local/path/"
                     f"{DATABASE}, postgresql://...)")
  return f"sqlite:///{os.path.abspath(os.fspath(sweep_dir))}/{DATABASE}"


def dashboard_command(storage_url: str) -> str:
  """The shell command that serves the mirror on http://127.0.0.1:8080."""
  return f"optuna-dashboard {shlex.quote(storage_url)}"


def sync(sweep_dir: epath.PathLike, trials: Mapping[str, Mapping[str, Any]], *, metric: str,
         storage: str | None = None, search_states: Mapping[str, str] | None = None,
         rebuild: bool = False) -> str:
  """Mirrors the trial directories of `trials` ({id: trial}, the ledger's) into `storage`
  (default: `default_storage`) and returns its URL.

  `metric` is the value and curve of each trial; `search_states` says which trials the search
  stopped for good ("stopped") or holds at a rung ("waiting"). `rebuild` deletes the sweep's
  studies first. A trial directory that cannot be read is skipped until it can.
  """
  optuna.logging.set_verbosity(optuna.logging.WARNING)  # Its INFO lines are not the user's.
  url = storage or default_storage(sweep_dir)
  direction = _direction(metric)
  source = _sweep_name(sweep_dir)
  brackets = study.brackets(trials)
  rdb = optuna.storages.RDBStorage(url)
  try:
    studies = _sweep_studies(rdb, source, brackets, rebuild)
    for base, ids in brackets.items():
      bracket = {tid: trials[tid] for tid in ids}
      _sync_bracket(rdb, studies.get(_study_name(source, base)), sweep_dir, source, base,
                    bracket, metric, direction, search_states or {})
  finally:
    rdb.remove_session()
    rdb.engine.dispose()
  return url


# ------------------------------------------------------------------------------------------
# Studies.


def _direction(metric: str) -> optuna.study.StudyDirection:
  declared = evaluators.metrics()
  if metric not in declared:
    raise ValueError(f"unknown metric {metric!r} (declared: {', '.join(sorted(declared))})")
  if declared[metric].higher_is_better is None:
    raise ValueError(f"metric {metric!r} is a description, not a score to optimise")
  return (optuna.study.StudyDirection.MAXIMIZE if declared[metric].higher_is_better
          else optuna.study.StudyDirection.MINIMIZE)


def _sweep_name(sweep_dir: epath.PathLike) -> str:
  """The sweep directory as the studies record it: absolute, without a trailing slash."""
  path = os.fspath(sweep_dir).rstrip("/")
  return os.path.abspath(path) if workdir_lib.is_local(path) else path


def _study_name(source: str, base: str) -> str:
  return f"{source.rsplit('/', 1)[-1]}/{base}"


def study_names(sweep_dir: epath.PathLike, trials: Mapping[str, Mapping[str, Any]]) -> set[str]:
  """The studies that mirror the sweep in `sweep_dir`."""
  return {_study_name(_sweep_name(sweep_dir), base) for base in study.brackets(trials)}


def _sweep_studies(rdb: optuna.storages.RDBStorage, source: str, brackets: Mapping[str, Any],
                   rebuild: bool) -> dict[str, int]:
  """{study name: id} of this sweep's studies, after deleting them all under `rebuild`.

  A study of the same name mirroring another directory is refused: two sweeps of the same
  directory name share a storage only under different names.
  """
  names = {_study_name(source, base) for base in brackets}
  out = {}
  for frozen in rdb.get_all_studies():
    ours = frozen.user_attrs.get(SWEEP_DIR) == source
    if frozen.study_name in names and not ours and not rebuild:
      raise ValueError(f"study {frozen.study_name!r} in the storage mirrors "
                       f"{frozen.user_attrs.get(SWEEP_DIR)}, not {source}: use another storage, "
                       "or rebuild to replace it")
    if rebuild and (ours or frozen.study_name in names):
      rdb.delete_study(frozen._study_id)
    elif ours:
      out[frozen.study_name] = frozen._study_id
  return out


def _sync_bracket(rdb: optuna.storages.RDBStorage, study_id: int | None,
                  sweep_dir: epath.PathLike, source: str, base: str,
                  bracket: Mapping[str, Mapping[str, Any]], metric: str,
                  direction: optuna.study.StudyDirection,
                  search_states: Mapping[str, str]) -> None:
  params, constants = _search_space(bracket)
  signature = {"metric": metric, "direction": direction.name,
               "params": {p: dists.distribution_to_json(d) for p, d in params.items()}}
  existing = {}
  if study_id is not None:
    existing = _by_trial_id(rdb.get_all_trials(study_id, deepcopy=False))
    built_with = rdb.get_study_system_attrs(study_id).get(SIGNATURE)
    if built_with != signature or existing is None:  # Stale, or duplicated by a racing sync.
      rdb.delete_study(study_id)
      study_id, existing = None, {}
  if study_id is None:
    study_id = rdb.create_new_study([direction], _study_name(source, base))
    rdb.set_study_system_attr(study_id, SIGNATURE, signature)
    for key, value in {SWEEP_DIR: source, "base_config": base, "metric": metric,
                       "constants": constants}.items():
      rdb.set_study_user_attr(study_id, key, value)
  todo = [tid for tid in bracket if tid not in existing or not existing[tid].state.is_finished()]
  looks = _look(epath.Path(sweep_dir), todo, metric)
  for tid in todo:
    if looks[tid] is None:
      continue
    record, curve, mtime = looks[tid]
    state, value, error = _state(record, search_states.get(tid), metric, curve)
    attrs = {TRIAL_ID: tid, "trial_dir": f"{source}/{tid}",
             "status": record["status"] if record else workdir_lib.PENDING,
             "step": record.get("step", 0) if record else 0,
             "num_steps": record.get("num_steps") if record else None,
             **({"search": search_states[tid]} if tid in search_states else {}),
             **({"error": error} if error else {})}
    trial_params = {_name(k): _param_value(v, params[_name(k)])
                    for k, v in bracket[tid].items() if _name(k) in params}
    if tid in existing:
      try:
        _update(rdb, existing[tid], state, value, attrs, curve)
      except optuna.exceptions.UpdateFinishedTrialError:  # Finished by a sync beside this one.
        pass
    else:
      _create(rdb, study_id, state, value, attrs, curve, trial_params, params, record, mtime)


def _by_trial_id(trials: list[optuna.trial.FrozenTrial]
                 ) -> dict[str, optuna.trial.FrozenTrial] | None:
  """The study's trials by wae-jax trial id; None if one id has two (two syncs raced)."""
  out = {}
  for t in trials:
    tid = t.user_attrs.get(TRIAL_ID)
    if tid in out:
      return None
    out[tid] = t
  return out


def _search_space(bracket: Mapping[str, Mapping[str, Any]]
                  ) -> tuple[dict[str, dists.BaseDistribution], dict[str, Any]]:
  """(the params: overrides whose value differs between trials, or that some trials leave
  at the base config's default, with their distributions; the overrides all trials share)."""
  values = {}
  for trial in bracket.values():
    for key, value in trial.items():
      if key != study.BASE:
        values.setdefault(_name(key), []).append(value)
  params, constants = {}, {}
  for name, seen in sorted(values.items()):
    if len(seen) == len(bracket) and len({_canonical(v) for v in seen}) == 1:
      constants[name] = seen[0]
    else:
      params[name] = _distribution(seen)
  return params, constants


def _name(key: str) -> str:
  """The param name of a trial key: its field, as the results table names it."""
  return key.removeprefix(PREFIX)


def _canonical(value: Any) -> str:
  return json.dumps(value, sort_keys=True)


def _distribution(values: list[Any]) -> dists.BaseDistribution:
  """Numbers: their observed range, log-scaled where positive and spanning 10x or more;
  anything else: the categories seen (lists as their JSON text, which Optuna can hold)."""
  if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
    low, high = min(values), max(values)
    log = low > 0 and high >= 10 * low
    if all(isinstance(v, int) for v in values):
      return dists.IntDistribution(low, high, log=log)
    return dists.FloatDistribution(float(low), float(high), log=log)
  choices = {_choice(v) for v in values}
  return dists.CategoricalDistribution(sorted(choices, key=lambda c: (type(c).__name__, c)))


def _choice(value: Any) -> Any:
  return value if value is None or isinstance(value, (bool, int, float, str)) else _canonical(
      list(value) if isinstance(value, tuple) else value)


def _param_value(value: Any, distribution: dists.BaseDistribution) -> Any:
  if isinstance(distribution, dists.FloatDistribution):
    return float(value)
  if isinstance(distribution, dists.IntDistribution):
    return int(value)
  return _choice(value)


# ------------------------------------------------------------------------------------------
# Trials.


def _look(sweep_dir: epath.Path, ids: list[str], metric: str) -> dict[str, tuple | None]:
  """{id: (metrics.json or None, {step: metric}, its mtime or None), or None if unreadable},
  read in parallel: thousands of directories on gs:// are slow one by one."""
  def look(tid):
    try:
      return read(sweep_dir / tid)
    except Exception as e:  # pylint: disable=broad-except  # Any broken file: next time.
      logging.warning("Optuna mirror: skipped trial %s: %s: %s.", tid, type(e).__name__, e)
      return None

  def read(trial_dir):
    record, error = workdir_lib.load_record(trial_dir)
    if error:
      raise ValueError(error)
    if record is None:
      return None, {}, None
    mtime = (trial_dir / workdir_lib.METRICS).stat().mtime
    curve = {s: v for s, v in curves.read_curve(trial_dir, metric).items() if math.isfinite(v)}
    value = (record.get("metrics") or {}).get(metric)
    if not curve and value is not None:  # A record without events (the fake trainer's).
      curve[int(record.get("step", 0))] = float(value)
    return record, curve, mtime

  with concurrent.futures.ThreadPoolExecutor(16) as pool:
    return dict(zip(ids, pool.map(look, ids)))


def _state(record: Mapping[str, Any] | None, search: str | None, metric: str,
           curve: Mapping[int, float]) -> tuple[TrialState, float | None, str | None]:
  """(the Optuna state, its value, an error) of a trial directory."""
  if record is None:
    return TrialState.WAITING, None, None
  status = record["status"]
  value = (record.get("metrics") or {}).get(metric)
  if status in (workdir_lib.DIVERGED, workdir_lib.FAILED):
    return TrialState.FAIL, None, record.get("error") or status
  if search == STOPPED:
    last = curve[max(curve)] if curve else None
    return TrialState.PRUNED, float(value) if value is not None else last, None
  if search == WAITING or status == workdir_lib.RUNNING:
    return TrialState.RUNNING, None, None
  if value is None:
    return TrialState.FAIL, None, f"done without a finite {metric} in {workdir_lib.METRICS}"
  return TrialState.COMPLETE, float(value), None


def _create(rdb: optuna.storages.RDBStorage, study_id: int, state: TrialState,
            value: float | None, attrs: dict[str, Any], curve: dict[int, float],
            params: dict[str, Any], space: dict[str, dists.BaseDistribution],
            record: Mapping[str, Any] | None, mtime: float | None) -> None:
  """One transaction: Optuna writes a template trial whole."""
  end = datetime.datetime.fromtimestamp(mtime) if mtime else None
  start = end - datetime.timedelta(seconds=float(record.get("wall_s") or 0)) if end else None
  rdb.create_new_trial(study_id, optuna.trial.FrozenTrial(
      number=0, state=state, value=value,
      datetime_start=None if state == TrialState.WAITING else start or datetime.datetime.now(),
      datetime_complete=end if state.is_finished() else None,
      params=params, distributions={p: space[p] for p in params}, user_attrs=attrs,
      system_attrs={}, intermediate_values=curve, trial_id=0))


def _update(rdb: optuna.storages.RDBStorage, trial: optuna.trial.FrozenTrial,
            state: TrialState, value: float | None, attrs: dict[str, Any],
            curve: dict[int, float]) -> None:
  """Moves an unfinished trial on: its attrs and new curve points first, as a finished trial
  takes no more."""
  tid = trial._trial_id
  for key, v in attrs.items():
    if trial.user_attrs.get(key) != v:
      rdb.set_trial_user_attr(tid, key, v)
  for step, v in curve.items():
    if trial.intermediate_values.get(step) != v:
      rdb.set_trial_intermediate_value(tid, step, v)
  if state == trial.state:
    return
  if trial.state == TrialState.WAITING and state != TrialState.RUNNING:
    rdb.set_trial_state_values(tid, TrialState.RUNNING)  # Its start time.
  rdb.set_trial_state_values(tid, state, None if value is None else [value])


def search_states(search) -> dict[str, str]:
  """What `sync` needs of a (restored) search: the trials it stopped for good, and those it
  may still take further, a job in flight among them: such a job may end while the mirror
  reads, and its trial stays open until the search has taken that end (Optuna never
  reopens a finished trial)."""
  return {**{t: WAITING for t in (*search.waiting(), *search.in_flight())},
          **{t: STOPPED for t in search.stopped()}}


class Live:
  """The mirror kept in step with a running sweep (by `runner.py`): at most every EVERY_S
  seconds, in a thread of its own so that reading the trials never delays a decision;
  derived, so a failing database turns it off for the launch, never the sweep. `storage`
  "" is no mirror, None the default one."""
  EVERY_S = 10.0

  def __init__(self, sweep_dir: epath.PathLike, search, storage: str | None, say, records):
    self.sweep_dir, self.search, self.url, self.say = sweep_dir, search, storage, say
    self.records = records  # () -> the trials' latest metrics.json records.
    self.on, self.last, self.shown = storage != "", -math.inf, False
    self.thread: threading.Thread | None = None

  def sync(self, trials: Mapping[str, Mapping[str, Any]], final: bool = False) -> None:
    """Starts a sync unless one runs or ran lately; `final` waits for it, then syncs."""
    if self.thread and (final or not self.thread.is_alive()):
      self.thread.join()
      self.thread = None
    if not self.on or self.thread or (not final and time.time() - self.last < self.EVERY_S):
      return
    self.last = time.time()
    records = list(self.records())  # The search and the records are read here, not there.
    metric = self.search.metric or next(
        (m for m in evaluators.ranking() if any(m in (r.get("metrics") or {}) for r in records)),
        "recon")
    args = (dict(trials), metric, search_states(self.search))
    if final:
      self._sync(*args)
    else:
      self.thread = threading.Thread(target=self._sync, args=args, daemon=True)
      self.thread.start()

  def _sync(self, trials, metric: str, states: Mapping[str, str]) -> None:
    try:
      self.url = sync(self.sweep_dir, trials, metric=metric, storage=self.url,
                      search_states=states)
    except Exception as e:  # pylint: disable=broad-except  # Derived: never worth a sweep.
      self.on = False
      self.say(f"warning: the Optuna mirror is off for this launch ({type(e).__name__}: "
               f"{errors.first_line(e)})")
      return
    if not self.shown:
      self.shown = True
      self.say(f"live dashboard: {dashboard_command(self.url)}")
