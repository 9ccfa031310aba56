"""The random-feature MMD (RF-WAE's penalty) against the blocked exact estimator (wae_jax/mmd.py).

  python benchmarks/rf_mmd.py bias             # 1,000 estimates at m = 1,000 per IMQ width
  python benchmarks/rf_mmd.py speed [--sizes=4096,16384,65536] [--reps=3]

`bias`: the mean of 1,000 estimates (fresh features each) against the exact U-statistic on
the same codes and prior draws, in standard errors of that mean, for each of the 7 widths
alone and for their sum. `speed`: one training step's work on the penalty (value and
gradient w.r.t. the codes) at m codes and m prior draws, d_z = 8, exact and RF interleaved
A B A B, median seconds; memory is XLA's buffer plan for the compiled step (temporaries plus
arguments and outputs); each is compiled ahead of the timed calls. An exact step too slow
for --max_exact_s at the next size is not run there: the report says so. One JSON line per result.
"""

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from wae_jax import mmd
from wae_jax.regularisers import random_features

D = 8
V = 1.0 / (2 * D)  # The prior's variance in units of sqrt(C), C = 2 d_z prior_var.


def _data(m, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(m, D)) * np.sqrt(1.3 * V) + 0.1 * np.sqrt(V)  # Codes off the prior.
  y = rng.normal(size=(m, D)) * np.sqrt(V)
  return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)


def _rf(x, y, key, scales, num_features, closed):
  w = random_features.frequencies(key, D, kernel="imq", scales=scales, num_features=num_features)
  return random_features.rf_mmd(x, None if closed else y, w, num_scales=len(scales),
                                prior_var=V if closed else None)


def bias(num_features, seed, draws=1000, m=1000):
  x, y = _data(m)
  for i, scales in enumerate([(s,) for s in mmd.PAPER_SCALES] + [mmd.PAPER_SCALES]):
    # Draws of their own per row: shared ones would make the rows' errors move together.
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), i), draws)
    exact = float(mmd.mmd(x, y, c=1.0, scales=scales))
    est = np.asarray(jax.lax.map(lambda k, s=scales: _rf(x, y, k, s, num_features, False), keys),
                     np.float64)
    se = est.std(ddof=1) / np.sqrt(draws)
    print(json.dumps({"bench": "bias", "m": m, "draws": draws, "scales": scales, "seed": seed,
                      "num_features": num_features, "exact": exact, "mean": est.mean(),
                      "se": se, "z": (est.mean() - exact) / se, "sd_one": est.std(ddof=1)}),
          flush=True)


def _step(fn):
  return jax.jit(jax.value_and_grad(fn))


def _memory(compiled):
  a = compiled.memory_analysis()
  return (a.temp_size_in_bytes + a.argument_size_in_bytes + a.output_size_in_bytes
          if a is not None else None)


def speed(sizes, reps, num_features, max_exact_s):
  exact_too_slow = None
  for m in sizes:
    x, y = _data(m)
    key = jax.random.key(1)
    steps = {
        "exact": (_step(lambda x, y: mmd.mmd(x, y, c=1.0, scales=mmd.PAPER_SCALES)), (x, y)),
        "rf": (_step(lambda x, k: _rf(x, None, k, mmd.PAPER_SCALES, num_features, True)),
               (x, key)),
    }
    if exact_too_slow is not None:
      print(json.dumps({"bench": "speed", "m": m, "estimator": "exact", "skipped":
                        f"one step took {exact_too_slow:.1f} s at the previous size"}), flush=True)
      steps.pop("exact")
    times = {name: [] for name in steps}
    compiled = {name: fn.lower(*args).compile() for name, (fn, args) in steps.items()}
    for _ in range(reps):
      for name, (_, args) in steps.items():  # A B A B.
        start = time.perf_counter()
        jax.block_until_ready(compiled[name](*args))
        times[name].append(time.perf_counter() - start)
    for name in steps:
      print(json.dumps({"bench": "speed", "m": m, "estimator": name, "reps": reps,
                        "num_features": num_features if name == "rf" else None,
                        "median_s": statistics.median(times[name]), "times_s": times[name],
                        "memory_bytes": _memory(compiled[name])}), flush=True)
    if "exact" in times and min(times["exact"]) * 16 > max_exact_s:
      exact_too_slow = min(times["exact"])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("what", choices=("bias", "speed"))
  parser.add_argument("--num_features", type=int, default=256)
  parser.add_argument("--seed", type=int, default=0, help="of the feature draws (bias)")
  parser.add_argument("--sizes", default="4096,16384,65536")
  parser.add_argument("--reps", type=int, default=3)
  parser.add_argument("--max_exact_s", type=float, default=600.0,
                      help="skip the exact step at the next size (4x m, 16x pairs) if "
                           "16 times this size's fastest step exceeds it")
  args = parser.parse_args()
  if args.what == "bias":
    bias(args.num_features, args.seed)
  else:
    speed([int(s) for s in args.sizes.split(",")], args.reps, args.num_features, args.max_exact_s)


if __name__ == "__main__":
  main()
