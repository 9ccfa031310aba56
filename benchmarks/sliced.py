r"""Time and XLA temporary memory of the sliced Wasserstein penalty against the blocked MMD.

  python benchmarks/sliced.py [--quick] [--sizes=1024,4096] [--repeats=5]

One JSON line per (penalty, m, pass): m codes against m prior draws at d = 64, the penalty
alone (`fwd`) or with its gradient w.r.t. the codes (`fwd_bwd`, what a training step
needs); `median_s` over `repeats` calls after a warm-up, `temp_bytes` from XLA's memory
analysis of the compiled program. SW uses L = 64 directions; MMD the paper's IMQ kernel
summed over 7 widths. An MMD whose predicted time (quadratic from the previous size)
exceeds --mmd_budget_s is compiled for its memory but not run (`skipped`).
"""
import argparse
import json
import statistics
import time

import jax

from wae_jax import mmd, sliced

SIZES = (1024, 4096, 16384, 65536, 262144, 1048576)
QUICK_SIZES = (1024, 4096, 16384)


def penalties(d: int, num_projections: int, block_size: int):
  sw = lambda x, y, rng: sliced.sliced_wasserstein(x, y, rng, num_projections=num_projections)
  mmd_imq = lambda x, y, rng: mmd.mmd(x, y, kernel="imq", c=2.0 * d, scales=mmd.PAPER_SCALES,
                                      block_size=block_size)
  return {"sw": sw, "mmd": mmd_imq}


def measure(f, args, repeats: int, run: bool) -> dict:
  compiled = jax.jit(f).lower(*args).compile()
  out = {"temp_bytes": int(compiled.memory_analysis().temp_size_in_bytes)}
  if run:
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(compiled(*args))
      times.append(time.perf_counter() - start)
    out.update(median_s=statistics.median(times), repeats=repeats)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}, 3 repeats")
  parser.add_argument("--sizes", type=lambda s: tuple(int(v) for v in s.split(",")))
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--d", type=int, default=64)
  parser.add_argument("--num_projections", type=int, default=64)
  parser.add_argument("--mmd_block_size", type=int, default=512)
  parser.add_argument("--mmd_budget_s", type=float, default=60.0,
                      help="skip running an MMD predicted to take longer than this per call")
  args = parser.parse_args()
  sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
  repeats = 3 if args.quick else args.repeats

  fns = penalties(args.d, args.num_projections, args.mmd_block_size)
  last_mmd = {}  # pass -> (m, seconds) of the last MMD actually run
  for m in sizes:
    kx, ky, rng = jax.random.split(jax.random.key(m), 3)
    x = jax.random.normal(kx, (m, args.d)) * 0.8 + 0.1  # codes, off the prior
    y = jax.random.normal(ky, (m, args.d))  # prior draws
    for name, f in fns.items():
      for pass_, g in (("fwd", f), ("fwd_bwd", jax.value_and_grad(f))):
        row = {"penalty": name, "m": m, "d": args.d, "pass": pass_,
               "backend": jax.default_backend(), "devices": 1}
        if name == "sw":
          row["num_projections"] = args.num_projections
        else:
          row["block_size"] = args.mmd_block_size
        run = True
        if name == "mmd" and pass_ in last_mmd:
          m0, t0 = last_mmd[pass_]
          predicted = t0 * (m / m0) ** 2
          if predicted > args.mmd_budget_s:
            run = False
            row["skipped"] = f"predicted {predicted:.0f} s per call > {args.mmd_budget_s:g} s"
        row.update(measure(g, (x, y, rng), repeats, run))
        if name == "mmd" and run:
          last_mmd[pass_] = (m, row["median_s"])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
  main()
