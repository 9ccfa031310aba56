r"""Metrics of a trained auto-encoder, the picture grids people look at, and `wae-eval`.

  wae-eval --workdir=W [--num_samples=50000] [--inception_weights=PATH] [--cache_dir=DIR]

`Evaluator` reports what the paper reports for a model, during training: reconstruction cost
on held-out images, MMD(Q_Z, P_Z) between held-out codes and as many prior draws (the blocked
estimator, so the whole held-out set fits), and the sharpness of prior samples next to that
of real images (the paper's blurriness measure). `wae-eval` adds the sample-quality metrics
that need thousands of samples and minutes of compute: the domain FID (datasets with class
labels) and the Inception FID (when pytorch-fid's weights are at hand), for the latest
checkpoint of a trial directory, merged into its `metrics.json`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from typing import Any, Sequence

from absl import app
from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from wae_jax import classifier
from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import fid
from wae_jax import inception
from wae_jax import losses
from wae_jax import mmd
from wae_jax import workdir as workdir_lib

# ITU-R 601 luma, as in tf.image.rgb_to_grayscale.
LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)
NUM_SAMPLES = 10_000  # wae-eval's default; 50,000 is the other usual choice for FID.
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "wae_jax")
# Metrics that `final_metrics` computes only sometimes; a new evaluation drops stale ones.
FID_METRICS = ("domain_fid", "domain_fid_classifier_acc", "fid")


class EvalError(ValueError):
  """A trial directory cannot be evaluated; the message says why, in one line."""


def sharpness(images: np.ndarray) -> np.ndarray:
  """Per-image variance of the 3x3 Laplacian (VALID) of the grey image; images in [0, 1]."""
  grey = images[..., 0] if images.shape[-1] == 1 else images @ LUMA
  lap = (grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:]
         - 4.0 * grey[:, 1:-1, 1:-1])
  return lap.reshape(len(lap), -1).var(axis=1)


def image_grid(images: np.ndarray, cols: int = 8) -> np.ndarray:
  """Tiles float images in [0, 1] into one uint8 picture, with a 1-pixel grey border."""
  n, h, w, c = images.shape
  rows = -(-n // cols)
  grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 128, np.uint8)
  pixels = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
  for i, img in enumerate(pixels):
    r, q = divmod(i, cols)
    grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = img
  return grid


def save_png(path: str, grid: np.ndarray) -> None:
  with open(path, "wb") as f:
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(f, format="PNG")


def to_unit(x: np.ndarray, symmetric: bool) -> np.ndarray:
  """Decoder output or data floats -> [0, 1] for pictures and sharpness."""
  return (x + 1.0) / 2.0 if symmetric else x


class Evaluator:
  """Jitted, sharded inference over arrays of any length (padded to whole batches)."""

  def __init__(self, c: ml_collections.ConfigDict, model, mesh, symmetric: bool):
    """Compiles for `c`'s shapes; calls may pass configs that differ in hyperparameters."""
    self.mesh, self.symmetric = mesh, symmetric
    n = mesh.size
    self.batch_size = -(-c.eval.batch_size // n) * n
    self.sharding = NamedSharding(mesh, P("data"))

    def heldout(variables, x, noise):
      """Codes of held-out images and their per-image squared error."""
      xf = data.to_float(x, symmetric)
      _, _, z, x_hat = model.apply(variables, xf, noise, train=False)
      return (z, losses.reconstruction_per_image(xf, x_hat, c.recon.cost),
              losses.reconstruction_per_image(xf, x_hat, "l2sq"), x_hat)

    self._heldout = jax.jit(heldout)
    self._decode = jax.jit(functools.partial(model.apply, train=False, method="decode"))
    # Codes come in divided by sqrt(C), so one compiled estimator serves every prior_var.
    self._mmd = jax.jit(functools.partial(mmd.mmd, kernel=c.mmd.kernel, c=1.0,
                                          scales=tuple(c.mmd.scales),
                                          block_size=c.mmd.block_size))

  def _map(self, fn, variables, *arrays):
    """Applies `fn(variables, *batches)` batch by batch; returns host arrays, unpadded."""
    n = len(arrays[0])
    outs = []
    for start in range(0, n, self.batch_size):
      chunk = [a[start:start + self.batch_size] for a in arrays]
      pad = self.batch_size - len(chunk[0])
      chunk = [np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)]) for a in chunk]
      out = fn(variables, *(data.place(a, self.sharding) for a in chunk))
      outs.append(jax.tree.map(lambda o: multihost_utils.process_allgather(o, tiled=True), out))
    return jax.tree.map(lambda *o: np.concatenate(o)[:n], *outs)

  def __call__(self, variables, dataset: data.Dataset, rng: jax.Array,
               c: ml_collections.ConfigDict, num_samples: int | None = None
               ) -> tuple[dict[str, float], dict[str, np.ndarray], np.ndarray]:
    """Held-out metrics of the trial configured by `c`, its picture grids, and the prior
    samples (in [0, 1]) whose sharpness they report: `num_samples`, else eval.num_samples."""
    num_samples = num_samples or c.eval.num_samples
    test = dataset.test.images
    code_rng, prior_rng, sample_rng = jax.random.split(rng, 3)
    noise = np.asarray(jax.random.normal(code_rng, (len(test), c.z_dim)))
    codes, costs, sq_l2, recons = self._map(self._heldout, variables, test, noise)
    prior = np.sqrt(c.prior_var) * np.asarray(jax.random.normal(prior_rng, codes.shape))
    z = np.sqrt(c.prior_var) * np.asarray(
        jax.random.normal(sample_rng, (num_samples, c.z_dim)))
    samples = to_unit(self._map(self._decode, variables, z), self.symmetric)
    real = to_unit(np.asarray(data.to_float(test[:num_samples], self.symmetric)),
                   self.symmetric)
    sharp = sharpness(samples)
    metrics = {
        "recon": float(c.recon.scale * costs.mean()),
        "recon_sq_l2": float(sq_l2.mean()),  # Unweighted, comparable across recon.scale.
        "mmd_heldout": float(self._mmd(*(jnp.asarray(a / np.sqrt(2.0 * c.z_dim * c.prior_var))
                                         for a in (codes, prior)))),
        "sharpness_mean": float(sharp.mean()),
        "sharpness_min": float(sharp.min()),
        "sharpness_data": float(sharpness(real).mean()),
    }
    shown = min(32, len(real))  # Real images are the first eval.num_samples held-out ones.
    pairs = np.stack([real[:shown], to_unit(recons[:shown], self.symmetric)], axis=1)
    images = {"samples": image_grid(samples[:64]),
              "reconstructions": image_grid(pairs.reshape((-1,) + pairs.shape[2:]))}
    return metrics, images, samples


def variables_of(state: Any) -> dict[str, Any]:
  """The auto-encoder's flax variables from a train state."""
  return {"params": state.params, "batch_stats": state.batch_stats}


def load_inception(path: str | None = None) -> tuple[Any, str] | None:
  """pytorch-fid's Inception variables and file hash from `path`, else $WAE_INCEPTION_WEIGHTS,
  else torch's hub cache; None, said in a log line, when none is given or found.

  A file that is given but missing or wrong raises inception.WeightsError: asking for FID
  and silently not getting it would be worse.
  """
  path = path or os.environ.get(inception.WEIGHTS_ENV)
  if not path and not os.path.isfile(inception.TORCH_HUB_FILE):
    logging.info("No Inception weights (set %s to pytorch-fid's %s): skipping FID.",
                 inception.WEIGHTS_ENV, inception.WEIGHTS_FILE)
    return None
  return inception.load_params(path)


def final_metrics(c: ml_collections.ConfigDict, variables, ds: data.Dataset,
                  evaluator: Evaluator, rng: jax.Array, *, num_samples: int,
                  cache_dir: str = "", inception_params: tuple[Any, str] | None = None,
                  classifier_steps: int = classifier.STEPS
                  ) -> tuple[dict[str, float], dict[str, str]]:
  """What `wae-eval` reports for a model, and the top-level fields that go with it.

  The held-out metrics and the sharpness of `num_samples` prior samples, the domain FID of
  those samples (datasets with class labels) next to its classifier's test accuracy, and
  their Inception FID when `inception_params` (from `load_inception`) are given. The
  classifier and the training split's statistics are cached in `cache_dir`.
  """
  cache_dir = cache_dir or CACHE_DIR
  logging.info("Sampling %d images; held-out metrics of %d images.", num_samples,
               len(ds.test.images))
  metrics, _, samples = evaluator(variables, ds, rng, c, num_samples)
  metrics["eval_num_samples"] = num_samples
  if ds.train.labels is None:
    logging.info("No domain FID: %s has no class labels.", ds.name)
  else:
    logging.info("Domain FID: the domain classifier (trained once per dataset, cached in %s).",
                 cache_dir)
    clf = classifier.get_or_train(ds, cache_dir, steps=classifier_steps)
    logging.info("Domain FID: classifier features (its test accuracy is %.4f).",
                 clf.test_accuracy)
    metrics["domain_fid"] = fid.domain_fid(samples, ds, cache_dir, clf)
    metrics["domain_fid_classifier_acc"] = clf.test_accuracy
  if inception_params is None:
    return metrics, {}
  logging.info("FID: Inception features of %d samples (and once of the training split).",
               num_samples)
  variables_i, sha256 = inception_params
  metrics["fid"] = fid.inception_fid(samples, ds, cache_dir, variables_i, sha256, evaluator.mesh)
  return metrics, {"inception_sha256": sha256}


def evaluate_workdir(workdir: epath.PathLike, *, num_samples: int = NUM_SAMPLES,
                     inception_weights: str | None = None, cache_dir: str = "",
                     classifier_steps: int = classifier.STEPS) -> dict[str, float]:
  """`final_metrics` of the latest checkpoint of a trial directory, merged into its
  `metrics.json` (status, step and config stay); returns them.

  Raises EvalError (no trial directory, config.json, metrics.json or checkpoint) and
  inception.WeightsError before any expensive work.
  """
  # Imported here, not at the top: train.py imports this module, and under
  # `python -m wae_jax.train` importing it back would run train.py a second time.
  from wae_jax import train  # pylint: disable=g-import-not-at-top
  workdir = epath.Path(workdir)
  if num_samples < 2:
    raise EvalError(f"num_samples must be >= 2 (FID fits a covariance), got {num_samples}")
  if not workdir.is_dir():
    raise EvalError(f"no trial directory {workdir}")
  if not (workdir / workdir_lib.CONFIG).exists():
    raise EvalError(f"{workdir} has no {workdir_lib.CONFIG}: not a trial directory")
  c = ml_collections.ConfigDict(json.loads((workdir / workdir_lib.CONFIG).read_text()))
  record = workdir_lib.read_metrics(workdir)
  manager = train.checkpoint_manager(workdir, c)
  step = manager.latest_step()
  if step is None or record is None:
    raise EvalError(f"{workdir} has no {'checkpoint' if step is None else workdir_lib.METRICS}")
  inception_params = load_inception(inception_weights)
  if record["status"] != "done":
    logging.warning("%s is %s; evaluating its latest checkpoint.", workdir, record["status"])
  logging.info("Evaluating %s at step %d.", workdir, step)
  ds = data.load(c.data.source, c.data.heldout)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  model, state = train.restore(manager, step, c, ds, mesh)
  metrics, extra = final_metrics(
      c, variables_of(state), ds, Evaluator(c, model, mesh, ds.symmetric),
      train.trial_keys(c)[1], num_samples=num_samples, cache_dir=cache_dir,
      inception_params=inception_params, classifier_steps=classifier_steps)
  workdir_lib.update_metrics(workdir, metrics, extra,
                             drop=FID_METRICS + workdir_lib.EVAL_FIELDS)
  logging.info("Wrote %s: %s", workdir / workdir_lib.METRICS,
               ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
  return metrics


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="wae-eval", description="Domain FID, FID, sharpness and held-out metrics of the "
      "latest checkpoint of a trial directory, merged into its metrics.json.")
  parser.add_argument("--workdir", required=True, help="trial directory (local or gs://)")
  parser.add_argument("--num_samples", type=int, default=NUM_SAMPLES,
                      help=f"prior samples (default {NUM_SAMPLES}; 50000 as in most FID tables)")
  parser.add_argument("--inception_weights", default=None,
                      help=f"pytorch-fid's {inception.WEIGHTS_FILE} (default: "
                           f"${inception.WEIGHTS_ENV}, else torch's hub cache; no FID without)")
  parser.add_argument("--cache_dir", default="",
                      help=f"domain classifiers and reference statistics (default {CACHE_DIR})")
  args = parser.parse_args(argv)
  app.run(lambda _: _run(args), argv=[parser.prog])


def _run(args: argparse.Namespace) -> None:
  from wae_jax import train  # pylint: disable=g-import-not-at-top  # See evaluate_workdir.
  logging.get_absl_handler().python_handler.addFilter(train.quiet_libraries)
  try:
    evaluate_workdir(args.workdir, num_samples=args.num_samples,
                     inception_weights=args.inception_weights, cache_dir=args.cache_dir)
  except (EvalError, inception.WeightsError, config_lib.ConfigError) as e:
    print(f"wae-eval: error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
