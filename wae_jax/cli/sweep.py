r"""wae-sweep: list, run and follow a study written as data, one trial directory a trial.

  wae-sweep list   sweeps/bigwae.py
  wae-sweep run    sweeps/bigwae.py:debug --workdir=/tmp/sweep [--parallel=2] [--pack=8]
                   [--executor=ray|local] [--optuna=URL]
  wae-sweep status sweeps/bigwae.py:debug --workdir=/tmp/sweep

A sweep file defines `get_hyper(h, arg=None)` and builds its trials with the DSL in `h`
(`wae_jax.hyper`), and optionally `get_search(arg=None)`, its search by name and options
(`wae_jax.searches`: random by default, asha, or one of your own). Each trial trains in
`W/<trial id>/`; `run` drives the search on an executor (`wae_jax.executors`: Ray, locally
or on a cluster, or a local process pool) and, relaunched with the same command, skips
finished trials, resumes the others and takes the same decisions. It mirrors the sweep into
an Optuna study storage as it goes, for optuna-dashboard.
"""

from __future__ import annotations

import os

# Before TensorBoard's event reader can import TensorFlow: its C++ start-up lines are noise.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # pylint: disable=g-import-not-at-top,wrong-import-position
import json
import shlex
import signal
import sys
from typing import Sequence

from wae_jax import executors
from wae_jax import hyper
from wae_jax import workdir as workdir_lib
from wae_jax.cli import common


def _parser() -> argparse.ArgumentParser:
  parser = common.ArgumentParser(prog="wae-sweep", description=__doc__.split("\n\n")[0])
  parser.add_argument("command", choices=("list", "run", "status"))
  parser.add_argument("sweep", help="sweep file and optional argument: path.py[:arg]")
  parser.add_argument("--workdir", help="sweep directory (local or gs://); one subdir a trial")
  parser.add_argument("--parallel", type=int, default=None,
                      help="tasks (trials, or packs) at a time (local Ray: its CPU count; "
                           "default 1 locally, unbounded on a cluster)")
  parser.add_argument("--pack", type=int, default=1,
                      help="train up to this many trials that share their shapes as one "
                           "vmapped program, one Ray task a pack (default 1: a task a trial)")
  parser.add_argument("--executor", default=executors.DEFAULT,
                      help=f"where trials run: {', '.join(executors.names())} (default "
                           f"{executors.DEFAULT}), or a module registering one")
  parser.add_argument("--optuna", default=None, metavar="URL",
                      help="the live Optuna mirror's storage (default: sqlite in the sweep "
                           "directory; any SQLAlchemy URL, e.g. postgresql://...; '' for none)")
  parser.add_argument("--ray_address", default=None,
                      help="ray executor: join this Ray cluster ('auto', ...)")
  parser.add_argument("--trainer", default=None,
                      help="trainer command before --config (default: wae-train in this "
                           "Python); with --pack > 1, before the pack's JSON (default: "
                           "wae-train --pack)")
  parser.add_argument("--resources", default=None, type=json.loads,
                      help='ray executor: resources per task (a trial, or a pack) as JSON, '
                           'e.g. \'{"TPU": 4}\' (default {"CPU": 1})')
  parser.add_argument("--max_retries", type=int, default=None,
                      help="retries of a task whose worker or trainer is lost")
  parser.add_argument("--devices", type=int, default=1,
                      help="devices each trial trains on, for the up-front check that its "
                           "batch divides over them (8 on a v2-8; default 1)")
  parser.add_argument("--search", default=None,
                      help="random: every trial to its full budget, whatever the sweep file's "
                           "get_search says (the same trials, for a comparison); another "
                           "name: require that it is the file's search (default: the file's)")
  parser.add_argument("--nocheck", action="store_true",
                      help="do not validate the trials' configs before running")
  return parser


def main(argv: Sequence[str] | None = None) -> None:
  args = _parser().parse_args(argv)
  # After parsing: the runner and the study import JAX, which --help and a bad flag skip.
  # pylint: disable-next=g-import-not-at-top
  from wae_jax import progress, runner, study
  try:
    if args.command != "list" and not args.workdir:
      raise hyper.SweepError(f"{args.command} needs --workdir")
    if args.workdir and (problem := workdir_lib.not_a_directory(args.workdir)):
      raise hyper.SweepError(problem)
    if args.parallel is not None and args.parallel < 1:
      raise hyper.SweepError(f"--parallel must be >= 1, got {args.parallel}")
    if args.max_retries is not None and args.max_retries < 0:
      raise hyper.SweepError(f"--max_retries must be >= 0, got {args.max_retries}")
    if args.pack < 1:
      raise hyper.SweepError(f"--pack must be >= 1, got {args.pack}")
    if args.devices < 1:
      raise hyper.SweepError(f"--devices must be >= 1, got {args.devices}")
    try:
      executors.get(args.executor)
    except hyper.SweepError as e:
      raise hyper.SweepError(f"--executor: {e}") from None
    s = study.load_sweep(args.sweep, check=not args.nocheck, num_devices=args.devices,
                         search=args.search)
    if args.command == "list":
      if hasattr(signal, "SIGPIPE"):  # `wae-sweep list ... | head` ends quietly.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
      study.describe(s, sys.stdout)
    elif args.command == "status":
      progress.status(s, args.workdir)
    else:
      if not args.nocheck and not args.ray_address:  # Trainers on this host: its memory.
        study.check_memory(s)
      options = {k: getattr(args, k) for k in ("parallel", "max_retries", "ray_address",
                                                "resources")}
      counts = runner.run_sweep(s, args.workdir, executor=args.executor, options=options,
                                pack=args.pack, storage=args.optuna,
                                trainer=shlex.split(args.trainer) if args.trainer else None)
      sys.exit(0 if set(counts) <= set(workdir_lib.FINAL) else 1)
  except hyper.SweepError as e:
    print(f"wae-sweep: error: {e}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print("wae-sweep: interrupted; run the same command again to resume", file=sys.stderr)
    sys.exit(130)


if __name__ == "__main__":
  main()
