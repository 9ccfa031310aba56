"""How a dispatch's batches reach the devices: gathered there, or streamed from the host.

A dispatch runs N steps of K trials (`pack.setup`), so it needs N x K batches. When the
training set fits (`config.data.device_max_mb`) it lives on every device and only the batch
indices travel, N x K x batch int32s; the gather happens inside the compiled loop. A larger
one is gathered on the host and sent as images. Either way the batches are the same uint8
arrays, chosen by `data.batch_indices(seed, step)`, so neither N nor the feed changes a
trial's numbers (beyond float rounding). Dispatch is asynchronous, and the loop asks for the
next dispatch's feed (`Feeder.prefetch`) as soon as it has sent this one, so a thread builds
it (indices, or gathered and sent images) while the devices run and the hooks wait on them.
"""

from __future__ import annotations

import concurrent.futures

import flax
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from wae_jax import data


@flax.struct.dataclass
class Resident:
  """The training set on every device, and the dispatch's batch indices into it."""
  images: jax.Array  # (n, H, W, C) uint8, replicated.
  indices: jax.Array  # (N, K, batch) int32, sharded on the batch axis.

  @property
  def steps(self) -> int:
    return self.indices.shape[0]

  def batches(self, i: jax.Array) -> jax.Array:
    """The K batches of the dispatch's step i: (K, batch, H, W, C)."""
    return self.images[self.indices[i]]


@flax.struct.dataclass
class Streamed:
  """The dispatch's batches themselves, gathered on the host."""
  images: jax.Array  # (N, K, batch, H, W, C) uint8, sharded on the batch axis.

  @property
  def steps(self) -> int:
    return self.images.shape[0]

  def batches(self, i: jax.Array) -> jax.Array:
    return self.images[i]


class Feeder:
  """Builds each dispatch's feed for a pack of trials: `feeder(step, n)` covers steps
  step+1 .. step+n; a dispatch of fewer than N steps pads its feed to N."""

  def __init__(self, configs: list[ml_collections.ConfigDict], images: np.ndarray,
               mesh: Mesh, steps_per_dispatch: int):
    c = configs[0]
    self.images, self.n_max = images, steps_per_dispatch
    self.seeds = [ck.seed for ck in configs]
    self.batch_size = c.batch_size
    self.resident = images.nbytes <= c.data.device_max_mb * 2**20
    self.sharding = NamedSharding(mesh, P(None, None, "data"))
    self._pool, self._next = None, (None, None)
    if self.resident:
      self.on_device = jax.make_array_from_process_local_data(NamedSharding(mesh, P()), images)

  def indices(self, step: int, n: int) -> np.ndarray:
    """(N, K, batch) indices of steps step+1 .. step+n; the padding repeats the last step's."""
    steps = [*range(step, step + n), *[step + n - 1] * (self.n_max - n)]
    # Trial by trial: each epoch's permutation is drawn once (data.batch_indices caches few).
    per_trial = [[data.batch_indices(len(self.images), self.batch_size, seed, s) for s in steps]
                 for seed in self.seeds]
    return np.asarray(per_trial, np.int32).transpose(1, 0, 2)

  def prefetch(self, step: int, n: int) -> None:
    """Starts building `self(step, n)` on a background thread."""
    if self._pool is None:
      self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="feed")
    self._next = (step, n), self._pool.submit(self._build, step, n)

  def __call__(self, step: int, n: int) -> Resident | Streamed:
    """The feed of steps step+1 .. step+n: the prefetched one if it was asked for."""
    (key, future), self._next = self._next, (None, None)
    if key == (step, n):
      return future.result()
    return self._build(step, n)

  def _build(self, step: int, n: int) -> Resident | Streamed:
    indices = self.indices(step, n)
    if self.resident:
      return Resident(self.on_device, data.place(indices, self.sharding, axis=2))
    return Streamed(data.place(self.images[indices], self.sharding, axis=2))
