r"""Speed and memory of the MMD estimator: blocked (`mmd.mmd`) against dense (`mmd.mmd_dense`).

  python benchmarks/mmd.py [--m 100,1000,4096,8192,16384,65536,262144] [--d 64] [--quick]
      [--scales 1,7] [--modes fwd,fwd_bwd] [--impls blocked,dense] [--block 512] [--repeats 3]

One JSON line per measurement. Pairs are counted as 3 m^2 (n = m codes and prior draws, the
three kernel sums), whatever the implementation skips; "fwd_bwd" is the value and its gradient
w.r.t. the codes, as in a WAE step (the prior draws are constants). Each function is compiled
ahead of time, so its temporary memory comes from XLA's memory analysis and no timing includes
compilation; then one warm-up run and the median of `--repeats` runs, except that runs over
`--long` seconds are timed once. `cpu_util` (process CPU time / wall time) shows how much of
the machine the run got when others share it. A first line gives the fp32 matmul rate, which
bounds the pairs/s at matmul_flops / (2 d).
"""

import argparse
import json
import resource
import time

import jax
import numpy as np

from wae_jax import mmd

PAIRS_PER_M2 = 3


def cpu_seconds() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def timed(compiled, args, repeats: int, long_s: float) -> tuple[float, float, int]:
  """Median wall seconds, CPU utilisation and the number of timed runs."""
  walls, cpus = [], []
  for i in range(repeats + 1):
    c, t = cpu_seconds(), time.perf_counter()
    jax.block_until_ready(compiled(*args))
    walls.append(time.perf_counter() - t)
    cpus.append(cpu_seconds() - c)
    if i == 0 and walls[0] > long_s:  # Compiled already; a minutes-long run needs no warm-up.
      break
  if len(walls) > 1:
    walls, cpus = walls[1:], cpus[1:]
  k = int(np.argsort(walls)[len(walls) // 2])
  return walls[k], cpus[k] / walls[k], len(walls)


def matmul_line(size: int = 4096, d: int = 64) -> dict:
  a = jax.random.normal(jax.random.key(0), (size, size))
  f = jax.jit(lambda a: a @ a).lower(a).compile()
  seconds, util, _ = timed(f, (a,), repeats=5, long_s=1e9)
  flops = 2 * size**3 / seconds
  return {"bench": "matmul", "size": size, "gflop_per_s": round(flops / 1e9, 1), "d": d,
          "bound_gpairs_per_s": round(flops / (2 * d) / 1e9, 3), "cpu_util": round(util, 2)}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--m", default="100,1000,4096,8192,16384,65536,262144")
  p.add_argument("--d", type=int, default=64)
  p.add_argument("--scales", default="1,7", help="1: one width; 7: the paper's seven")
  p.add_argument("--kernel", default="imq", choices=mmd.KERNELS)
  p.add_argument("--modes", default="fwd,fwd_bwd")
  p.add_argument("--impls", default="blocked,dense")
  p.add_argument("--block", type=int, default=512)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--long", type=float, default=20.0, help="seconds past which a run is timed once")
  p.add_argument("--dense_max_gib", type=float, default=4.0,
                 help="skip the dense estimator when it needs more temporary memory")
  p.add_argument("--quick", action="store_true", help="m = 100,1000,4096 and one repeat")
  args = p.parse_args()
  if args.quick:
    args.m, args.repeats = "100,1000,4096", 1
  platform = jax.devices()[0].platform
  print(json.dumps(matmul_line(d=args.d) | {"platform": platform}), flush=True)
  c = 2.0 * args.d  # 2 d_z sigma_z^2 with sigma_z = 1
  for m in map(int, args.m.split(",")):
    x = jax.random.normal(jax.random.key(1), (m, args.d)) + 0.5
    y = jax.random.normal(jax.random.key(2), (m, args.d))
    for n_scales in map(int, args.scales.split(",")):
      scales = mmd.PAPER_SCALES if n_scales == 7 else (1.0,)
      for impl in args.impls.split(","):
        if impl == "dense":
          f = lambda x, y: mmd.mmd_dense(x, y, kernel=args.kernel, c=c, scales=scales)
        else:
          f = lambda x, y: mmd.mmd(x, y, kernel=args.kernel, c=c, scales=scales,
                                   block_size=args.block)
        for mode in args.modes.split(","):
          fn = jax.value_and_grad(f) if mode == "fwd_bwd" else f
          line = {"bench": "mmd", "impl": impl, "kernel": args.kernel, "scales": n_scales,
                  "mode": mode, "m": m, "d": args.d, "platform": platform}
          if impl == "blocked":
            line["block"] = args.block
          t = time.perf_counter()
          compiled = jax.jit(fn).lower(x, y).compile()
          temp = compiled.memory_analysis().temp_size_in_bytes
          line |= {"compile_s": round(time.perf_counter() - t, 2),
                   "temp_mib": round(temp / 2**20, 1)}
          if impl == "dense" and temp > args.dense_max_gib * 2**30:
            print(json.dumps(line | {"skipped": f"needs {temp / 2**30:.1f} GiB"}), flush=True)
            continue
          seconds, util, runs = timed(compiled, (x, y), args.repeats, args.long)
          print(json.dumps(line | {
              "seconds": round(seconds, 5), "runs": runs, "cpu_util": round(util, 2),
              "gpairs_per_s": round(PAIRS_PER_M2 * m * m / seconds / 1e9, 4)}), flush=True)


if __name__ == "__main__":
  main()
