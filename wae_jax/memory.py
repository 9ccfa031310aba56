"""A trial's need of device memory, checked before it writes anything.

Estimated from shapes alone (`jax.eval_shape`: nothing is computed or allocated): the train
state (parameters, optimizer and regulariser states) with its gradients, the layer outputs
a training step keeps for its backward pass, and the largest layer of the evaluation
batch's forward pass. Against what a device has free: `memory_stats()` where the backend
reports it (GPU, TPU), on CPU the host's available memory shared by its devices. The
estimate is rough and low: XLA:CPU's own count of the compiled programs' temporaries
(`memory_analysis`) is 2.4x its activations for both MNIST nets, but compiling them takes
seconds to tens of seconds a trial. So it refuses what cannot fit (an evaluation batch of
73 GiB, a net whose kernels alone fill the device); a config within that factor of the
limit may still run out.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from typing import Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from wae_jax import data
from wae_jax import models
from wae_jax import state as state_lib
from wae_jax.errors import ConfigError

GIB = 1 << 30


def device_bytes() -> int | None:
  """Bytes a local device has free for a trial (None when the backend does not say)."""
  try:
    stats = jax.local_devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except  # Backends without it raise or say None.
    stats = None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
  host = _host_available()
  return None if host is None else host // jax.local_device_count()


def _host_available() -> int | None:
  """The host's available memory (Linux's MemAvailable, else free pages)."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    return None


@dataclasses.dataclass(frozen=True)
class Need:
  """Bytes a device holds for a pack of `k` trials."""
  state: int  # The stacked train states and their gradients.
  train_example: int  # Kept by a training step per example of the per-device batch, all k.
  eval_example: int  # Per example of the per-device evaluation batch (one trial at a time).

  def total(self, train_batch: int, eval_batch: int) -> int:
    """Training and evaluation take turns; the state stays."""
    return self.state + max(self.train_example * train_batch, self.eval_example * eval_batch)


def _nbytes(tree) -> int:
  return sum(math.prod(a.shape) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree))


def need(c: ml_collections.ConfigDict, ds: data.Dataset, mesh: Mesh, k: int = 1,
         state: state_lib.TrainState | None = None) -> Need:
  """What a pack of `k` trials of `c`'s shapes needs of each device, from shapes alone
  (`state`: `c`'s `state.abstract_state`, where the caller has it)."""
  state = state_lib.abstract_state(c, ds, mesh) if state is None else state
  model = models.build(c, ds.image_shape, ds.symmetric)

  def outputs(variables, train: bool):
    """The shapes of every layer's output for one example."""
    x = jnp.zeros((1,) + tuple(ds.image_shape), jnp.float32)
    _, kept = model.apply(variables, x, jnp.zeros((1, c.z_dim)), train=train,
                          capture_intermediates=True, mutable=["intermediates", "batch_stats"])
    return jax.tree.leaves(flax.core.unfreeze(kept)["intermediates"])

  train = jax.eval_shape(functools.partial(outputs, train=True), state.variables)
  evaluate = jax.eval_shape(functools.partial(outputs, train=False), state.variables)
  image = math.prod(ds.image_shape) * 4
  # Backward: every output kept, and the gradient of the largest in flight. Evaluation: the
  # largest layer's input and output, with the images and their reconstructions.
  train_example = _nbytes(train) + max(map(_nbytes, train))
  eval_example = 2 * max(map(_nbytes, evaluate)) + 2 * image
  return Need(k * (_nbytes(state) + _nbytes(state.params)), k * train_example, eval_example)


def _gib(n: int) -> str:
  return f"{n / GIB:.3g}" if n < 1000 * GIB else f"{n / GIB:,.0f}"


def _per_device(n: int, mesh: Mesh) -> int:
  return -(-n // mesh.size)


def check(configs: list[ml_collections.ConfigDict], ds: data.Dataset, mesh: Mesh,
          state: state_lib.TrainState | None = None, free: int | None = None) -> None:
  """Refuses (ConfigError, one line naming the field and what would fit) a pack whose
  estimated need exceeds a device's `free` bytes (default `device_bytes()`)."""
  free = device_bytes() if free is None else free
  c = configs[0]
  if free is None:
    return
  n = need(c, ds, mesh, len(configs), state)
  train_batch = _per_device(c.batch_size, mesh)
  eval_batch = _per_device(c.eval.batch_size, mesh)
  total = n.total(train_batch, eval_batch)
  if total <= free:
    return
  has = f"needs ~{_gib(total)} GiB per device, devices have {_gib(free)} GiB"
  room = free - n.state
  if n.train_example * train_batch >= n.eval_example * eval_batch:
    field, value, fits = "batch_size", c.batch_size, room // max(n.train_example, 1)
  else:
    field, value, fits = "eval.batch_size", c.eval.batch_size, room // max(n.eval_example, 1)
  fits = fits * mesh.size
  if field == "batch_size":
    fits -= fits % mesh.size  # It must divide over the devices.
  if fits >= 1:
    raise ConfigError(f"config.{field}={value}: {has}; at most {fits} fits")
  width = _widest(configs, ds, mesh, free, train_batch, eval_batch)
  raise ConfigError(f"config.model.width={c.model.width}: {has} (the parameters and optimizer "
                    f"state alone ~{_gib(n.state)} GiB); "
                    + (f"at most model.width={width:g} fits" if width else "no width fits"))


def _widest(configs, ds, mesh, free, train_batch, eval_batch) -> float:
  """The widest net that fits at these batch sizes, to within 4%, rounded down to two
  digits: a bisection over 12 octaves below the config's width, in 8 steps (0: none fits)."""
  low, high = math.log2(configs[0].model.width) - 12, math.log2(configs[0].model.width)
  found = False
  for _ in range(8):
    mid = (low + high) / 2
    c = configs[0].copy_and_resolve_references()
    c.model.width = 2 ** mid
    if need(c, ds, mesh, len(configs)).total(train_batch, eval_batch) <= free:
      low, found = mid, True
    else:
      high = mid
  if not found:
    return 0.0
  unit = 10 ** (math.floor(low * math.log10(2)) - 1)
  return math.floor(2 ** low / unit) * unit


def check_trials(configs: Mapping[str, ml_collections.ConfigDict]) -> str | None:
  """Each distinct shape among `configs` (by trial id) against this host's devices: the
  first refusal, as one line naming its trial, or None. `study.check_memory` runs it in a
  process of its own before a sweep's first trial: it initialises JAX, and its exit hands
  the devices back to the trainers."""
  from wae_jax import pack  # pylint: disable=g-import-not-at-top  # The shapes' signature.
  mesh = Mesh(np.array(jax.devices()), ("data",))
  datasets, seen = {}, set()
  for tid, c in configs.items():
    key = json.dumps({**pack.signature(c), "eval.batch_size": c.eval.batch_size},
                     sort_keys=True, default=str)
    if key in seen:
      continue
    seen.add(key)
    where = (c.data.source, c.data.heldout)
    try:
      if where not in datasets:
        datasets[where] = data.load(*where)
      check([c], datasets[where], mesh)
    except ConfigError as e:
      return f"trial {tid}: {str(e).splitlines()[0]}"
  return None
