r"""wae-eval: the final metrics of a trial directory's latest checkpoint, into metrics.json.

  wae-eval --workdir=W [--num_samples=50000] [--inception_weights=PATH] [--cache_dir=DIR]
"""

import argparse
from typing import Sequence

from absl import app
from absl import logging

from wae_jax import evaluation
from wae_jax import inception
from wae_jax.cli import common
from wae_jax.errors import ConfigError
from wae_jax.errors import TrialError


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="wae-eval", description="Domain FID, FID, sharpness and held-out metrics of the "
      "latest checkpoint of a trial directory, merged into its metrics.json.")
  parser.add_argument("--workdir", required=True, help="trial directory (local or gs://)")
  parser.add_argument("--num_samples", type=int, default=evaluation.NUM_SAMPLES,
                      help=f"prior samples (default {evaluation.NUM_SAMPLES}; 50000 as in most "
                           "FID tables)")
  parser.add_argument("--inception_weights", default=None,
                      help=f"pytorch-fid's {inception.WEIGHTS_FILE} (default: "
                           f"${inception.WEIGHTS_ENV}, else torch's hub cache; no FID without)")
  parser.add_argument("--cache_dir", default="",
                      help="domain classifiers and reference statistics (default "
                           "~/.cache/wae_jax)")
  args = parser.parse_args(argv)
  app.run(lambda _: _run(args), argv=[parser.prog])


def _run(args: argparse.Namespace) -> None:
  common.use_console()
  try:
    evaluation.evaluate(args.workdir, num_samples=args.num_samples,
                      inception_weights=args.inception_weights, cache_dir=args.cache_dir)
  except (evaluation.EvalError, inception.WeightsError, ConfigError, TrialError) as e:
    common.fail("wae-eval", str(e))


if __name__ == "__main__":
  main()
