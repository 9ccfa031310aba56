"""Sharpness: the paper's blurriness measure, of prior samples next to real images, on the
model's pixel range as the public code measures it (paper, CelebA: data 2e-2, WAE 6e-3,
VAE 3e-3)."""

import numpy as np

from wae_jax import evaluators
from wae_jax.evaluators.common import Context

# ITU-R 601 luma, as in tf.image.rgb_to_grayscale.
LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)


def sharpness(images: np.ndarray) -> np.ndarray:
  """Per-image variance of the 3x3 Laplacian (VALID) of the grey image; images in [0, 1]."""
  grey = images[..., 0] if images.shape[-1] == 1 else images @ LUMA
  lap = (grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:]
         - 4.0 * grey[:, 1:-1, 1:-1])
  return lap.reshape(len(lap), -1).var(axis=1)


@evaluators.register("sharpness", metrics=(
    evaluators.Metric("sharpness_mean", higher_is_better=True, data="sharpness_data",
                      per_sampler=True),
    evaluators.Metric("sharpness_min", higher_is_better=True, per_sampler=True),
    evaluators.Metric("sharpness_data", higher_is_better=None)))  # The reference.
def evaluate(context: Context):
  # The paper's convention: images in the model's range. The Laplacian is linear, so on
  # [-1, 1] (CelebA) the variance is 4x that on [0, 1].
  scale = 4.0 if context.inference.pixels.symmetric else 1.0
  sharp = scale * sharpness(context.samples)
  out = {"sharpness_mean": float(sharp.mean()), "sharpness_min": float(sharp.min())}
  if context.with_data:
    out["sharpness_data"] = scale * float(sharpness(context.real).mean())
  return out
