"""Curves: a metric against steps, from each trial's TensorBoard events, and their plot.

Under a multi-fidelity search the plot is the successive-halving picture: each trial's line
ends at the step its search stopped it at.
"""

from __future__ import annotations

import concurrent.futures
import io
import math

from etils import epath
import pandas as pd


def read_curve(trial_dir: epath.PathLike, metric: str) -> dict[int, float]:
  """{step: metric} of every evaluation the trial recorded (`eval/<metric>`); {} if none."""
  from wae_jax import events  # pylint: disable=g-import-not-at-top  # Protobufs: curves only.
  try:
    scalars = events.read_scalars(epath.Path(trial_dir))
  except (OSError, ValueError):  # No events yet, or a truncated file: no curve.
    return {}
  return {step: v for (step, tag), v in sorted(scalars.items()) if tag == f"eval/{metric}"}


def read_curves(workdir: epath.PathLike, trials: pd.DataFrame, metric: str
                ) -> dict[str, dict[int, float]]:
  """Each trial's `read_curve`, by trial id (in parallel: gs:// reads are slow)."""
  ids = list(trials["trial"])
  with concurrent.futures.ThreadPoolExecutor(32) as pool:
    return dict(zip(ids, pool.map(lambda t: read_curve(epath.Path(workdir) / t, metric), ids)))


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
    top = int(group["num_steps"].max())
    reached = sum(bool(curves.get(t)) and max(curves[t]) == top for t in group["trial"])
    if reached == len(group):  # Nothing stopped early (random search): a colour per trial.
      _by_final_rank(ax, plt, [curves.get(t, {}) for t in group["trial"]], top, metric)
    for tid in group["trial"] if reached < len(group) else ():
      steps, ys = zip(*sorted(curves[tid].items())) if curves.get(tid) else ((), ())
      full = bool(steps) and steps[-1] == top
      ax.plot(steps, ys, lw=1.2 if full else 0.7, alpha=0.9 if full else 0.5,
              color="C3" if full else "grey", marker="o", ms=2.5 if full else 2,
              label="to the full budget" if full else "stopped before")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    # Every evaluation's step when they are few, else the first and where trials stopped
    # (under ASHA its rungs, each marked by a line: the cuts).
    ticks = sorted({n for t in group["trial"] for n in curves.get(t, {})})
    ends = sorted({max(curves[t]) for t in group["trial"] if curves.get(t)})
    ax.set_xticks(ticks if len(ticks) <= 8 else sorted({*_doubling(ticks), *ends}))
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


def _doubling(steps: list[int]) -> list[int]:
  """The first step, then each at least twice the last kept, and the last: ticks a log
  axis can hold."""
  kept = [steps[0]]
  for n in steps[1:]:
    if n >= 2 * kept[-1]:
      kept.append(n)
  return sorted({*kept, steps[-1]})


def _by_final_rank(ax, plt, trial_curves, top: int, metric: str) -> None:
  """Each trial's line coloured by its rank at the full budget (dark: best), the best one
  labelled: a full-budget study's picture, where late bloomers cross the others."""
  from wae_jax import evaluators  # pylint: disable=g-import-not-at-top
  declared = evaluators.metrics().get(metric)
  sign = -1 if declared is not None and declared.higher_is_better else 1
  final = [sign * c.get(top, math.inf) for c in trial_curves]
  order = sorted(range(len(final)), key=lambda i: (not math.isfinite(final[i]), final[i]))
  colours = plt.get_cmap("viridis")
  for rank, i in enumerate(order):
    steps, ys = zip(*sorted(trial_curves[i].items())) if trial_curves[i] else ((), ())
    ax.plot(steps, ys, lw=1.6 if rank == 0 else 0.9, marker="o", ms=2,
            color=colours(0.9 * rank / max(len(order) - 1, 1)), zorder=len(order) - rank,
            label="best at the full budget" if rank == 0 else
            "worst" if rank == len(order) - 1 else None)
