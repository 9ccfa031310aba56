r"""wae-results: a sweep's trials as Table 1 of the paper, a per-trial table, and plots.

  wae-results /tmp/sweep [--format md|csv|parquet] [--out FILE] [--plot out.png]
  wae-results /tmp/sweep --curves curves.png       # the metric against steps, every trial
  wae-results /tmp/sweep --replay --min_steps=75,150 [--eta=2,3,4]
                                                   # ASHA simulated on a full-budget study
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from wae_jax.cli import common


def _ints(text: str) -> list[int]:
  try:
    return [int(v) for v in text.split(",")]
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}"
                                     ) from None


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
  parser.add_argument("--replay", action="store_true",
                      help="instead of the report: ASHA simulated on this finished full-budget "
                      "study's curves, a row per (min_steps, eta)")
  parser.add_argument("--min_steps", type=_ints, help="--replay's first rungs, e.g. 75,150")
  parser.add_argument("--eta", type=_ints, default=[2, 3, 4],
                      help="--replay's reduction factors (default 2,3,4)")
  args = parser.parse_args(argv)
  if args.replay and not args.min_steps:
    parser.error("--replay needs --min_steps")
  # pandas and matplotlib load after --help. pylint: disable-next=g-import-not-at-top
  from wae_jax import results as results_lib
  try:
    if args.format == "parquet" and not args.out:
      raise ValueError("--format=parquet needs --out")
    results = results_lib.read_results(args.workdir)
    if results.trials.empty:
      raise ValueError(f"no trials in {args.workdir}")
    # By default the search's metric (an ASHA sweep's), else the table's best available.
    metric = args.metric or results.search_metric
    metric = metric and results_lib.table_metric(results.trials, metric)
    if args.replay or args.curves:
      curves_metric = metric or results_lib.table_metric(results.trials)
      curves = results_lib.read_curves(args.workdir, results.trials, curves_metric)
    if args.replay:
      table = results_lib.replay(results.trials, curves, curves_metric, args.eta,
                                 args.min_steps)
      print(f"ASHA replayed on {len(results.trials)} trials by {curves_metric}:\n"
            + results_lib.to_markdown(table))
    else:
      results_lib.write_table(results, args.format, args.out, metric)
    if args.plot:
      results_lib.plot(results.trials, args.plot, metric)
    if args.curves:
      results_lib.plot_curves(results.trials, curves, args.curves, curves_metric)
  except (ValueError, OSError) as e:
    print(f"wae-results: error: {e}", file=sys.stderr)
    sys.exit(2)
  if results.errors and args.format != "md":
    print(f"wae-results: {len(results.errors)} unreadable trial(s):", *results.errors,
          sep="\n  ", file=sys.stderr)


if __name__ == "__main__":
  main()
