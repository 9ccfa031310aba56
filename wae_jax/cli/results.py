r"""wae-results: a sweep's trials as Table 1 of the paper, a per-trial table, and plots.

  wae-results /tmp/sweep [--format md|csv|parquet] [--out FILE] [--plot out.png]
  wae-results /tmp/sweep --curves curves.png       # the metric against steps, every trial
  wae-results /tmp/sweep --replay=asha --grid min_steps=75,150 --grid eta=2,3,4
                                                   # a search replayed on a full-budget study
  wae-results /tmp/sweep --optuna [URL]            # rebuild the Optuna mirror (dashboard)
  wae-results /tmp/sweep --importance              # hyperparameter importance per algorithm
"""

from __future__ import annotations

import os

# Before TensorBoard's event reader can import TensorFlow: its C++ start-up lines are noise.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # pylint: disable=g-import-not-at-top,wrong-import-position
import json
import sys
from typing import Sequence

from wae_jax.cli import common
from wae_jax.hyper import SweepError


def _grid(text: str) -> tuple[str, list[object]]:
  """`eta=2,3,4` -> ("eta", [2, 3, 4]); each value read as JSON, else kept as text."""
  name, sep, values = text.partition("=")
  if not sep or not name or not values:
    raise argparse.ArgumentTypeError(f"expected OPTION=V1,V2,..., got {text!r}")

  def value(v):
    try:
      return json.loads(v)
    except ValueError:
      return v
  return name, [value(v) for v in values.split(",")]


def main(argv: Sequence[str] | None = None) -> None:
  parser = common.ArgumentParser(prog="wae-results", description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir", help="sweep directory (local or gs://)")
  parser.add_argument("--format", choices=("md", "csv", "parquet"), default="md",
                      help="md: Table 1, trials and errors; csv/parquet: one row per trial")
  parser.add_argument("--out", help="file to write (local or gs://; default stdout)")
  parser.add_argument("--plot", help="PNG: metric vs lambda and distribution per algorithm")
  parser.add_argument("--metric", help="rank and plot by this metric column (default: fid, "
                      "else domain_fid: the best sample-quality metric the trials have)")
  parser.add_argument("--curves", help="PNG: the metric against steps for every trial, a "
                      "panel per algorithm (from the trials' TensorBoard events)")
  parser.add_argument("--replay", nargs="?", const="asha", metavar="SEARCH",
                      help="instead of the report: this search (default asha; any registered "
                      "one) replayed on this finished full-budget study's curves, a row per "
                      "point of --grid")
  parser.add_argument("--grid", type=_grid, action="append", default=[],
                      metavar="OPTION=V1,V2", help="--replay's search options, each a list "
                      "(max_steps and metric default to the study's), e.g. eta=2,3,4")
  parser.add_argument("--optuna", nargs="?", const="", metavar="URL",
                      help="rebuild the sweep's Optuna mirror from its trial directories (default "
                      "URL: the sweep's sqlite file) and print the dashboard command")
  parser.add_argument("--importance", action="store_true",
                      help="hyperparameter importance per algorithm (Optuna's evaluators)")
  args = parser.parse_args(argv)
  # pandas and matplotlib load after --help. pylint: disable-next=g-import-not-at-top
  from wae_jax import curves as curves_lib, plots, replay, results as results_lib
  try:
    if args.format == "parquet" and not args.out:
      raise ValueError("--format=parquet needs --out")
    results = results_lib.read_results(args.workdir)
    if results.trials.empty:
      why = f" ({results.errors[0]})" if results.errors else ""
      raise ValueError(f"no trials in {args.workdir}{why}")
    # By default the search's metric (an ASHA sweep's), else the table's best available.
    metric = args.metric or results.search_metric
    metric = metric and results_lib.table_metric(results.trials, metric)
    if args.replay or args.curves:
      curves_metric = metric or results_lib.table_metric(results.trials)
      curves = curves_lib.read_curves(args.workdir, results.trials, curves_metric)
    if args.replay:
      table = replay.table(results.trials, curves, curves_metric, args.replay, dict(args.grid))
      print(f"{args.replay} replayed on {len(results.trials)} trials by {curves_metric}:\n"
            + results_lib.to_markdown(table))
    elif args.optuna is not None or args.importance:
      _optuna(args, results, metric or results_lib.table_metric(results.trials))
    else:
      results_lib.write_table(results, args.format, args.out, metric)
    if args.plot:
      plots.plot(results.trials, args.plot, metric)
    if args.curves:
      curves_lib.plot_curves(results.trials, curves, args.curves, curves_metric)
  except (ValueError, OSError, SweepError) as e:
    print(f"wae-results: error: {e}", file=sys.stderr)
    sys.exit(2)
  if results.errors and args.format != "md":
    print(f"wae-results: {len(results.errors)} unreadable trial(s):", *results.errors,
          sep="\n  ", file=sys.stderr)


def _optuna(args, results, metric: str) -> None:
  """The sweep's Optuna mirror rebuilt from its trial directories (the search, restored from
  them, says which trials it stopped), and the importances `--importance` asks of it."""
  # pylint: disable-next=g-import-not-at-top
  from etils import epath
  from wae_jax import importance, mirror, results as results_lib, runner, searches, study
  trials = (results.ledger or {}).get("trials") or {}
  if not trials:
    raise ValueError(f"--optuna/--importance: {args.workdir} has no readable sweep.json "
                     "(the ledger names each trial's algorithm)")
  search = searches.parse(results.ledger.get("search"))
  search.restore(runner.read_ledger(study.Sweep("", trials, search), epath.Path(args.workdir)))
  mirrored = dict(metric=metric, storage=args.optuna or None,
                  search_states=mirror.search_states(search))
  if args.optuna is not None:
    url = mirror.sync(args.workdir, trials, rebuild=True, **mirrored)
    print(f"Optuna mirror of {len(trials)} trials by {metric} rebuilt in {url}\n"
          f"  {mirror.dashboard_command(url)}")
  if args.importance:
    table = importance.table(args.workdir, trials, **mirrored)
    print(f"## Hyperparameter importance by {metric}, per algorithm\n\n"
          + results_lib.to_markdown(table))


if __name__ == "__main__":
  main()
