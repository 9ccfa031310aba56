r"""wae-eval: the final metrics of a trial directory's latest checkpoint, into metrics.json.

  wae-eval --workdir=W [--num_samples=50000] [--inception_weights=PATH] [--cache_dir=DIR]
           [--sampler=prior,gmm,flow] [--refit_sampler]

Metrics of samples from a sampler other than the prior are recorded as `<metric>/<sampler>`
(domain_fid/gmm); a fitted sampler is kept in the trial directory and reused.

JAX and the evaluation load after the flags parse: `--help` and a bad flag are instant.
"""

import argparse
from typing import Sequence

from absl import app

from wae_jax import inception_weights
from wae_jax.cli import common
from wae_jax.errors import ConfigError
from wae_jax.errors import TrialError


def main(argv: Sequence[str] | None = None) -> None:
  parser = common.ArgumentParser(
      prog="wae-eval", description="Domain FID, FID, sharpness and held-out metrics of the "
      "latest checkpoint of a trial directory, merged into its metrics.json.")
  parser.add_argument("--workdir", required=True, help="trial directory (local or gs://)")
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
                           "(prior, gmm, flow; default prior)")
  parser.add_argument("--refit_sampler", action="store_true",
                      help="fit the samplers again even where the trial directory has them")
  args = parser.parse_args(argv)
  app.run(lambda _: _run(args), argv=[parser.prog])


def _run(args: argparse.Namespace) -> None:
  from wae_jax import evaluation  # pylint: disable=g-import-not-at-top
  common.use_console()
  common.use_compilation_cache()
  try:
    evaluation.evaluate(args.workdir, num_samples=args.num_samples,
                        weights=args.inception_weights, cache_dir=args.cache_dir,
                        sampler_names=tuple(n for n in args.sampler.split(",") if n),
                        refit=args.refit_sampler)
  except (evaluation.EvalError, inception_weights.WeightsError, ConfigError, TrialError) as e:
    common.fail("wae-eval", str(e))


if __name__ == "__main__":
  main()
