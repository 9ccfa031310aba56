"""Held-out metrics of a trained auto-encoder, and the picture grids people look at.

`evaluate` reports what the paper reports for a model: reconstruction cost on held-out
images, MMD(Q_Z, P_Z) between held-out codes and as many prior draws (the blocked estimator,
so the whole held-out set fits), and the sharpness of prior samples next to that of real
images (the paper's blurriness measure).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from wae_jax import data
from wae_jax import losses
from wae_jax import mmd

# ITU-R 601 luma, as in tf.image.rgb_to_grayscale.
LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)


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
               c: ml_collections.ConfigDict) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Held-out metrics of the trial configured by `c`, and its picture grids."""
    test = dataset.test.images
    code_rng, prior_rng, sample_rng = jax.random.split(rng, 3)
    noise = np.asarray(jax.random.normal(code_rng, (len(test), c.z_dim)))
    codes, costs, sq_l2, recons = self._map(self._heldout, variables, test, noise)
    prior = np.sqrt(c.prior_var) * np.asarray(jax.random.normal(prior_rng, codes.shape))
    z = np.sqrt(c.prior_var) * np.asarray(
        jax.random.normal(sample_rng, (c.eval.num_samples, c.z_dim)))
    samples = to_unit(self._map(self._decode, variables, z), self.symmetric)
    real = to_unit(np.asarray(data.to_float(test[:c.eval.num_samples], self.symmetric)),
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
    pairs = np.stack([real[:32], to_unit(recons[:32], self.symmetric)], axis=1)
    images = {"samples": image_grid(samples[:64]),
              "reconstructions": image_grid(pairs.reshape((-1,) + pairs.shape[2:]))}
    return metrics, images


def variables_of(state: Any) -> dict[str, Any]:
  """The auto-encoder's flax variables from a train state."""
  return {"params": state.params, "batch_stats": state.batch_stats}
