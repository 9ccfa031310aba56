r"""wae-eval: the final metrics of a trial directory's latest checkpoint, into metrics.json.

  wae-eval --workdir=W [--num_samples=50000] [--inception_weights=PATH] [--cache_dir=DIR]
           [--sampler=prior,gmm,flow,two_stage] [--refit_sampler]

Metrics of samples from a sampler other than the prior are recorded as `<metric>/<sampler>`
(domain_fid/gmm); a fitted sampler is kept in the trial directory and reused.

W may be a sweep directory (no config.json; a sweep.json ledger, or trial directories under
it): then every trial is evaluated in turn, one line each, so that `wae-results W
--metric=domain_fid/gmm` ranks a finished sweep by a sampler's metric without retraining.
A trial without a checkpoint is named and skipped; one that fails is named with its error
in one line and the others go on; the exit status is 1 if any failed.

JAX and the evaluation load after the flags parse: `--help` and a bad flag are instant.
"""

import argparse
import time
from typing import Sequence

from absl import app
from absl import logging
from etils import epath

from wae_jax import inception_weights
from wae_jax import workdir as workdir_lib
from wae_jax.cli import common
from wae_jax.errors import ConfigError
from wae_jax.errors import TrialError


def main(argv: Sequence[str] | None = None) -> None:
  parser = common.ArgumentParser(
      prog="wae-eval", description="Domain FID, FID, sharpness and held-out metrics of the "
      "latest checkpoint of a trial directory (or of each trial of a sweep directory), "
      "merged into its metrics.json.")
  parser.add_argument("--workdir", required=True,
                      help="trial directory, or a sweep directory: each of its trials "
                           "(local or gs://)")
  parser.add_argument("--num_samples", type=int, default=None,
                      help="prior samples (default: the trial's eval.fid_num_samples, 10000 in "
                           "every config; 50000 as in most final FID tables)")
  parser.add_argument("--inception_weights", default=None,
                      help=f"pytorch-fid's {inception_weights.FILE} (default: "
                           f"${inception_weights.ENV}, else torch's hub cache; no FID without)")
  parser.add_argument("--cache_dir", default="",
                      help="domain classifiers and reference statistics (default: the "
                           "trial's eval.cache_dir, else ~/.cache/wae_jax)")
  parser.add_argument("--sampler", default="prior",
                      help="latent samplers whose samples are measured, comma-separated "
                           "(prior, gmm, flow, two_stage; default prior)")
  parser.add_argument("--refit_sampler", action="store_true",
                      help="fit the samplers again even where the trial directory has them")
  args = parser.parse_args(argv)
  app.run(lambda _: _run(args), argv=[parser.prog])


def _run(args: argparse.Namespace) -> None:
  from wae_jax import evaluation  # pylint: disable=g-import-not-at-top
  from wae_jax import samplers  # pylint: disable=g-import-not-at-top
  common.use_console()
  common.use_compilation_cache()
  options = dict(num_samples=args.num_samples, weights=args.inception_weights,
                 cache_dir=args.cache_dir, refit=args.refit_sampler,
                 sampler_names=tuple(n for n in args.sampler.split(",") if n))
  known = (evaluation.EvalError, inception_weights.WeightsError, ConfigError, TrialError)
  try:
    for name in options["sampler_names"]:
      samplers.get(name)  # Before any trial: the same mistake for every one.
    trials = sweep_trials(args.workdir)
    if trials is None:
      evaluation.evaluate(args.workdir, **options)
      return
  except known as e:
    common.fail("wae-eval", str(e))
  _run_sweep(epath.Path(args.workdir), trials, lambda w: evaluation.evaluate(w, **options))


def sweep_trials(workdir: str) -> list[str] | None:
  """The trial ids of the sweep directory `workdir`, the ledger's first (its order, as
  wae-results reads them) then any other subdirectory holding a trial; None for a trial
  directory or a directory that holds none (evaluated as one, whose error says why)."""
  root = epath.Path(workdir)
  if not root.is_dir() or (root / workdir_lib.CONFIG).exists():
    return None
  try:
    ledger = workdir_lib.read_ledger(root)
  except ValueError as e:
    logging.warning("%s: unreadable (%s); evaluating every trial directory",
                    workdir_lib.LEDGER, e)
    ledger = None
  ids = workdir_lib.ordered_ids(ledger) if ledger else []
  ids += sorted(p.name for p in root.iterdir() if (p / workdir_lib.CONFIG).exists())
  return list(dict.fromkeys(ids)) or None


def _run_sweep(root: epath.Path, trials: list[str], evaluate) -> None:
  """`evaluate` on each trial with a checkpoint, a line each; exits 1 at the end if any
  failed. Library logs drop to warnings, so the lines stay one per trial."""
  from wae_jax import evaluators  # pylint: disable=g-import-not-at-top
  shown, failed, verbosity = set(evaluators.ranking()), [], logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)
  try:
    for i, tid in enumerate(trials, 1):
      _one(root, tid, f"[{i}/{len(trials)}] {tid}:", evaluate, shown, failed)
  finally:
    logging.set_verbosity(verbosity)
  if failed:
    common.fail("wae-eval", f"{len(failed)} of {len(trials)} trials failed: "
                f"{', '.join(failed)}", code=workdir_lib.EXIT_CRASHED)


def _one(root: epath.Path, tid: str, head: str, evaluate, shown: set[str],
         failed: list[str]) -> None:
  """One trial's evaluation and its line."""
  where, start = root / tid, time.time()
  if not (where / workdir_lib.CONFIG).exists():
    print(f"{head} skipped: no {workdir_lib.CONFIG} (not started)", flush=True)
    return
  if not workdir_lib.checkpoint_steps(where):
    print(f"{head} skipped: no checkpoint", flush=True)
    return
  try:
    metrics = evaluate(where)
  except inception_weights.WeightsError as e:  # The same for every trial: stop here.
    common.fail("wae-eval", str(e))
  except Exception as e:  # pylint: disable=broad-except  # One line; the others go on.
    failed.append(tid)
    text = str(e).strip().splitlines()
    print(f"{head} error: {type(e).__name__}: {text[0] if text else ''}", flush=True)
    return
  parts = [f"{k}={v:.4g}" for k, v in metrics.items() if k.split("/")[0] in shown]
  print(f"{head} {', '.join(parts) or 'done'} ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
  main()
