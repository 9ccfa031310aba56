r"""Every search checked on full-budget studies: replayed on their curves, or run live.

  python benchmarks/searches.py runs/studies/mnist runs/studies/fashion ... [--frontier] \
      [--live mnist=runs/searches/mnist-tpe0 ...] [--plot runs/searches/best.png]

Each positional argument is a finished random-search study (`sweeps/studies.py`, run with
`--search=random`). On each, every search of `SEARCHES` is replayed (`wae_jax.replay`, one
worker, the live driver's order): per algorithm, its share of random search's model-steps,
its best final metric over random search's (`ratio`; <= 1.05 is "within 5%"), and the
model-steps (given to that algorithm) it took to get within 5% of random search's best.
`--live STUDY=DIR` adds a live run of a search that proposes points (`sweeps/studies.py:
<study>-tpe<seed>`), read from its trial directories: the same figures, its model-steps
counted from the evaluations' wall-clock order. One JSON line per (study, search,
algorithm); then a markdown table per study, and the best-so-far plot.

How the result moves with the number of points (`--orders N`): a search's decisions depend
on which points a bracket has and on the order it takes them in, so each search is also
replayed on N shuffled orders of every algorithm's points, with the first 8 points of each
(a smaller study), all 16, and the points of every study with the same data and algorithm
pooled (a larger study: their configs differ only in the random points): the share of the
(algorithm, order) pairs whose best is kept within 5%, and the spread of the share of
random search's model-steps.

What any cut on the value at a rung can do (`--frontier`): synchronous successive halving
(every trial to the first rung, the best fraction of them to the next, ...), which depends
on no order, for every ladder of `LADDERS` with every fraction of `FRACTIONS` at each rung,
alone and hedged in twos (a trial goes on while either rule sends it, as Hyperband's
brackets hedge). The rule that keeps most bests within 5% is chosen with hindsight, on the
very curves it is scored on (what no search can beat by cutting on the value), and with
each study left out in turn, chosen on the others within `BUDGET` and scored on the one
left out (what choosing a rule on past studies is worth on a new one).

What a pooled TPE (`tpe` with `pool`) builds on: per study and algorithm, Spearman's rho of
each parameter every algorithm searches (the architecture as resnet = 1) with the final
metric.
"""

import argparse
import collections
import glob
import itertools
import json
import math
import pathlib
import random
import statistics
from typing import Any

import numpy as np
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.util import tensor_util

from wae_jax import curves as curves_lib
from wae_jax import replay as replay_lib
from wae_jax import results as results_lib
from wae_jax import searches

METRIC = "domain_fid"
WITHIN = 1.05  # "Within 5% of random search's best" (a lower-is-better metric).
LADDER = {"min_steps": 150, "eta": 4, "metric": METRIC}
SEARCHES = {
    "asha r150 eta4": {"name": "asha", **LADDER},
    "asha r300 eta4": {"name": "asha", **LADDER, "min_steps": 300},
    "asha r150 eta4 finalists 2": {"name": "asha", **LADDER, "finalists": 2},
    "asha r150 eta3": {"name": "asha", **LADDER, "eta": 3},
    "asha r75 eta3": {"name": "asha", **LADDER, "min_steps": 75, "eta": 3},
    "curve r150 eta4 optimism 0": {"name": "curve", **LADDER, "optimism": 0},
    "curve r150 eta4 optimism 1": {"name": "curve", **LADDER, "optimism": 1},
    "curve r150 eta4 optimism 2": {"name": "curve", **LADDER, "optimism": 2},
    "curve r150 eta3 optimism 1": {"name": "curve", **LADDER, "eta": 3, "optimism": 1},
    "curve r150 eta4 optimism 1 finalists 2": {"name": "curve", **LADDER, "optimism": 1,
                                               "finalists": 2},
}


def study(workdir: str):
  """(brackets in the sweep's order, curves, full budget, each bracket's data source) of a
  full-budget study: the algorithms whose every trial is done (a study still running gives
  those it finished)."""
  trials = results_lib.read_results(workdir).trials
  finished = trials.groupby("base", sort=False)["status"].agg(lambda s: (s == "done").all())
  if unfinished := list(finished.index[~finished]):
    print(f"# {workdir}: left out, not every trial done yet: {', '.join(unfinished)}")
  done = trials[trials["base"].isin(finished.index[finished])]
  if done.empty:
    raise SystemExit(f"{workdir}: no algorithm has every trial done")
  groups = done.groupby("base", sort=False)
  return ({b: list(g["trial"]) for b, g in groups},
          curves_lib.read_curves(workdir, done, METRIC), int(done["num_steps"].max()),
          {b: g["data.source"].iloc[0] for b, g in groups})


def reach(trace, target: float) -> int | None:
  """Model-steps at which a best-so-far trace first got within WITHIN of `target`."""
  return next((steps for steps, value in trace if value <= WITHIN * target), None)


def random_trace(ids, curves, max_steps):
  """Random search's best-so-far, trial after trial in the sweep's order."""
  trace, best = [], math.inf
  for i, tid in enumerate(ids):
    value = curves[tid].get(max_steps, math.inf)
    if value < best:
      best = value
      trace.append(((i + 1) * max_steps, value))
  return trace


def live_traces(workdir: str, max_steps: int) -> dict[str, list[tuple[int, float]]]:
  """A live run's best-so-far per algorithm: its evaluations in wall-clock order, each
  trial's steps counted up to its latest evaluation."""
  ledger = json.loads(pathlib.Path(workdir, "sweep.json").read_text())
  base = {tid: t["config"] for tid, t in ledger["trials"].items()}
  evals = []
  for tid in base:
    for path in glob.glob(f"{workdir}/{tid}/events.out.tfevents.*"):
      for e in event_file_loader.EventFileLoader(path).Load():
        for v in e.summary.value:
          if v.tag == f"eval/{METRIC}":  # The loader hands scalars over as tensors.
            value = tensor_util.make_ndarray(v.tensor) if v.HasField("tensor") else v.simple_value
            evals.append((e.wall_time, tid, e.step, float(value)))
  steps, traces = collections.Counter(), {b: [] for b in base.values()}
  at = {}
  for _, tid, step, value in sorted(evals):
    b = base[tid]
    steps[b] += max(0, step - at.get(tid, 0))
    at[tid] = max(at.get(tid, 0), step)
    if step == max_steps and (not traces[b] or value < traces[b][-1][1]):
      traces[b].append((steps[b], value))
  return traces


# --frontier's rules: ladders on the studies' evaluation grid (every 75 steps), and the
# fractions a rung may send on (eta 2 to 6).
LADDERS = ((150, 600), (150, 450), (75, 150, 600), (75, 150, 450), (75, 225, 675),
           (75, 300, 900), (75, 300), (75, 600))
FRACTIONS = (1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6)
BUDGET = 0.30  # The share of random search's model-steps a search may spend on the studies.


def halving(ids, curves, max_steps: int, ladder, fractions) -> np.ndarray:
  """Each trial's steps under synchronous successive halving by the value at each rung of
  `ladder`, which sends on the best ceil(fraction * n) of the n trials there."""
  alive, steps = list(ids), dict.fromkeys(ids, 0)
  for rung, fraction in zip((*ladder, max_steps), (*fractions, None)):
    steps.update(dict.fromkeys(alive, rung))
    if fraction:
      alive = sorted(alive, key=lambda t: curves[t][rung])[:math.ceil(fraction * len(alive))]
  return np.array([steps[t] for t in ids])


class Frontier:
  """Every rule of LADDERS x FRACTIONS, and every hedge of two (a trial goes on while either
  sends it), on every (study, algorithm): `kept[k]` and `share[k]` are (rule, rule) arrays
  for pair k, the diagonal the rules alone."""

  def __init__(self, studies):
    self.rules = [(l, f) for l in LADDERS for f in itertools.product(FRACTIONS, repeat=len(l))]
    self.kept, self.share = [], []
    # (study index, algorithm) of each pair.
    self.names = [(i, b) for i, (brackets, *_) in enumerate(studies) for b in brackets]
    for brackets, curves, max_steps, _ in studies:
      for ids in brackets.values():
        if missing := next(((t, r) for t in ids for l in LADDERS for r in l
                            if r not in curves[t]), None):
          raise SystemExit(f"--frontier: trial {missing[0]} has no {METRIC} at step "
                           f"{missing[1]}; the ladders need one every 75 steps")
        steps = np.stack([halving(ids, curves, max_steps, *rule) for rule in self.rules])
        hedged = np.maximum(steps[:, None], steps[None])  # (rule, rule, trial)
        final = np.array([curves[t][max_steps] for t in ids])
        kept_best = np.where(hedged == max_steps, final, np.inf).min(-1)
        self.kept.append(kept_best <= WITHIN * final.min())
        self.share.append(hedged.sum(-1) / (max_steps * len(ids)))

  def _pick(self, pairs, hedge: bool, budget: float = math.inf):
    """The rule (a, a) or hedge (a, b) that keeps most of `pairs`' bests with every share
    within `budget`, then with the smallest largest share."""
    worst = np.max([self.share[k] for k in pairs], axis=0)
    kept = np.where(worst <= budget, sum(self.kept[k].astype(int) for k in pairs), -1)
    if not hedge:
      kept = np.where(np.eye(len(kept), dtype=bool), kept, -1)
    return np.unravel_index(np.lexsort((worst.ravel(), -kept.ravel()))[0], kept.shape)

  def alone(self, k: int) -> tuple[str, float]:
    """The single rule that keeps pair k's best at the smallest share, and that share."""
    share = np.where(np.diag(self.kept[k]), np.diag(self.share[k]), np.inf)
    return self.describe(share.argmin(), share.argmin()), float(share.min())

  def describe(self, a, b) -> str:
    rule = lambda r: (f"{'/'.join(map(str, self.rules[r][0]))} eta "
                      f"{','.join(str(round(1 / f)) for f in self.rules[r][1])}")
    return rule(a) if a == b else f"{rule(a)} + {rule(b)}"

  def chosen(self, hedge: bool, budget: float = math.inf, held_out: int | None = None
             ) -> dict[str, Any]:
    """The rule chosen on every study (with hindsight: scored on the curves it was chosen
    on), or on all but `held_out` and scored on that one."""
    on = [k for k, (s, _) in enumerate(self.names) if s != held_out]
    scored = [k for k, (s, _) in enumerate(self.names) if s == held_out] or on
    a, b = self._pick(on, hedge, budget)
    return {"rule": self.describe(a, b), "pairs": len(scored),
            "kept": sum(bool(self.kept[k][a, b]) for k in scored),
            "max_share": max(self.share[k][a, b] for k in scored)}


SHARED = ("optim.lr", "batch_size", "z_dim", "model.arch")  # In every algorithm's space.


def shared_params(name: str, workdir: str) -> str:
  """A table row per algorithm: each shared parameter's rank correlation with the final
  metric (negative: larger values end better, for a lower-is-better metric)."""
  trials = results_lib.read_results(workdir).trials
  trials = trials[trials["status"] == "done"].assign(
      **{"model.arch": lambda t: (t["model.arch"] == "resnet").astype(float)})
  rows = []
  for b, g in trials.groupby("base", sort=False):
    rho = [g[p].astype(float).corr(g[METRIC], method="spearman") for p in SHARED]
    rows.append(f"| {name} | {b} | " + " | ".join(f"{r:+.2f}" for r in rho) + " |")
  return "\n".join(rows)


def robustness(spec, studies, orders: int) -> dict[str, dict[str, Any]]:
  """Per study size ("8" points, "all" a study's, "pooled": the points of the studies with
  the same data and algorithm): the share of (algorithm, shuffled order) pairs
  whose best the search keeps within 5%, and the median and largest share of random
  search's model-steps, over `orders` orders (the same ones for every search)."""
  max_steps = studies[0][2]
  pools, curves = collections.defaultdict(list), {}
  for brackets, study_curves, _, sources in studies:
    curves.update(study_curves)
    for b, ids in brackets.items():  # A grown study shares its first points with its own.
      pools[f"{sources[b]} {b}"].append(ids)
  pooled = {b: list(dict.fromkeys(t for ids in lists for t in ids))
            for b, lists in pools.items() if len(lists) > 1}
  sizes = {"8": ([brackets for brackets, *_ in studies], 8),
           "all": ([brackets for brackets, *_ in studies], None),
           "pooled": ([pooled], None)}
  figures = {}
  for size, (groups, first) in sizes.items():
    if not any(groups):  # No data set and algorithm in more than one study.
      continue
    kept, shares, points = [], [], set()
    for brackets in groups:
      for i in range(orders):
        rng = random.Random(i)
        shuffled = {b: rng.sample(ids, len(ids))[:first] for b, ids in brackets.items()}
        r = replay_lib.replay(searches.parse({**spec, "max_steps": max_steps}), shuffled,
                              curves, METRIC, max_steps)
        for b, ids in shuffled.items():
          best = min(curves[t][max_steps] for t in ids)
          kept.append(r.best[b][0] is not None and r.best[b][0] <= WITHIN * best)
          shares.append(r.share[b])
          points.add(len(ids))
    figures[size] = {"kept": sum(kept) / len(kept), "pairs": len(kept),
                     "median_share": statistics.median(shares), "max_share": max(shares),
                     "points": "-".join(map(str, sorted({min(points), max(points)})))}
  return figures


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("studies", nargs="+")
  parser.add_argument("--live", action="append", default=[], metavar="STUDY=DIR")
  parser.add_argument("--plot", default="")
  parser.add_argument("--orders", type=int, default=0,
                      help="shuffled orders of each study's points to replay every search on")
  parser.add_argument("--frontier", action="store_true",
                      help="what any cut on the value at a rung can do on these studies")
  args = parser.parse_args()
  live = collections.defaultdict(list)
  for item in args.live:
    name, _, workdir = item.partition("=")
    live[name].append(workdir)
  panels, studies = {}, []
  for workdir in args.studies:
    name = pathlib.Path(workdir).name
    studies.append(study(workdir))
    brackets, curves, max_steps, _ = studies[-1]
    randoms = {b: random_trace(ids, curves, max_steps) for b, ids in brackets.items()}
    best = {b: t[-1][1] for b, t in randoms.items()}
    rows = []
    for b in brackets:
      rows.append(_row(name, "random", b, 1.0, randoms[b], best[b]))
      panels[(name, b)] = {"random": randoms[b]}
    for label, spec in SEARCHES.items():
      search = searches.parse({**spec, "max_steps": max_steps})
      r = replay_lib.replay(search, brackets, curves, METRIC, max_steps)
      for b in brackets:
        rows.append(_row(name, label, b, r.share[b], r.best_so_far[b], best[b]))
        panels[(name, b)][label] = r.best_so_far[b]
    for run in live.get(name, []):
      # "live tpe0": the study is the panel's (a run's directory is named <study>-tpe<seed>).
      label = f"live {pathlib.Path(run).name.removeprefix(f'{name}-')}"
      for b, trace in live_traces(run, max_steps).items():
        if b not in brackets:  # Not in the study's finished algorithms.
          continue
        share = _live_steps(run, b) / (max_steps * len(brackets[b]))
        rows.append(_row(name, label, b, share, trace, best[b]))
        panels[(name, b)][label] = trace
    for row in rows:
      print(json.dumps(row))
    print(_table(name, rows, {b: max_steps * len(ids) for b, ids in brackets.items()}))
  print(f"\n### Spearman's rho of each shared parameter with the final {METRIC}\n")
  print("| study | algorithm | " + " | ".join(SHARED) + " |\n|---|---" + "|---" * len(SHARED) + "|")
  for workdir in args.studies:
    print(shared_params(pathlib.Path(workdir).name, workdir))
  if args.orders:
    print(f"\n### Over {args.orders} shuffled orders: bests kept within 5%, median [largest] "
          "share of random search's model-steps\n")
    print("| search | 8 points | a study's | pooled |\n|---|---|---|---|")
    for label, spec in SEARCHES.items():
      figures = robustness(spec, studies, args.orders)
      print(json.dumps({"search": label, **figures}))
      print(f"| {label} | " + " | ".join(
          f"{100 * f['kept']:.0f}% of {f['pairs']}, {100 * f['median_share']:.1f}% "
          f"[{100 * f['max_share']:.1f}%] ({f['points']} a bracket)" if (f := figures.get(size))
          else "none" for size in ("8", "all", "pooled")) + " |")
  if args.frontier:
    _print_frontier(Frontier(studies), [pathlib.Path(w).name for w in args.studies])
  if args.plot:
    _plot(panels, best_of={k: v["random"][-1][1] for k, v in panels.items()}, path=args.plot)


def _print_frontier(f: Frontier, names) -> None:
  print("\n### What a cut on the value can do: synchronous successive halving, every rule of "
        "LADDERS x FRACTIONS and every hedge of two\n")
  print("| rules | chosen on | scored on | rule | bests kept within 5% | largest share |\n"
        "|---|---|---|---|---|---|")
  budget = f"{100 * BUDGET:.0f}%"
  for hedge in (False, True):
    kind = "a hedge of two" if hedge else "one"
    rows = [("all, most kept", "the same", f.chosen(hedge)),
            (f"all, most kept within {budget}", "the same", f.chosen(hedge, BUDGET))]
    rows += [(f"the others, most kept within {budget}", names[s], f.chosen(hedge, BUDGET, s))
             for s in range(len(names))]
    for on, scored, row in rows:
      print(json.dumps({"rules": kind, "chosen_on": on, "scored_on": scored, **row}))
      print(f"| {kind} | {on} | {scored} | {row['rule']} | {row['kept']} of {row['pairs']} | "
            f"{100 * row['max_share']:.1f}% |")
  print("\n| study | algorithm | the cheapest rule that keeps its best | share |\n"
        "|---|---|---|---|")
  for k, (s, algo) in enumerate(f.names):
    rule, share = f.alone(k)
    print(f"| {names[s]} | {algo} | {rule} | {100 * share:.1f}% |")


def _row(name, search, algo, share, trace, best) -> dict[str, Any]:
  """A (study, search, algorithm)'s figures from its best-so-far trace: `first` is the
  model-steps at its first full-budget result, below which no search on that ladder can
  reach anything."""
  return {"study": name, "search": search, "algo": algo, "share": share,
          "ratio": trace[-1][1] / best if trace else None, "reach": reach(trace, best),
          "first": trace[0][0] if trace else None}


def _live_steps(workdir: str, bracket: str) -> int:
  """Model-steps a live run gave a bracket: each trial's highest rung from its note."""
  ledger = json.loads(pathlib.Path(workdir, "sweep.json").read_text())
  total = 0
  for tid, trial in ledger["trials"].items():
    note = pathlib.Path(workdir, tid, "search.json")
    if trial["config"] == bracket and note.exists():
      total += json.loads(note.read_text())["target"]
  return total


def _table(name, rows, full) -> str:
  algos = list(dict.fromkeys(r["algo"] for r in rows))
  lines = [f"\n### {name}: best / random search's best, share of its model-steps, "
           f"model-steps to within 5%\n", "| search | " + " | ".join(algos) + " |",
           "|---" * (len(algos) + 1) + "|"]
  for label in dict.fromkeys(r["search"] for r in rows):
    cells = []
    for a in algos:
      r = next(r for r in rows if r["search"] == label and r["algo"] == a)
      ratio = "lost" if r["ratio"] is None else f"{r['ratio']:.3f}"
      got = "never" if r["reach"] is None else f"{r['reach']:,}"
      cells.append(f"{ratio} at {100 * r['share']:.0f}%; {got}")
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


PLOTTED = ("random", "asha r150 eta4", "asha r150 eta4 finalists 2", "curve r150 eta4 optimism 1")


def _plot(panels, best_of, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  rows = collections.defaultdict(list)  # A row of panels per study, one per algorithm.
  for s, b in panels:
    rows[s].append(b)
  cols = max(map(len, rows.values()))
  fig, axes = plt.subplots(len(rows), cols, figsize=(4.6 * cols, 3.4 * len(rows)),
                           squeeze=False)
  for ax in axes.flat:
    ax.set_visible(False)
  # A colour and width per label over all panels: a panel without some live runs keeps the
  # others' colours.
  shown = list(dict.fromkeys(l for traces in panels.values() for l in traces
                             if l in PLOTTED or l.startswith("live")))
  for (s, b), ax in ((k, axes[r][c]) for r, (s_, bs) in enumerate(rows.items())
                     for c, k in enumerate((s_, b_) for b_ in bs)):
    ax.set_visible(True)
    for i, label in enumerate(shown):
      if trace := panels[(s, b)].get(label):
        xs, ys = zip(*trace)
        # Replays often end on the same trial: earlier ones drawn wider, so none hides another.
        ax.step([*xs, xs[-1] * 1.5], [*ys, ys[-1]], where="post", label=label, color=f"C{i}",
                lw=2 if label.startswith("live") else 1.2 if label == "random" else 4.5 - i,
                ls="--" if label == "random" else "-")
    ax.axhline(WITHIN * best_of[(s, b)], color="grey", lw=0.8, ls=":")
    ax.set(title=f"{s}: {b}", xlabel="model-steps given to the algorithm",
           ylabel=f"best {METRIC} so far", xscale="log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(alpha=0.3)
  handles = {l: h for ax in axes.flat for h, l in zip(*ax.get_legend_handles_labels())}
  ncol = min(len(handles), 2 * cols)
  legend_rows = -(-len(handles) // ncol) + 1
  fig.set_figheight(fig.get_figheight() + 0.22 * legend_rows)
  fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=ncol, fontsize=8,
             title=f"dotted: within {100 * (WITHIN - 1):.0f}% of random search's best",
             title_fontsize=8)
  fig.tight_layout(rect=(0, 0.22 * legend_rows / fig.get_figheight() + 0.02, 1, 1))
  fig.savefig(path, dpi=110)
  print(f"plot: {path}")


if __name__ == "__main__":
  main()
