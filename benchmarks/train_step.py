r"""Throughput of the jitted, sharded WAE-MMD training step: images/s and achieved GFLOP/s.

  python benchmarks/train_step.py [--widths 1.0,0.0625] [--batch 100] [--steps 5]

FLOPs are counted from the nets' layer shapes (multiply-adds x 2), forward x 3 for forward +
backward (the input and weight gradients each cost about one forward); transposed convs count
only their useful work (input pixels x kernel), not the zeros XLA may dilate them with.
One JSON line per width.
"""

import argparse
import json
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import models
from wae_jax import pack


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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="mnist_wae_mmd")
  parser.add_argument("--widths", default="1.0,0.0625")
  parser.add_argument("--batch", type=int, default=100)
  parser.add_argument("--steps", type=int, default=5, help="timed steps per width")
  args = parser.parse_args()
  mesh = Mesh(np.array(jax.devices()), ("data",))
  image_shape = (28, 28, 1)
  for width in map(float, args.widths.split(",")):
    c = config_lib.load(args.config)
    c.model.width, c.batch_size = width, args.batch
    config_lib.validate(c, jax.device_count())
    # One trial: the packed step with K = 1, exactly what `wae-train` runs.
    _, state, step = pack.setup([c], data.load("bundled:mnist", 1000), mesh)
    batch = jax.device_put(
        np.random.default_rng(0).integers(0, 256, (1, args.batch) + image_shape, np.uint8),
        NamedSharding(mesh, P(None, "data")))
    keys = jax.random.key(0)[None]
    for _ in range(2):  # Compile and warm up.
      state, metrics = step(state, batch, keys)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(args.steps):
      t = time.perf_counter()
      state, metrics = step(state, batch, keys)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - t)
    seconds = float(np.median(times))
    flops = 3 * dcgan_forward_flops(c, image_shape) * args.batch
    print(json.dumps({
        "bench": "train_step", "config": args.config, "width": width, "batch": args.batch,
        "devices": jax.device_count(), "platform": jax.devices()[0].platform,
        "step_s": round(seconds, 4), "images_per_s": round(args.batch / seconds, 1),
        "gflop_per_step": round(flops / 1e9, 2), "gflop_per_s": round(flops / seconds / 1e9, 1),
    }), flush=True)


if __name__ == "__main__":
  main()
