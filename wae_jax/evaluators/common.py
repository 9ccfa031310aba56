"""What every evaluator of a model shares: jitted, sharded inference and its outputs.

`Inference` compiles the model's held-out pass and decoder once per program (a pack's
trials share it); `Context` is one model at one step, computing each shared quantity (codes
of the held-out images, decoded prior samples) once, on first use, from the trial's
evaluation key, so every evaluator sees the same samples.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from wae_jax import data
from wae_jax import evaluators
from wae_jax import images
from wae_jax import losses
from wae_jax import mmd
from wae_jax import models
from wae_jax import samplers


class Inference:
  """Jitted, sharded inference over arrays of any length (padded to whole batches)."""

  def __init__(self, c: ml_collections.ConfigDict, model, mesh: Mesh, pixels: data.Pixels):
    """Compiles for `c`'s shapes; contexts may pass configs that differ in hyperparameters."""
    self.mesh, self.pixels = mesh, pixels
    self.batch_size = -(-c.eval.batch_size // mesh.size) * mesh.size
    self.sharding = NamedSharding(mesh, P("data"))

    def heldout(variables, x, noise):
      """Codes of held-out images, their costs, and their reconstructions."""
      xf = pixels.to_float(x)
      _, _, z, x_hat = model.apply(variables, xf, noise, train=False)
      log_var = models.decoder_log_var(variables["params"])
      return (z, losses.reconstruction_per_image(xf, x_hat, c.recon.cost, log_var),
              losses.reconstruction_per_image(xf, x_hat, "l2sq"), x_hat)

    self.heldout = jax.jit(heldout)
    self.encode = jax.jit(functools.partial(model.apply, train=False, method="encode"))
    self.decode = jax.jit(functools.partial(model.apply, train=False, method="decode"))
    # WAE-MMD's estimator (config.mmd, in every config). Codes come in divided by sqrt(C),
    # so one compiled estimator serves every prior_var.
    self.mmd = jax.jit(functools.partial(mmd.mmd, kernel=c.mmd.kernel, c=1.0,
                                         scales=tuple(c.mmd.scales),
                                         block_size=c.mmd.block_size))

  def map(self, fn, variables, *arrays):
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


class Context:
  """One model at one step, as its evaluators see it.

  `options` carries what some evaluators need from outside: `cache_dir`,
  `classifier_steps`, `inception_params`. `sampler` draws the codes that samples decode
  (default: the prior).
  """

  def __init__(self, inference: Inference, variables, dataset: data.Dataset, rng: jax.Array,
               c: ml_collections.ConfigDict, num_samples: int,
               sampler: samplers.Sampler | None = None, **options: Any):
    self.inference, self.variables, self.dataset, self.c = inference, variables, dataset, c
    self.num_samples, self.options = num_samples, options
    self.sampler = sampler or samplers.get(samplers.PRIOR)(c.z_dim, c.prior_var)
    self._code_rng, self._prior_rng, self._sample_rng = jax.random.split(rng, 3)

  @functools.cached_property
  def heldout(self) -> tuple[np.ndarray, ...]:
    """(codes, weighted costs, squared L2 errors, reconstructions) of the held-out images."""
    test = self.dataset.test.images
    noise = np.asarray(jax.random.normal(self._code_rng, (len(test), self.c.z_dim)))
    return self.inference.map(self.inference.heldout, self.variables, test, noise)

  def heldout_mmd(self, folds: int = 10) -> tuple[float, float]:
    """MMD between the held-out codes and as many prior draws (the blocked estimator), and
    its standard error.

    The error is the spread of the estimate on `folds` disjoint folds over sqrt(folds): the
    U-statistic's variance falls as 1/n away from P_Z = Q_Z, so this is its standard error
    there, and an overestimate near zero (where it falls as 1/n^2) - which is what a reader
    needs to see that a small or negative value is noise.
    """
    codes = self.heldout[0]
    prior = np.sqrt(self.c.prior_var) * np.asarray(jax.random.normal(self._prior_rng,
                                                                     codes.shape))
    unit = np.sqrt(2.0 * self.c.z_dim * self.c.prior_var)
    x, y = jnp.asarray(codes / unit), jnp.asarray(prior / unit)
    size = len(codes) // folds
    per_fold = [float(self.inference.mmd(x[i * size:(i + 1) * size], y[i * size:(i + 1) * size]))
                for i in range(folds)] if size >= 2 else []
    se = float(np.std(per_fold, ddof=1) / np.sqrt(folds)) if per_fold else float("nan")
    return float(self.inference.mmd(x, y)), se

  @property
  def with_data(self) -> bool:
    """Whether to measure the real images too: once, under the prior; not again per sampler."""
    return self.sampler.name == samplers.PRIOR

  @functools.cached_property
  def samples(self) -> np.ndarray:
    """`num_samples` decoded draws of the sampler, in [0, 1]."""
    z = self.sampler.sample(self.num_samples, self._sample_rng)
    return self.inference.pixels.to_unit(self.inference.map(self.inference.decode,
                                                            self.variables, z))

  @functools.cached_property
  def real(self) -> np.ndarray:
    """The first `num_samples` held-out images, in [0, 1]."""
    pixels = self.inference.pixels
    return pixels.to_unit(np.asarray(pixels.to_float(self.dataset.test.images[
        :self.num_samples])))

  def pictures(self) -> dict[str, np.ndarray]:
    """The grids people look at: 64 samples, and held-out images beside their reconstructions."""
    shown = min(32, len(self.real))
    recons = self.inference.pixels.to_unit(self.heldout[3][:shown])
    pairs = np.stack([self.real[:shown], recons], axis=1)
    return {"samples": images.grid(self.samples[:64]),
            "reconstructions": images.grid(pairs.reshape((-1,) + pairs.shape[2:]))}


def run(names: tuple[str, ...], context: Context) -> tuple[dict[str, float], dict[str, Any]]:
  """The named evaluators' metrics, and the top-level metrics.json fields they return.

  Under a sampler other than the prior only the evaluators of samples run, and their
  metrics and protocols take per-sampler names (`domain_fid/gmm`); the rest does not
  depend on the sampler, and real images are measured once (`Context.with_data`).
  """
  sampler = context.sampler.name
  metrics, fields = {}, {}
  for name in names:
    evaluator = evaluators.get(name)
    if sampler != samplers.PRIOR and not evaluator.on_samples:
      continue
    for key, value in evaluator.fn(context).items():
      (fields if key in evaluator.fields else metrics)[evaluators.suffixed(key, sampler)] = value
  return metrics, fields
