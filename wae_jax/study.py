"""A study: a sweep file evaluated into trials with stable ids, their flags and configs.

A trial is a flat dict: the key `config` names the base config (`name[:arg]`, as for
`wae-train --config`), every other key is a `config.<field>` override. Its id is a hash of
that dict, so the same file yields the same ids in every process and every run, and the id
names the trial's directory in a sweep.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shlex
import sys
from typing import Any, Mapping

import ml_collections

from wae_jax import config as config_lib
from wae_jax import errors
from wae_jax import hyper
from wae_jax import searches

BASE = "config"  # The trial key naming the base config; every other key is an override.


def trial_id(trial: hyper.Trial) -> str:
  """A short stable hash of the trial: sha256 of its canonical JSON."""
  canonical = json.dumps(trial, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _flag_value(value: Any) -> str:
  """The text absl/ml_collections parse back into `value` for a field of its type."""
  if isinstance(value, (list, tuple)):  # Strings double-quoted: shlex.quote keeps it legible.
    items = [json.dumps(v) if isinstance(v, str) else repr(v) for v in value]
    return f"({', '.join(items)}{',' * (len(items) == 1)})"
  return value if isinstance(value, str) else repr(value)


def flags_of(trial: hyper.Trial) -> list[str]:
  """`wae-train` flags for the trial: `--config=<base>` then its overrides, sorted."""
  overrides = sorted((k, v) for k, v in trial.items() if k != BASE)
  return [f"--config={trial[BASE]}"] + [f"--{k}={_flag_value(v)}" for k, v in overrides]


def _check_form(trial: hyper.Trial, where: str) -> None:
  if not isinstance(trial.get(BASE), str):
    raise hyper.SweepError(f"{where}: no base config; add h.fixed('config', '<name>[:arg]')")
  for key, value in trial.items():
    if key != BASE and not key.startswith("config."):
      raise hyper.SweepError(f"{where}: key {key!r} is neither 'config' nor a "
                             "'config.<field>' override")
    scalars = value if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(v, (bool, int, float, str)) for v in scalars):
      raise hyper.SweepError(f"{where}: {key}={value!r} is not a number, string, bool or list")


def check_configs(trials: Mapping[str, hyper.Trial], num_devices: int = 1,
                  configs: Mapping[str, ml_collections.ConfigDict] | None = None) -> None:
  """Builds every trial's config and validates it, so a typo fails before any launch.

  `num_devices` is what each trial will train on (the driver cannot ask: on a TPU VM,
  initialising JAX here would hold the chips the trainers need): memory is `check_memory`'s,
  in a process of its own, and each trainer's. The data's sizes (held-out split and batch
  against the source's images) are checked here where the source's headers say them
  (bundled and IDX sources; tfds ones when their trainer starts).
  """
  from wae_jax import data  # pylint: disable=g-import-not-at-top  # JAX: not for --help.
  bases, sizes = {}, {}
  for tid, trial in trials.items():
    c = configs[tid] if configs else trial_config(trial, bases, tid)
    try:
      config_lib.validate(c, num_devices=num_devices)
      if c.data.source not in sizes:  # Read from the source's headers, once each.
        sizes[c.data.source] = data.parse_source(c.data.source).num_images
      if sizes[c.data.source] is not None:
        data.check_sizes(c, sizes[c.data.source])
    except (config_lib.ConfigError, TypeError) as e:
      raise hyper.SweepError(f"trial {tid} ({' '.join(flags_of(trial))}): "
                             f"{str(e).strip().splitlines()[0]}") from None


def check_memory(s: Sweep) -> None:
  """Every trial's memory need against this host's devices, before the first trial starts
  (`memory.check_trials`, in a spawned process: the driver never holds the devices its
  trainers need); SweepError naming the first trial that cannot fit."""
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  import multiprocessing  # pylint: disable=g-import-not-at-top
  from wae_jax import memory  # pylint: disable=g-import-not-at-top  # JAX, imported only.
  bases = {}
  configs = {tid: trial_config(t, bases, tid) for tid, t in s.trials.items()}
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
    if error := pool.submit(memory.check_trials, configs).result():
      raise hyper.SweepError(error)


def trial_config(trial: hyper.Trial,
                 bases: dict[str, ml_collections.ConfigDict] | None = None,
                 tid: str | None = None) -> ml_collections.ConfigDict:
  """The trial's config: its base config with its overrides, as `wae-train` would build it.

  `bases` caches the base configs by name across calls (loading one runs its file).
  """
  bases = {} if bases is None else bases
  try:
    # The parts it names (an outside regulariser...) first: their sections join the config.
    config_lib.load_parts({k[len("config."):]: v for k, v in trial.items() if k != BASE})
    if trial[BASE] not in bases:
      bases[trial[BASE]] = config_lib.load(trial[BASE])
    c = bases[trial[BASE]].copy_and_resolve_references()
    for key, value in trial.items():
      if key != BASE:
        _set_field(c, key[len("config."):], value)
  except (config_lib.ConfigError, TypeError, KeyError, AttributeError) as e:
    raise hyper.SweepError(f"trial {tid or trial_id(trial)} ({' '.join(flags_of(trial))}): "
                           f"{str(e).strip().splitlines()[0]}") from None
  return c


def _set_field(c, field: str, value: Any) -> None:
  *parents, name = field.split(".")
  for part in parents:
    c = c[part]
  if name not in c:
    raise KeyError(f"config.{field}: no such field")
  c[name] = tuple(value) if isinstance(value, list) else value


def brackets(trials: Mapping[str, hyper.Trial]) -> dict[str, list[str]]:
  """Trial ids by base config (an algorithm's family): what a search ranks apart."""
  out = {}
  for tid, trial in trials.items():
    out.setdefault(trial[BASE], []).append(tid)
  return out


@dataclasses.dataclass(frozen=True)
class Sweep:
  spec: str  # The sweep file and its argument, `path.py[:arg]`.
  trials: dict[str, hyper.Trial]  # By trial id, in the file's order.
  search: searches.Search  # The file's `get_search()`; by default random search.
  # By base config: the template (`h.space`) a proposing search draws its points from.
  spaces: dict[str, hyper.Trial] = dataclasses.field(default_factory=dict)


def load_sweep(spec: str, check: bool = True, num_devices: int = 1,
               search: str | None = None) -> Sweep:
  """Evaluates the sweep file `path.py[:arg]`; with `check`, validates every trial's config
  for training on `num_devices` devices.

  The file's optional `get_search(arg=None)` returns its search as a dict
  (`searches.parse`); `search="random"` sets it aside, so the same trials run to their full
  budget, and another name must be the file's.
  """
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise hyper.SweepError(f"no sweep file {path!r}")
  module_spec = importlib.util.spec_from_file_location("_wae_sweep", path)
  module = importlib.util.module_from_spec(module_spec)
  here = os.path.dirname(os.path.abspath(path))
  sys.path.insert(0, here)  # A sweep file may import its siblings (`import bigwae`).
  try:
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_hyper"):
      raise hyper.SweepError(f"{path} defines no get_hyper(h, arg=None)")
    trials = module.get_hyper(hyper.HYPER, arg) if arg else module.get_hyper(hyper.HYPER)
    get_search = getattr(module, "get_search", lambda arg=None: None)
    # Parsed here: a search of the study's own may be a module beside the sweep file.
    search_ = searches.parse(get_search(arg) if arg else get_search())
  except hyper.SweepError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # The sweep file's own code failed.
    raise hyper.SweepError(f"{spec}: {type(e).__name__}: {errors.first_line(e)}") from None
  finally:
    sys.path.remove(here)
  if not isinstance(trials, (list, tuple)) or not all(isinstance(t, dict) for t in trials):
    raise hyper.SweepError(f"{spec}: get_hyper must return a list of dicts (the DSL's "
                           f"h.product(...) and friends), got {type(trials).__name__}"
                           f"{'' if not isinstance(trials, (list, tuple)) else ' of other things'}")
  by_id, spaces = {}, {}
  for i, trial in enumerate(trials):
    if hyper.is_template(trial):
      _check_form(_draw(trial), f"{spec} space #{i}")
      if trial[BASE] in spaces:
        raise hyper.SweepError(f"{spec}: space #{i} is a second h.space for {trial[BASE]}; "
                               "a bracket draws from one")
      spaces[trial[BASE]] = trial
      continue
    _check_form(trial, f"{spec} trial #{i}")
    tid = trial_id(trial)
    if tid in by_id:
      raise hyper.SweepError(f"{spec}: trial #{i} repeats an earlier trial ({tid}: "
                             f"{' '.join(flags_of(trial))})")
    by_id[tid] = trial
  if not by_id and not spaces:
    raise hyper.SweepError(f"{spec} has no trials")
  if search == searches.DEFAULT:  # The same trials to their full budget, for a comparison.
    search_ = searches.parse(None)
    spaces = {}
  elif search not in (None, search_.name):
    raise hyper.SweepError(f"--search={search}: {spec}'s search is {search_.name} (get_search)"
                           f"; --search=random runs its trials to their full budget")
  if search_.proposes and (bare := [t[BASE] for t in by_id.values() if t[BASE] not in spaces]):
    raise hyper.SweepError(f"{spec}: the {search_.name} search proposes points from each "
                           f"bracket's h.space; {bare[0]} has none")
  if spaces and not search_.proposes:
    raise hyper.SweepError(f"{spec}: h.space gives a search space, but the {search_.name} "
                           "search runs only the file's trials; name a search that proposes "
                           f"points ({', '.join(searches.proposing())})")
  if check:
    bases = {}
    # A space is checked at a draw from its middle: a typo in a key fails here.
    drawn = {f"space {b}": _draw(t) for b, t in spaces.items()}
    configs = {tid: trial_config(trial, bases, tid) for tid, trial in {**by_id, **drawn}.items()}
    check_configs({**by_id, **drawn}, num_devices, configs)
    search_.check(configs)
  return Sweep(spec, by_id, search_, spaces)


def _draw(template: hyper.Trial, u: float = 0.5) -> hyper.Trial:
  """The template's point at quantile `u` of every distribution."""
  return {k: v(u) if isinstance(v, hyper.Distribution) else v for k, v in template.items()}


def describe(s: Sweep, out) -> dict[str, int]:
  """Prints one line per trial (id and flags, pasteable into a shell), the number of trials
  per base config, and the search."""
  per_base = {}
  for tid, trial in s.trials.items():
    print(tid, *map(shlex.quote, flags_of(trial)), file=out)
    per_base[trial[BASE]] = per_base.get(trial[BASE], 0) + 1
  for base, n in per_base.items():
    print(f"# {base}: {n} trials", file=out)
  for base, template in s.spaces.items():
    dists = ", ".join(f"{k} ~ {v}" for k, v in template.items()
                      if isinstance(v, hyper.Distribution))
    print(f"# {base}: proposed points from {dists}", file=out)
  print(f"# {s.spec}: {len(s.trials)} trials", file=out)
  print(f"# search: {s.search.describe()}", file=out)
  return per_base
