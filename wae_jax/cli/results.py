r"""wae-results: a sweep's trials as Table 1 of the paper, a per-trial table, and plots.

  wae-results /tmp/sweep [--format md|csv|parquet] [--out FILE] [--plot out.png]
"""

from __future__ import annotations

import sys
from typing import Sequence

from wae_jax.cli import common


def main(argv: Sequence[str] | None = None) -> None:
  parser = common.ArgumentParser(prog="wae-results", description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir", help="sweep directory (local or gs://)")
  parser.add_argument("--format", choices=("md", "csv", "parquet"), default="md",
                      help="md: Table 1, trials and errors; csv/parquet: one row per trial")
  parser.add_argument("--out", help="file to write (local or gs://; default stdout)")
  parser.add_argument("--plot", help="PNG: metric vs lambda and distribution per algorithm")
  parser.add_argument("--metric", help="rank and plot by this metric column (default: fid, "
                      "else domain_fid: the best sample-quality metric the trials have)")
  args = parser.parse_args(argv)
  # pandas and matplotlib load after --help. pylint: disable-next=g-import-not-at-top
  from wae_jax import results as results_lib
  try:
    if args.format == "parquet" and not args.out:
      raise ValueError("--format=parquet needs --out")
    results = results_lib.read_results(args.workdir)
    if results.trials.empty:
      raise ValueError(f"no trials in {args.workdir}")
    metric = args.metric and results_lib.table_metric(results.trials, args.metric)
    results_lib.write_table(results, args.format, args.out, metric)
    if args.plot:
      results_lib.plot(results.trials, args.plot, metric)
  except (ValueError, OSError) as e:
    print(f"wae-results: error: {e}", file=sys.stderr)
    sys.exit(2)
  if results.errors and args.format != "md":
    print(f"wae-results: {len(results.errors)} unreadable trial(s):", *results.errors,
          sep="\n  ", file=sys.stderr)


if __name__ == "__main__":
  main()
