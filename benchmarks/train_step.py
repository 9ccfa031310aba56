r"""Training throughput as the loop runs it: steps/s, trials/hour, GFLOP/s against the
matmul bound, and the host's share of the time, by steps per dispatch N and pack size K.

  python benchmarks/train_step.py [--nets tiny,debug] [--dispatch before,1,10,100]
                                  [--packs 1,8] [--rounds 2] [--steps 200] [--precision P]

Each row times `--steps` training steps the way `loop.py` takes them: the host builds a
dispatch's feed (`feed.Feeder`, the training set resident on the devices) and calls the
jitted loop of `pack.setup`, which runs N steps of K trials. `before` is the loop as it was
until N steps per dispatch: one jitted step per Python iteration, its K batches gathered on
the host (`np.stack` of indexed images) and placed on the mesh. `--dispatch before` alone
also runs against a checkout from before that change (`PYTHONPATH=<checkout>`), which is how
today's loop is compared with that one. Every variant is compiled first, then all are timed
in turn, --rounds times (A B A B); the row is the median round.

host_share: the part of the wall time the host spent building feeds and dispatching (the
rest it waited for the devices); near 1 means the chip idles. GFLOP/s counts the nets'
multiply-adds (forward x 3 for the backward); `of_bound` divides it by the measured rate of
one large fp32 matmul on the same devices. trials/hour is for trials of the config's
num_steps. Nets: `tiny` (width 1/64, batch 32: the host-bound case), `debug` (the :debug
preset) and `paper` (full width, batch 100). One JSON line per row.
"""

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import models
from wae_jax import pack
from wae_jax import state as state_lib

NETS = {"tiny": ("mnist_wae_mmd:debug", {"model.width": 1 / 64, "batch_size": 32}),
        "debug": ("mnist_wae_mmd:debug", {}),
        "paper": ("mnist_wae_mmd", {"data.source": "bundled:mnist", "data.heldout": 1000})}


def dcgan_forward_flops(c, image_shape) -> int:
  """Multiply-add FLOPs of one image through the DCGAN encoder and decoder."""
  h, w, ch = image_shape
  k2 = c.model.kernel_size ** 2
  flops, size, cin = 0, (h, w), ch
  for i in range(c.model.enc_layers):
    size = (-(-size[0] // 2), -(-size[1] // 2))
    cout = models.channels(c.model.width, i, c.model.enc_layers)
    flops += 2 * k2 * cin * cout * size[0] * size[1]
    cin = cout
  flops += 2 * size[0] * size[1] * cin * c.z_dim
  layers = c.model.dec_layers
  f = 2 ** (layers - 1)
  size, cin = (h // f, w // f), models.channels(c.model.width, layers - 1, layers)
  flops += 2 * c.z_dim * size[0] * size[1] * cin
  for i in range(layers - 1):
    cout = models.channels(c.model.width, layers - 2 - i, layers)
    flops += 2 * k2 * cin * cout * size[0] * size[1]  # Each input pixel meets the kernel once.
    size, cin = (size[0] * 2, size[1] * 2), cout
  flops += 2 * k2 * cin * ch * size[0] * size[1]
  return flops


def matmul_bound_gflops(n: int) -> float:
  """fp32 GFLOP/s of one large jitted n x n matmul (at the default matmul precision): what
  the devices can do at best. n = 2048 fills a CPU; a GPU needs 8192."""
  a = jnp.ones((n, n), jnp.float32)
  mm = jax.jit(lambda a: a @ a)
  jax.block_until_ready(mm(a))
  times = []
  for _ in range(5):
    start = time.perf_counter()
    jax.block_until_ready(mm(a))
    times.append(time.perf_counter() - start)
  return 2 * n ** 3 / statistics.median(times) / 1e9


def configs_for(net: str, k: int, n: int | None) -> list:
  """K trials of `net` that differ in seed and lambda, N steps a dispatch (None: leaves the
  field alone, for checkouts that predate it)."""
  name, overrides = NETS[net]
  configs = []
  for i in range(k):
    c = config_lib.load(name)
    c.update_from_flattened_dict({**overrides, **({"steps_per_dispatch": n} if n else {})})
    c.batch_size -= c.batch_size % jax.device_count()
    c.seed, c.lam = i, c.lam * (1 + i)
    configs.append(c)
  return configs


class Dispatched:
  """The loop's way: N steps of K trials per dispatch, batches gathered on the device."""

  def __init__(self, configs, ds, mesh):
    from wae_jax import feed as feed_lib  # pylint: disable=g-import-not-at-top  # See --dispatch.

    self.configs = configs
    _, states, self.run = pack.setup(configs, ds, mesh)
    self.states = jax.device_put(states, NamedSharding(mesh, P()))
    self.feeder = feed_lib.Feeder(configs, ds.train.images, mesh, configs[0].steps_per_dispatch)
    self.keys = jnp.stack([state_lib.trial_keys(c)[0] for c in configs])
    self.step = 0

  def steps(self, total: int) -> float:
    """Runs `total` steps; returns the host's seconds."""
    host, end = 0.0, self.step + total
    while self.step < end:
      start = time.perf_counter()
      n = min(self.feeder.n_max, end - self.step)
      self.states, metrics = self.run(self.states, self.feeder(self.step, n), self.keys, n)
      self.step += n
      host += time.perf_counter() - start
    jax.block_until_ready(metrics)
    return host


class Before:
  """The loop before N steps per dispatch: one jitted step an iteration, host batches."""

  def __init__(self, configs, ds, mesh):
    _, step, init = pack.single(configs[0], ds, mesh)
    replicated = NamedSharding(mesh, P())

    def packed_step(states, batches, keys):
      rngs = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, states.step[0])
      return jax.vmap(step)(states, batches, rngs)

    self.run = jax.jit(packed_step, donate_argnums=0, out_shardings=(replicated, replicated))
    self.states = jax.device_put(state_lib.stack([init(c) for c in configs]), replicated)
    self.configs, self.images = configs, ds.train.images
    self.keys = jnp.stack([state_lib.trial_keys(c)[0] for c in configs])
    self.sharding = NamedSharding(mesh, P(None, "data"))
    self.step = 0

  def steps(self, total: int) -> float:
    host = 0.0
    for _ in range(total):
      start = time.perf_counter()
      batch = np.stack([self.images[data.batch_indices(len(self.images), c.batch_size, c.seed,
                                                         self.step)] for c in self.configs])
      self.states, metrics = self.run(self.states, data.place(batch, self.sharding, axis=1),
                                      self.keys)
      self.step += 1
      host += time.perf_counter() - start
    jax.block_until_ready(metrics)
    return host


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--nets", default="tiny,debug", help=f"of {', '.join(NETS)}")
  parser.add_argument("--dispatch", default="before,1,10,100", help="values of N, or before")
  parser.add_argument("--packs", default="1,8", help="values of K")
  parser.add_argument("--steps", type=int, default=200, help="timed steps per row and round")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--precision", default=None,
                      help="jax_default_matmul_precision for the nets and the bound alike "
                           "(e.g. tensorfloat32 on NVIDIA; unset: the backend's default)")
  args = parser.parse_args()
  if args.precision:
    jax.config.update("jax_default_matmul_precision", args.precision)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  ds = data.load("bundled:mnist", 1000)
  bound = matmul_bound_gflops(2048 if jax.default_backend() == "cpu" else 8192)
  common = {"bench": "train_step", "devices": jax.device_count(),
            "platform": jax.devices()[0].platform, "device_kind": jax.devices()[0].device_kind,
            "precision": args.precision or "default", "matmul_bound_gflops": round(bound, 1),
            "load_before": os.getloadavg()[0]}
  for net in args.nets.split(","):
    variants = {}
    for k in map(int, args.packs.split(",")):
      for n in args.dispatch.split(","):
        if n == "before":
          variants[(n, k)] = Before(configs_for(net, k, None), ds, mesh)
        else:
          variants[(int(n), k)] = Dispatched(configs_for(net, k, int(n)), ds, mesh)
    for v in variants.values():
      v.steps(max(2, min(args.steps, 100)))  # Compiles, and warms up.
    times = {key: [] for key in variants}
    for _ in range(args.rounds):
      for key, v in variants.items():
        start = time.perf_counter()
        host = v.steps(args.steps)
        times[key].append((time.perf_counter() - start, host))
    for (n, k), rounds in times.items():
      wall, host = sorted(rounds)[len(rounds) // 2]
      c = variants[(n, k)].configs[0]
      flops = 3 * dcgan_forward_flops(c, ds.image_shape) * c.batch_size * k * args.steps
      print(json.dumps({
          **common, "net": net, "width": c.model.width, "batch": c.batch_size,
          "steps_per_dispatch": n, "k": k, "steps_per_s": round(args.steps / wall, 2),
          "images_per_s": round(args.steps * k * c.batch_size / wall, 1),
          "trials_per_hour": float(f"{3600 * args.steps / wall * k / c.num_steps:.4g}"),
          "gflop_per_s": round(flops / wall / 1e9, 2),
          "of_bound": round(flops / wall / 1e9 / bound, 3),
          "host_share": round(host / wall, 3), "load_after": os.getloadavg()[0],
      }), flush=True)


if __name__ == "__main__":
  main()
