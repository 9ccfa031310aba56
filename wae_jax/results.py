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

from wae_jax import asha
from wae_jax import config as config_lib
from wae_jax import evaluators
from wae_jax.hyper import SweepError
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
  search_metric: str | None = None  # What an ASHA search ranked its rungs by.


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
  if (trial_dir / workdir_lib.RUNGS).exists():  # An ASHA search's trial.
    row["rung"] = max(asha.read_rungs(trial_dir)[1], default=np.nan)
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
    trials = ledger["trials"]
  else:
    trials = {p.name: None for p in sorted(workdir.iterdir()) if p.is_dir()}
  with concurrent.futures.ThreadPoolExecutor(32) as pool:
    rows = list(pool.map(lambda t: _row(t, trials[t], workdir / t), trials))
  table = pd.DataFrame([r for r, _, _ in rows])
  hyperparameters = sorted(set().union(*(h for _, h, _ in rows)))
  return Results(table, errors + [e for _, _, e in rows if e], hyperparameters, search_metric)


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


def _regularizer(group: pd.DataFrame) -> str:
  """lambda, or for a VAE sweep that keeps its KL weight fixed, the decoder variance's term."""
  if ("recon.scale" in group and group.get("lam", pd.Series()).nunique() <= 1
      and group["recon.scale"].nunique() > 1):
    return "recon.scale"
  return "lam"


def plot(trials: pd.DataFrame, path: epath.PathLike, metric: str | None = None) -> None:
  """The metric against lambda per algorithm (log x), its distribution per algorithm, and
  the reconstruction cost against it (the trade-off lambda moves along)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top

  metric = metric or table_metric(trials)
  if metric not in trials:
    raise ValueError(f"no trial has {metric!r} to plot")
  done = trials[(trials["status"] == workdir_lib.DONE) & trials[metric].notna()]
  algos = sorted(done["algo"].dropna().unique()) if "algo" in done else []
  if not algos or "lam" not in done:
    raise ValueError(f"no finished trial has {metric!r}, algo and lam to plot")
  tradeoff = metric != "recon" and "recon" in done and done["recon"].notna().any()
  panels = len(algos) + 1 + tradeoff
  fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.6), sharey=True, squeeze=False)
  axes = axes[0]
  if tradeoff:
    for i, algo in enumerate(algos):
      group = done[done["algo"] == algo]
      axes[-1].scatter(group["recon"], group[metric], s=10, alpha=0.6, color=f"C{i}",
                       label=algo)
    axes[-1].set_xscale("log")
    axes[-1].set_xlabel("recon (held-out reconstruction cost)")
    axes[-1].set_title(f"{metric} vs reconstruction", fontsize=9)
    axes[-1].legend(fontsize=7)
    axes = axes[:-1]
  arch = done["model.arch"] if "model.arch" in done else pd.Series("", index=done.index)
  colors = {name: f"C{i}" for i, name in enumerate(sorted(arch.unique()))}
  for ax, algo in zip(axes, algos):
    group = done[done["algo"] == algo]
    x = _regularizer(group)
    for name in sorted(arch[group.index].unique()):
      points = group[arch[group.index] == name]
      ax.scatter(points[x], points[metric], s=14, alpha=0.7, color=colors[name],
                 label=name or None)
    ax.set_xscale("log")
    ax.set_title(f"{algo}: {metric} vs {x} ({len(group)} trials)", fontsize=9)
    ax.set_xlabel({"lam": "lam (KL weight)" if algo == "vae" else "lam",
                   "recon.scale": "recon.scale = 1 / (2 decoder variance)"}[x])
    if arch.nunique() > 1:
      ax.legend(fontsize=7, title="model.arch", title_fontsize=7)
  axes[0].set_ylabel(metric)
  values = [done.loc[done["algo"] == a, metric].to_numpy() for a in algos]
  dist = axes[-1]
  rng = np.random.default_rng(0)  # Jitter only; fixed so the figure is reproducible.
  for i, v in enumerate(values, start=1):
    dist.scatter(i + rng.uniform(-0.2, 0.2, len(v)), v, s=5, alpha=0.25, color="grey")
  dist.boxplot(values, showfliers=False, zorder=3)
  dist.set_xticks(range(1, len(algos) + 1), algos)
  dist.set_title(f"{metric} per algorithm", fontsize=9)
  low, high = done[metric].min(), done[metric].max()
  if low > 0 and high / low > 20:
    dist.set_yscale("log")
  for axis in [ax.xaxis for ax in axes[:-1]] + [dist.yaxis]:
    if axis.get_scale() == "log":  # Plain numbers at 10^k, and at 2 and 5 x 10^k if few.
      low, high = axis.get_view_interval()
      subs = (1.0, 2.0, 5.0) if high / low < 300 else (1.0,)
      axis.set_major_locator(matplotlib.ticker.LogLocator(subs=subs))
      axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
      axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110)
  plt.close(fig)
  epath.Path(path).write_bytes(buf.getvalue())


# ------------------------------------------------------------------------------------------
# Curves: a metric against steps, from each trial's TensorBoard events.


def read_curves(workdir: epath.PathLike, trials: pd.DataFrame, metric: str
                ) -> dict[str, dict[int, float]]:
  """{trial: {step: metric}} of every evaluation each trial recorded (`eval/<metric>`)."""
  from wae_jax import events  # pylint: disable=g-import-not-at-top  # Protobufs: curves only.
  tag = f"eval/{metric}"

  def curve(tid):
    try:
      scalars = events.read_scalars(epath.Path(workdir) / tid)
    except (OSError, ValueError):  # No events yet, or a truncated file: no curve.
      return {}
    return {step: v for (step, t), v in sorted(scalars.items()) if t == tag}

  ids = list(trials["trial"])
  with concurrent.futures.ThreadPoolExecutor(32) as pool:
    return dict(zip(ids, pool.map(curve, ids)))


def plot_curves(trials: pd.DataFrame, curves: dict[str, dict[int, float]],
                path: epath.PathLike, metric: str) -> None:
  """The metric against steps for every trial, a panel per algorithm (log x): under ASHA,
  the successive-halving picture, each trial's line ending at the rung it stopped at."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top

  groups = [(b, g) for b, g in trials.groupby("base", sort=True)
            if any(curves.get(t) for t in g["trial"])]
  if not groups:
    raise ValueError(f"no trial recorded eval/{metric} in its events to plot")
  fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), sharey=True,
                           squeeze=False)
  values = [v for c in curves.values() for v in c.values() if math.isfinite(v)]
  for ax, (base, group) in zip(axes[0], groups):
    top = group["num_steps"].max()
    for tid in group["trial"]:
      steps, ys = zip(*sorted(curves[tid].items())) if curves.get(tid) else ((), ())
      full = bool(steps) and steps[-1] == top
      ax.plot(steps, ys, lw=1.2 if full else 0.7, alpha=0.9 if full else 0.5,
              color="C3" if full else "grey", marker="o", ms=2.5 if full else 2,
              label="to the full budget" if full else "stopped before")
    reached = sum(bool(curves.get(t)) and max(curves[t]) == top for t in group["trial"])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    # Every evaluation's step when they are few, else the first and where trials stopped
    # (under ASHA its rungs, each marked by a line: the cuts).
    ticks = sorted({n for t in group["trial"] for n in curves.get(t, {})})
    ends = sorted({max(curves[t]) for t in group["trial"] if curves.get(t)})
    ax.set_xticks(ticks if len(ticks) <= 8 else sorted({ticks[0], *ends}))
    for end in ends[:-1]:
      ax.axvline(end, color="grey", lw=0.6, ls=":")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7)
    ax.set_xlabel("steps")
    ax.set_title(f"{base}: {len(group)} trials, {reached} reached {top:,} steps", fontsize=9)
  axes[0][0].set_ylabel(metric)
  if values and min(values) > 0 and max(values) / min(values) > 20:
    axes[0][0].set_yscale("log")
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110)
  plt.close(fig)
  epath.Path(path).write_bytes(buf.getvalue())


def replay(trials: pd.DataFrame, curves: dict[str, dict[int, float]], metric: str,
           etas: list[int], min_steps: list[int]) -> pd.DataFrame:
  """ASHA replayed on a full-budget study's curves, a row per (eta, r): the model-steps it
  would have spent, whether each algorithm keeps its best trial and that trial's rank at
  each rung, and each rung's rank correlation with the final metric. Brackets are base
  configs, as in a live search."""
  done = trials[trials["status"] == workdir_lib.DONE]
  max_steps = int(done["num_steps"].max()) if len(done) else 0
  if len(done) < len(trials) or (done["num_steps"] != max_steps).any():
    raise ValueError(f"--replay needs a finished study of one full budget: "
                     f"{len(trials) - len(done)} of {len(trials)} trials are not done at "
                     f"{max_steps} steps")
  brackets = {b: list(g["trial"]) for b, g in done.groupby("base", sort=True)}
  rows = []
  for r in min_steps:
    for eta in etas:
      try:
        search = asha.parse({"name": "asha", "min_steps": r, "eta": eta,
                             "max_steps": max_steps, "metric": metric})
      except SweepError as e:
        raise ValueError(str(e)) from None
      result = asha.replay(search, brackets, curves)
      row = {"r": r, "eta": eta, "rungs": " ".join(map(str, search.rungs)),
             "model-steps": result.steps,
             "of random search": f"{100 * result.steps / result.full_steps:.0f}%"}
      for b in brackets:
        kept, best = result.best[b]
        row[f"{b} best kept"] = ("yes" if result.best_kept[b]
                                 else f"no ({kept:.4g} vs {best:.4g})" if kept is not None
                                 else "no")
        row[f"{b} best's rank"] = ", ".join(f"{steps}: {rank}"
                                            for steps, rank in result.best_rank[b].items())
      row["rank corr. with final"] = ", ".join(f"{steps}: {rho:.2f}"
                                               for steps, rho in result.rank_corr.items())
      rows.append(row)
  return pd.DataFrame(rows)


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
