"""A trained trial as a Python object: `wae_jax.load(workdir)`.

    model = wae_jax.load("/tmp/wae")         # or gs://..., trained on any number of devices
    x = model.sample(16, seed=0)             # (16, H, W, C) floats in [0, 1]
    x = model.sample(16, sampler="gmm")      # from a mixture fitted on the training codes
    z = model.encode(images)                 # uint8, or floats in [0, 1]
    x_hat = model.reconstruct(images)

The latest checkpoint is restored onto this process's devices, laid out as its own metadata
says (the config's shapes alone, no dataset read), so a run trained on a TPU pod loads on a
laptop. Work goes through the evaluators' jitted, batched inference.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from absl import logging
from etils import epath
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import orbax.checkpoint as ocp

from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import errors
from wae_jax import models
from wae_jax import noise
from wae_jax import samplers
from wae_jax import state as state_lib
from wae_jax import workdir as workdir_lib
from wae_jax.errors import TrialError
from wae_jax.evaluators import common


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """An auto-encoder at one checkpoint. Images go in as uint8 or as floats in [0, 1], and
  come out as float32 in [0, 1], shaped (N, H, W, C); codes are (N, z_dim)."""
  config: ml_collections.ConfigDict
  step: int
  variables: Any
  inference: common.Inference
  workdir: epath.Path | None = None  # Where fitted samplers are kept (None: not kept).

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return data.parse_source(self.config.data.source).image_shape

  def sample(self, n: int, seed: int = 0, sampler: str = samplers.PRIOR,
             refit: bool = False) -> np.ndarray:
    """Decoded draws of the latent sampler `sampler` (`samplers.names()`; the prior
    N(0, prior_var I) by default), fitted on first use (or again, `refit`)."""
    return self.decode(self.sampler(sampler, refit).sample(n, jax.random.key(seed)))

  def sampler(self, name: str, refit: bool = False) -> samplers.Sampler:
    """The latent sampler `name` of this checkpoint: read from the trial directory where it
    was fitted before, else fitted on the training split's codes and saved there."""
    return samplers.fitted(name, z_dim=self.config.z_dim, prior_var=self.config.prior_var,
                           workdir=self.workdir, step=self.step, codes=self.training_codes,
                           refit=refit)

  def training_codes(self) -> np.ndarray:
    """The codes of the training split (what the auto-encoder was trained on)."""
    c = self.config
    return self.encode(data.load(c.data.source, c.data.heldout).train.images)

  def encode(self, images: np.ndarray) -> np.ndarray:
    """The codes (for a Gaussian encoder, its means)."""
    x = self._model_range(images)
    return self.inference.map(self.inference.encode, self.variables, x)[0]

  def decode(self, codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes, np.float32)
    if codes.ndim != 2 or codes.shape[1] != self.config.z_dim:
      raise ValueError(f"codes must be (N, {self.config.z_dim}), got {codes.shape}")
    return self.inference.pixels.to_unit(self.inference.map(self.inference.decode,
                                                            self.variables, codes))

  def reconstruct(self, images: np.ndarray) -> np.ndarray:
    return self.decode(self.encode(images))

  def _model_range(self, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3 and self.image_shape[-1] == 1:
      images = images[..., None]
    if images.shape[1:] != tuple(self.image_shape):
      raise ValueError(f"images must be (N, {', '.join(map(str, self.image_shape))}), "
                       f"got {images.shape}")
    if images.dtype == np.uint8:
      return np.asarray(self.inference.pixels.to_float(images))
    unit = images.astype(np.float32)
    return 2.0 * unit - 1.0 if self.inference.pixels.symmetric else unit


def load(workdir: epath.PathLike, step: int | None = None) -> TrainedModel:
  """The trial in `workdir` (local or gs://) at `step` (default: its newest checkpoint that
  restores, as the trainer falls back: a damaged newest one is named in one warning, and
  left where it is, since a reader does not own the directory).

  Raises TrialError, in one line, for a directory that holds no trial or no checkpoint that
  restores, or no checkpoint at `step`.
  """
  workdir = epath.Path(workdir)
  if not workdir.is_dir():
    raise TrialError(f"no trial directory {workdir}")
  try:
    c = config_lib.read(workdir)
  except config_lib.ConfigError as e:
    raise TrialError(str(e)) from None
  if c is None:
    raise TrialError(f"{workdir} has no {workdir_lib.CONFIG}: not a trial directory")
  manager = state_lib.checkpoint_manager(workdir, c)
  steps = sorted(manager.all_steps())
  if not steps:
    raise TrialError(f"{workdir} has no checkpoint")
  if step is not None and step not in steps:
    raise TrialError(f"{workdir} has no checkpoint at step {step} (it has "
                     f"{', '.join(map(str, steps))})")
  source = data.parse_source(c.data.source)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  replicated = NamedSharding(mesh, P())
  failures = []
  noise.quiet()  # Before: a failing read's noise can come before its exception.
  for tried in [step] if step is not None else reversed(steps):
    try:
      target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=replicated),
                            manager.item_metadata(tried))
      saved = manager.restore(tried, args=ocp.args.StandardRestore(target))
      break
    except Exception as e:  # pylint: disable=broad-except  # Orbax and TensorStore raise many.
      failures.append(f"step {tried}: {type(e).__name__}: {errors.first_line(e)[:200]}")
      logging.warning("The checkpoint at step %d of %s does not restore (%s); trying the one "
                      "before.", tried, workdir, failures[-1])
  else:
    raise TrialError(f"no checkpoint of {workdir} restores ({'; '.join(failures)})")
  step = tried
  model = models.build(c, source.image_shape, source.pixels.symmetric)
  return TrainedModel(c, step, {"params": saved["params"], "batch_stats": saved["batch_stats"]},
                      common.Inference(c, model, mesh, source.pixels), workdir)
