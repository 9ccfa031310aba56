r"""Trials per hour when K trials train as one program (`pack.setup`), by K.

  python benchmarks/packing.py [--quick] [--nets debug,paper] [--packs 1,2,4] [--steps 5]

For each net and K: the steady-state time of one packed step (the median of --steps timed
steps after --warmup), and trials/hour = 3600 / (step_s * num_steps / K) for trials of the
config's num_steps; `speedup` is that over K = 1's, i.e. over the same trials trained one
after another. The input pipeline is left out (one dispatch's feed, reused).
`benchmarks/train_step.py` times packs with several steps per dispatch.

Variant `pack` is `pack.setup`'s program, one step a dispatch: for K > 1 the K trials'
step vmapped over their stacked states, on every platform (K = 1 runs the step unvmapped).
On XLA:CPU vmapping a convolution over per-trial weights makes one grouped convolution
(feature_group_count = K), which can run slower per FLOP than K plain ones; the controls say
how much of a result that explains: `loop`, the K trials' steps unrolled one after another
in one jitted program (XLA may run them side by side; K copies to compile), and `conv`, one
convolution of the net (forward and backward) vmapped against K separate ones.

Defaults: the debug net at K in {1, 2, 4, 8, 16}; the paper net (1024 channels, batch 100,
or 96 over 8 devices) only at K in {1, 2, 4} with 3 timed steps, as it takes seconds a
step on a 2-core CPU. --quick: the debug net, K in {1, 4}, 3 steps. One JSON line each.
"""

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import feed as feed_lib
from wae_jax import models
from wae_jax import pack
from wae_jax import state as state_lib

NETS = {"debug": "mnist_wae_mmd:debug", "paper": "mnist_wae_mmd"}
PACKS = {"debug": (1, 2, 4, 8, 16), "paper": (1, 2, 4)}
STEPS = {"debug": 10, "paper": 3}
DATA = "bundled:mnist"  # Only its shapes matter: batches are random.
IMAGE_SHAPE = (28, 28, 1)


def configs_for(net: str, k: int) -> list:
  """K trials of `net` that differ in seed and lambda; the batch divides over the devices."""
  configs = []
  for i in range(k):
    c = config_lib.load(NETS[net])
    c.batch_size -= c.batch_size % jax.device_count()
    c.seed, c.lam = i, c.lam * (1 + i)
    configs.append(c)
  return configs


def looped(configs, ds, mesh):
  """The control: the K trials' steps one after another in one jitted program."""
  _, step, _ = pack.single(configs[0], ds, mesh)

  def run(states, batches, keys):
    outs = [step(state_lib.unstack(states, i), batches[i],
                 jax.random.fold_in(keys[i], states.step[i])) for i in range(len(configs))]
    return state_lib.stack([s for s, _ in outs]), state_lib.stack([m for _, m in outs])

  replicated = NamedSharding(mesh, P())
  return jax.jit(run, donate_argnums=0,
                 in_shardings=(replicated, NamedSharding(mesh, P(None, "data")), replicated),
                 out_shardings=(replicated, replicated))


def time_calls(fn, args, update, warmup: int, steps: int) -> tuple[float, float]:
  """(seconds of the first call, median seconds of `steps` calls after `warmup`)."""
  times = []
  for _ in range(warmup + steps):
    start = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    times.append(time.perf_counter() - start)
    args = update(args, out)
  return times[0], statistics.median(times[warmup:])


def bench_step(net: str, k: int, variant: str, mesh, warmup: int, steps: int) -> dict:
  configs = configs_for(net, k)
  c = configs[0]
  ds = data.load(DATA, 1000)
  _, states, run = pack.setup(configs, ds, mesh)
  keys = jnp.stack([jax.random.key(ck.seed) for ck in configs])
  if variant == "loop":
    step_fn = looped(configs, ds, mesh)
    batches = jax.device_put(
        np.random.default_rng(0).integers(0, 256, (k, c.batch_size) + IMAGE_SHAPE, np.uint8),
        NamedSharding(mesh, P(None, "data")))
    args = (states, batches, keys)
  else:  # The loop's program, one step a dispatch.
    step_fn = lambda states, feed, keys: run(states, feed, keys, 1)
    args = (states, feed_lib.Feeder(configs, ds.train.images, mesh, 1)(0, 1), keys)
  first_s, step_s = time_calls(step_fn, args, lambda args, out: (out[0],) + args[1:], warmup,
                               steps)
  return {"config": NETS[net], "width": c.model.width, "batch": c.batch_size,
          "variant": variant, "k": k, "first_call_s": round(first_s, 2),
          "step_s": round(step_s, 4), "steps_per_s": round(1 / step_s, 3),
          "trial_steps_per_s": round(k / step_s, 3), "num_steps": c.num_steps,
          "trials_per_hour": float(f"{3600 / (step_s * c.num_steps / k):.4g}")}


def bench_conv(net: str, k: int, warmup: int, steps: int) -> dict:
  """Forward and backward of the encoder's second conv: vmapped over K vs K separate."""
  c = configs_for(net, 1)[0]
  cin, cout = (models.channels(c.model.width, i, c.model.enc_layers) for i in (0, 1))
  side = IMAGE_SHAPE[0] // 2
  conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 2), "SAME",
                                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
  grads = jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1))
  x = jax.random.normal(jax.random.key(0), (k, c.batch_size, side, side, cin))
  w = jax.random.normal(jax.random.key(1), (k, c.model.kernel_size, c.model.kernel_size,
                                            cin, cout))
  separate = jax.jit(lambda x, w: [grads(x[i], w[i]) for i in range(k)])
  times = {name: time_calls(fn, (x, w), lambda args, out: args, warmup, steps)[1]
           for name, fn in (("separate", separate), ("vmap", jax.jit(jax.vmap(grads))))}
  return {"config": NETS[net], "variant": "conv", "k": k,
          "layer": f"{side}x{side}x{cin}->{side // 2}x{side // 2}x{cout}",
          "batch": c.batch_size, "separate_s": round(times["separate"], 5),
          "vmap_s": round(times["vmap"], 5),
          "vmap_over_separate": round(times["vmap"] / times["separate"], 2)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--nets", default="debug,paper", help=f"of {', '.join(NETS)}")
  parser.add_argument("--packs", default=None,
                      help="K values, e.g. 1,2,4 (default: 1,2,4,8,16 debug; 1,2,4 paper)")
  parser.add_argument("--variants", default="pack,loop,conv", help="of pack, loop, conv")
  parser.add_argument("--steps", type=int, default=None,
                      help="timed steps per K (default: 10 debug, 3 paper)")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compiles)")
  parser.add_argument("--quick", action="store_true", help="debug net, K in {1, 4}, 3 steps")
  args = parser.parse_args()
  if args.quick:
    args.nets, args.packs, args.steps = "debug", args.packs or "1,4", args.steps or 3
  mesh = Mesh(np.array(jax.devices()), ("data",))
  common = {"bench": "packing", "devices": jax.device_count(),
            "platform": jax.devices()[0].platform}
  variants = args.variants.split(",")
  for net in args.nets.split(","):
    packs = [int(k) for k in args.packs.split(",")] if args.packs else PACKS[net]
    steps = args.steps or STEPS[net]
    alone = None  # Trials/hour of K = 1: the same trials one after another.
    for k in packs:
      for variant in ("pack", "loop"):
        if variant not in variants or (variant == "loop" and k == 1):
          continue  # At K = 1 the loop is the packed step.
        row = bench_step(net, k, variant, mesh, args.warmup, steps)
        if k == 1:
          alone = row["trials_per_hour"]
        if alone:
          row["speedup"] = round(row["trials_per_hour"] / alone, 2)
        print(json.dumps({**common, **row}), flush=True)
      if "conv" in variants and k > 1:
        print(json.dumps({**common, **bench_conv(net, k, args.warmup, steps)}), flush=True)


if __name__ == "__main__":
  main()
