r"""Results: a sweep's trial directories as one pandas table, Table 1 of the paper, and plots.

Every trial directory is read on its own, so a missing, half-written or corrupt
`metrics.json` costs that trial its metrics (it is listed under errors), never the table.
The expected set of trials comes from the sweep's ledger; without one, every subdirectory
of the sweep directory is a trial. Paths may be local or gs://. The table ranks trials by
the first metric of `evaluators.ranking()` that a finished trial has, in its declared
direction.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import io
import json
import math
import sys
from typing import Any

from etils import epath
import numpy as np
import pandas as pd

from wae_jax import config as config_lib
from wae_jax import evaluators
from wae_jax import study
from wae_jax import workdir as workdir_lib

SHARPNESS = "sharpness_mean"
# Shown beside the ranking metrics in the per-trial table.
SHOWN = ("recon", "recon_sq_l2", "mmd_heldout", "mmd_heldout_se", SHARPNESS)


@dataclasses.dataclass(frozen=True)
class Results:
  trials: pd.DataFrame  # One row per trial: id, status, step, metrics, hyperparameters.
  errors: list[str]  # "<trial id>: <why its metrics.json could not be read>".
  hyperparameters: list[str]  # The config columns of `trials`, sorted.
  search_metric: str | None = None  # What the sweep's search ranked by, if anything.
  ledger: dict[str, Any] | None = None  # The sweep's `sweep.json`, when readable.


@functools.lru_cache(maxsize=None)
def _base_config(base: str) -> dict[str, Any]:
  try:
    return config_lib.flatten(config_lib.load(base))
  except (config_lib.ConfigError, OSError, ImportError, AttributeError):
    return {}


def _cell(value: Any) -> Any:
  """Lists (tuple fields) become JSON text so every column is hashable and parquet-able."""
  return json.dumps(value) if isinstance(value, (list, dict)) else value


def _row(tid: str, trial: dict[str, Any] | None,
         trial_dir: epath.Path) -> tuple[dict[str, Any], set[str], str | None]:
  record, error = workdir_lib.load_record(trial_dir)
  record = record or {}
  # Hyperparameters: what the trainer resolved, else what the sweep asked for.
  config = record.get("config")
  if not isinstance(config, dict):
    overrides = {k[len("config."):]: v for k, v in (trial or {}).items() if k != study.BASE}
    config = {**_base_config(trial[study.BASE]), **overrides} if trial else {}
  metrics = record.get("metrics")
  metrics = metrics if isinstance(metrics, dict) else {}
  train = record.get(workdir_lib.TRAIN)
  train = train if isinstance(train, dict) else {}
  row = {"trial": tid, "base": (trial or {}).get(study.BASE),
         "status": workdir_lib.CORRUPT if error else record.get("status", workdir_lib.PENDING),
         **{k: record.get(k) for k in ("step", "num_steps", "wall_s", "error")}}
  row.update({k: (np.nan if v is None else v) for k, v in metrics.items()})
  row.update({f"{workdir_lib.TRAIN}/{k}": (np.nan if v is None else v)
              for k, v in train.items()})
  row.update({k: _cell(v) for k, v in config.items() if k not in row})
  if (trial_dir / workdir_lib.SEARCH).exists():  # A multi-fidelity search's trial.
    row["rung"] = record.get("num_steps", np.nan)  # The step its latest climb went to.
  return row, set(config) - set(metrics), error and f"{tid}: {error}"


def read_results(workdir: epath.PathLike) -> Results:
  """Reads every trial of the sweep in `workdir` (in parallel: gs:// reads are slow)."""
  workdir = epath.Path(workdir)
  if not workdir.is_dir():
    raise FileNotFoundError(f"no sweep directory {workdir}")
  errors = []
  try:
    ledger = workdir_lib.read_ledger(workdir)
  except ValueError as e:
    ledger, errors = None, [f"{workdir_lib.LEDGER}: unreadable ({e}); reading every "
                            "subdirectory"]
  search_metric = ((ledger or {}).get("search") or {}).get("metric")
  if ledger:
    trials = {t: ledger["trials"][t] for t in workdir_lib.ordered_ids(ledger)}
    _check_ledger_is_here(workdir, trials)
  else:
    trials = {p.name: None for p in sorted(workdir.iterdir()) if p.is_dir()}
  with concurrent.futures.ThreadPoolExecutor(32) as pool:
    rows = list(pool.map(lambda t: _row(t, trials[t], workdir / t), trials))
  table = pd.DataFrame([r for r, _, _ in rows])
  hyperparameters = sorted(set().union(*(h for _, h, _ in rows)))
  return Results(table, errors + [e for _, _, e in rows if e], hyperparameters, search_metric,
                 ledger)


def _check_ledger_is_here(workdir: epath.Path, trials: dict[str, Any]) -> None:
  """ValueError for a sweep.json that names none of the trial directories there while others
  are (another sweep's, copied or written over): its table would hide them all."""
  here = [p.name for p in workdir.iterdir() if (p / workdir_lib.METRICS).exists()]
  if trials and here and not set(trials) & set(here):
    raise ValueError(f"{workdir / workdir_lib.LEDGER} names {len(trials)} trials, none of "
                     f"them here, and the {len(here)} trial directories here are not in it "
                     "(another sweep's sweep.json?); move it aside to read them")


def table_metric(trials: pd.DataFrame, metric: str | None = None) -> str:
  """`metric` if the table has it (ValueError naming the ones it has otherwise); by default
  the first of `evaluators.ranking()` (FID, then domain FID) that a finished trial has,
  else the first: never the reconstruction alone, which the smallest lambda always wins."""
  if metric is not None:
    known = [m for m in evaluators.metrics() if m in trials and trials[m].notna().any()]
    if metric not in known:
      raise ValueError(f"--metric: no trial has {metric!r} (these have values: "
                       f"{', '.join(known) or 'none'})")
    return metric
  ranking = evaluators.ranking()
  done = trials[trials["status"] == workdir_lib.DONE]
  return next((name for name in ranking if name in done and done[name].notna().any()),
              ranking[0])


def _higher_is_better(metric: str) -> bool:
  """The metric's declared direction; a metric no one declares ranks lower-is-better."""
  declared = evaluators.metrics().get(metric)
  return bool(declared and declared.higher_is_better)


def summarize(trials: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
  """Table 1 of the paper, one row per (dataset, algorithm): the best trial is its 'big' row.

  Best and median are over finished trials; sharpness is the best trial's. A `data` row
  per dataset gives the metric and the sharpness of held-out real images, as the paper's
  "true data" row does. Under an ASHA search (a `rung` column) they are over the trials at
  the full budget, and the model-steps spent stand beside those of random search (every
  trial to that budget).
  """
  metric = metric or table_metric(trials)
  trials = trials.assign(**{k: trials.get(k, pd.Series("?", index=trials.index)).fillna("?")
                            for k in ("data.source", "algo")},
                         **{metric: trials.get(metric, pd.Series(np.nan, index=trials.index))})
  higher = _higher_is_better(metric)
  rows = []
  for (source, algo), group in trials.groupby(["data.source", "algo"], sort=True):
    counts = group["status"].value_counts()
    done = group[group["status"] == workdir_lib.DONE]
    if "rung" in group:
      done = done[done["step"] == group["num_steps"].max()]
    scored = done[done[metric].notna()] if metric in done else done.iloc[:0]
    best_of = scored[metric].idxmax if higher else scored[metric].idxmin
    best = scored.loc[best_of()] if len(scored) else None
    row = {"data": source, "algo": algo, "trials": len(group)}
    row.update({s: int(counts.get(s, 0)) for s in workdir_lib.STATES})
    row.update({f"best {metric}": np.nan if best is None else best[metric],
                f"median {metric}": scored[metric].median() if len(scored) else np.nan,
                "sharpness of best": np.nan if best is None else best.get(SHARPNESS, np.nan),
                "best trial": None if best is None else best["trial"]})
    if "rung" in group:
      row.update({"at full budget": len(done), "model-steps": int(group["step"].sum()),
                  "random search's": len(group) * int(group["num_steps"].max())})
    rows.append(row)
  # The paper's "true data" row: the metric and the sharpness of held-out real images.
  declared = evaluators.metrics()
  data_columns = {f"best {metric}": getattr(declared.get(metric), "data", None),
                  "sharpness of best": declared[SHARPNESS].data}
  for source, group in trials.groupby("data.source", sort=True):
    row = {k: group[c].median() for k, c in data_columns.items()
           if c in group and group[c].notna().any()}
    if row:
      rows.append({"data": source, "algo": "data", **row})
  summary = pd.DataFrame(rows)
  # Final states always have a column; the others only where a trial is in them.
  unused = [s for s in workdir_lib.STATES
            if s not in workdir_lib.FINAL and s in summary and not summary[s].any()]
  return summary.drop(columns=unused)


def over_seeds(results: Results, metric: str) -> pd.DataFrame:
  """Mean +- sd over seeds of each point the sweep tried (its swept hyperparameters but the
  seed), for `metric` and the SHOWN columns and their real-data twins; finished trials
  only. Empty unless some point has two or more finished seeds."""
  trials = results.trials[results.trials["status"] == workdir_lib.DONE]
  keys = [c for c in ("data.source", *swept_columns(results)) if c != "seed" and c in trials]
  declared = evaluators.metrics()
  columns = [c for m in (metric, *SHOWN) if m in trials
             for c in (m, getattr(declared.get(m), "data", None)) if c in trials]
  if "seed" not in trials or not keys or trials.empty:
    return pd.DataFrame()
  rows = []
  for point, group in trials.groupby(keys, sort=True, dropna=False):
    if len(group) < 2:
      continue
    row = dict(zip(keys, point), seeds=len(group))
    row.update({c: f"{group[c].mean():.4g} +- {group[c].std():.2g}" for c in dict.fromkeys(columns)
                if group[c].notna().any()})
    rows.append(row)
  return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame) -> str:
  """A GitHub markdown table; floats to 4 significant digits but whole ones from 10,000 up in
  full (a column of step counts with a blank in it is float), missing values blank."""
  def fmt(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
      return ""
    if isinstance(v, (float, np.floating)):
      return f"{int(v):,}" if v.is_integer() and abs(v) >= 1e4 else f"{v:.4g}"
    return str(v).replace("|", "\\|")
  lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
  lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
  return "\n".join(lines)


def swept_columns(results: Results) -> list[str]:
  """Hyperparameters that differ between trials (the ones the sweep searched over)."""
  return [c for c in results.hyperparameters if results.trials[c].nunique(dropna=True) > 1]


def report(results: Results, metric: str | None = None) -> str:
  """The markdown report: Table 1 by `metric` (default `table_metric`), every trial, and
  the errors."""
  trials = results.trials
  metric = table_metric(trials, metric)
  shown = [c for c in (*evaluators.ranking(), *SHOWN) if c != metric]
  rung = ["rung"] if "rung" in trials else []
  cols = ["trial", "status", "step", *rung] + swept_columns(results) + [
      c for c in (metric, *shown) if c in trials] + [
      c for c in trials if c.startswith(f"{workdir_lib.TRAIN}/")]
  higher = _higher_is_better(metric)
  by = ["status", metric] if metric in trials else ["status"]
  order = trials.sort_values(by, ascending=[True, not higher][:len(by)])  # Best first.
  parts = [f"## Table 1 (metric: {metric}, {'higher' if higher else 'lower'} is better)"]
  done = trials[trials["status"] == workdir_lib.DONE]
  if metric not in done or done[metric].isna().all():
    parts.append(f"No trial has {metric} yet: `wae-eval` computes it for a trial directory; "
                 "`--metric NAME` ranks by another column.")
  parts.append(to_markdown(summarize(trials, metric)))
  if not (seeds := over_seeds(results, metric)).empty:
    parts += ["## Mean +- sd over seeds", to_markdown(seeds)]
  parts += [f"## Trials ({len(trials)})", to_markdown(order[cols])]
  if results.errors:
    parts += [f"## Errors ({len(results.errors)})", "\n".join(f"- {e}" for e in results.errors)]
  return "\n\n".join(parts) + "\n"


def write_table(results: Results, fmt: str, out: str | None, metric: str | None = None
                ) -> None:
  """Writes the report (md, ranked by `metric`) or the per-trial table (csv, parquet) to
  `out` or stdout."""
  if fmt == "parquet":
    buf = io.BytesIO()
    results.trials.to_parquet(buf, index=False)
    epath.Path(out).write_bytes(buf.getvalue())
    return
  text = report(results, metric) if fmt == "md" else results.trials.to_csv(index=False)
  if out:
    epath.Path(out).write_text(text)
  else:
    sys.stdout.write(text)
