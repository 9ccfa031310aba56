"""The results table as pictures: the metric against lambda per algorithm, its spread, and
the reconstruction trade-off lambda moves along."""

from __future__ import annotations

import io

from etils import epath
import numpy as np
import pandas as pd

from wae_jax import workdir as workdir_lib
from wae_jax.results import table_metric


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
