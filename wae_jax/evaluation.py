"""What `wae-eval` reports for a trained model: the config's final evaluators.

During training the loop runs `config.eval.evaluators` (held-out reconstruction and MMD,
sharpness). `final_metrics` runs `config.eval.final_evaluators` on thousands of samples
(from the prior, or from a latent sampler fitted on the codes: `wae_jax/samplers/`),
adding the sample-quality metrics that take minutes: the domain FID (datasets with class
labels) and the Inception FID (when pytorch-fid's weights are at hand). `evaluate`
does so for the latest checkpoint of a trial directory and merges the numbers into its
`metrics.json`.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from absl import logging
from etils import epath
import jax
import ml_collections

from wae_jax import classifier
from wae_jax import data
from wae_jax import evaluators
from wae_jax import inception
from wae_jax import images
from wae_jax import inception_weights
from wae_jax import samplers
from wae_jax import state as state_lib
from wae_jax import trained
from wae_jax import workdir as workdir_lib
from wae_jax.evaluators import common

# How many samples the final metrics saw (per sampler): part of their protocol, not a score.
evaluators.declare(*(evaluators.Metric(evaluators.suffixed("eval_num_samples", s),
                                       higher_is_better=None) for s in samplers.names()))


def default_cache_dir() -> str:
  """Domain classifiers and reference statistics, unless a cache_dir is given."""
  return os.path.join(os.path.expanduser("~"), ".cache", "wae_jax")


class EvalError(ValueError):
  """A trial directory cannot be evaluated; the message says why, in one line."""


def load_inception(path: str | None = None) -> tuple[Any, str] | None:
  """pytorch-fid's Inception variables and file hash from `path`, else $WAE_INCEPTION_WEIGHTS,
  else torch's hub cache; None, said in a log line, when none is given or found.

  A file that is given but missing or wrong raises WeightsError: asking for FID
  and silently not getting it would be worse.
  """
  path = path or os.environ.get(inception_weights.ENV)
  if not path and not os.path.isfile(inception_weights.torch_hub_file()):
    logging.info("No Inception weights (set %s to pytorch-fid's %s): skipping FID.",
                 inception_weights.ENV, inception_weights.FILE)
    return None
  return inception.load_params(path)


def final_metrics(c: ml_collections.ConfigDict, variables, ds: data.Dataset,
                  inference: common.Inference, rng: jax.Array, *, num_samples: int,
                  cache_dir: str = "", inception_params: tuple[Any, str] | None = None,
                  classifier_steps: int = classifier.STEPS,
                  sampler: samplers.Sampler | None = None
                  ) -> tuple[dict[str, float], dict[str, Any]]:
  """The final evaluators' metrics on `num_samples` samples of `sampler` (default: the
  prior; another's are named `<metric>/<sampler>`), and the top-level fields that go with
  them (the Inception weights' hash, the protocols). Classifiers and the training split's
  statistics are cached in `cache_dir`."""
  context = common.Context(inference, variables, ds, rng, c, num_samples, sampler,
                           cache_dir=cache_dir or default_cache_dir(),
                           classifier_steps=classifier_steps,
                           inception_params=inception_params)
  logging.info("Sampling %d images (%s sampler)%s.", num_samples, context.sampler.name,
               f"; held-out metrics of {len(ds.test.images)} images" * context.with_data)
  metrics, fields = common.run(c.eval.final_evaluators, context)
  count = evaluators.suffixed("eval_num_samples", context.sampler.name)
  return {**metrics, count: num_samples}, fields


def evaluate(workdir: epath.PathLike, *, num_samples: int | None = None,
             weights: str | None = None, cache_dir: str = "",
             classifier_steps: int = classifier.STEPS,
             sampler_names: Sequence[str] = (samplers.PRIOR,), refit: bool = False
             ) -> dict[str, float]:
  """`final_metrics` of the latest checkpoint of a trial directory under each of
  `sampler_names`, merged into its `metrics.json` (status, step and config stay), with a
  grid of 64 samples per sampler (`samples_<sampler>.png`); returns them.

  `num_samples` and `cache_dir` default to the trial's own `eval.fid_num_samples` and
  `eval.cache_dir`; `weights` is the Inception weights file (see `load_inception`). A fitted
  sampler is read from the trial directory where it was fitted at this step (unless
  `refit`), else fitted and saved there.

  Raises EvalError, ConfigError (an unknown sampler) or TrialError (no trial directory,
  config.json, metrics.json or checkpoint) and WeightsError before any expensive work.
  """
  if num_samples is not None and num_samples < 2:
    raise EvalError(f"num_samples must be >= 2 (FID fits a covariance), got {num_samples}")
  for name in sampler_names:
    samplers.get(name)
  inception_params = load_inception(weights)  # Checks the file: before the restore.
  model = trained.load(workdir)
  record, error = workdir_lib.load_record(workdir)
  if error or record is None:
    raise EvalError(f"{workdir}: {error or f'no {workdir_lib.METRICS}'}")
  if record["status"] != workdir_lib.DONE:
    logging.warning("%s is %s; evaluating its latest checkpoint.", workdir, record["status"])
  logging.info("Evaluating %s at step %d.", workdir, model.step)
  c = model.config
  ds = data.load(c.data.source, c.data.heldout)
  metrics, fields, stale = {}, {}, []
  for name in sampler_names:
    sampler = model.sampler(name, refit)
    m, f = final_metrics(
        c, model.variables, ds, model.inference, state_lib.trial_keys(c)[1],
        num_samples=num_samples or c.eval.fid_num_samples, cache_dir=cache_dir or c.eval.cache_dir,
        inception_params=inception_params, classifier_steps=classifier_steps, sampler=sampler)
    metrics.update(m)
    fields.update(f)
    stale += _recorded(c, name)
    images.save_png(epath.Path(workdir) / f"samples_{name}.png", images.grid(
        model.decode(sampler.sample(64, jax.random.key(0)))))
  workdir_lib.update_metrics(workdir, metrics, fields, drop=tuple(stale))
  logging.info("Wrote %s: %s", epath.Path(workdir) / workdir_lib.METRICS,
               ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
  return metrics


def _recorded(c: ml_collections.ConfigDict, sampler: str) -> list[str]:
  """What an evaluation under `sampler` writes: its older values are dropped first."""
  prior = sampler == samplers.PRIOR
  out = []
  for name in c.eval.final_evaluators:
    evaluator = evaluators.get(name)
    if prior or evaluator.on_samples:
      out += [evaluators.suffixed(m.name, sampler) for m in evaluator.metrics
              if prior or m.per_sampler]
      out += [evaluators.suffixed(f, sampler) for f in evaluator.fields]
  return out
