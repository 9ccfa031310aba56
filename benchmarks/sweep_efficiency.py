r"""A sweep's wall-clock model-steps/s against the bare training loop's, and where the rest goes.

  python benchmarks/sweep_efficiency.py [--sweep sweeps/quickstart.py] [--executors local,warm]
      [--parallel 2] [--workdir runs/efficiency] [--rounds 2] [--bare_steps 2000]

Each round, in turn (the bare loop, then each executor's sweep; A B A B):
- bare: the training loop alone (`train_step.Dispatched`: the loop's jitted dispatches, the
  training set on the devices) on the sweep's first trial's config, in one process on all
  cores, after its compile: steps/s.
- sweep: `wae-sweep run` of the sweep from an empty directory with an executor: wall time,
  model-steps (the steps every trial reached), model-steps/s, and their ratio to the bare
  loop's. Where the rest goes: each job's wall time (its launch to its end, from the
  driver's lines) fitted as `fixed + steps / rate`, so `fixed` is what a climb costs besides
  its steps (a trainer's start, imports, compile-cache loads, restore, the end's evaluation
  and checkpoint) and `rate` the steps/s a running trainer keeps (evaluations and
  checkpoints within a climb included).
One JSON line per measurement, then the medians.
"""

import argparse
import json
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import time

import jax
import numpy as np
from jax.sharding import Mesh

from wae_jax import data
from wae_jax import study
from wae_jax import workdir as workdir_lib
import train_step  # benchmarks/train_step.py: the bare loop.

LAUNCH = re.compile(r"^(\d\d:\d\d:\d\d) (?:start|promote|resume)\s+(\w+) .*?(?:to rung|->) (\d+)")
END = re.compile(r"^(\d\d:\d\d:\d\d) .*  (\w+) (?:done|diverged|failed|interrupted) at step (\d+)")


def bare_steps_per_s(spec: str, steps: int) -> float:
  s = study.load_sweep(spec, check=False)
  c = study.trial_config(next(iter(s.trials.values())))
  c.batch_size -= c.batch_size % jax.device_count()
  mesh = Mesh(np.array(jax.devices()), ("data",))
  loop = train_step.Dispatched([c], data.load(c.data.source, c.data.heldout), mesh)
  loop.steps(2 * c.steps_per_dispatch)  # Compiles.
  start = time.perf_counter()
  loop.steps(steps)
  return steps / (time.perf_counter() - start)


def seconds(stamp: str) -> int:
  h, m, s = map(int, stamp.split(":"))
  return 3600 * h + 60 * m + s


def run_sweep(args, executor: str, workdir: pathlib.Path) -> dict:
  shutil.rmtree(workdir, ignore_errors=True)
  start = time.time()
  out = subprocess.run([sys.executable, "-m", "wae_jax.cli.sweep", "run", args.sweep,
                        f"--workdir={workdir}", f"--executor={executor}",
                        f"--parallel={args.parallel}", "--optuna="],
                       capture_output=True, text=True, check=True).stdout
  wall = time.time() - start
  s = study.load_sweep(args.sweep, check=False)
  model_steps = sum(r.get("step", 0) for r in workdir_lib.read_records(workdir, s.trials).values())
  launched, reached, jobs = {}, {}, []  # jobs: (steps the climb trained, its wall seconds)
  for line in out.splitlines():
    if m := LAUNCH.match(line):
      launched[m[2]] = (seconds(m[1]), int(m[3]))
    elif (m := END.match(line)) and m[2] in launched:
      t0, target = launched.pop(m[2])
      # The driver's stamps are clock times: a job that crosses midnight ends "before" it began.
      jobs.append((target - reached.get(m[2], 0), (seconds(m[1]) - t0) % 86400))
      reached[m[2]] = target
  return {"wall_s": wall, "model_steps": model_steps, "jobs": jobs}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sweep", default="sweeps/quickstart.py")
  parser.add_argument("--executors", default="local,warm")
  parser.add_argument("--parallel", type=int, default=2)
  parser.add_argument("--workdir", default="runs/efficiency")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--bare_steps", type=int, default=2000)
  args = parser.parse_args()
  executors = args.executors.split(",")
  bare, sweeps = [], {e: [] for e in executors}
  for r in range(args.rounds):
    bare.append(bare_steps_per_s(args.sweep, args.bare_steps))
    print(json.dumps({"round": r, "bare_steps_per_s": round(bare[-1], 1)}), flush=True)
    for executor in executors:
      sweeps[executor].append(run_sweep(args, executor, pathlib.Path(args.workdir) / executor))
      last = sweeps[executor][-1]
      rate = last["model_steps"] / last["wall_s"]
      print(json.dumps({"round": r, "executor": executor, "sweep_wall_s": round(last["wall_s"], 1),
                        "model_steps": last["model_steps"], "sweep_steps_per_s": round(rate, 1),
                        "of_bare": round(rate / bare[-1], 3)}), flush=True)
  for executor in executors:
    print(json.dumps({"sweep": args.sweep, "executor": executor, "parallel": args.parallel,
                      "devices": jax.device_count(), **summary(bare, sweeps[executor])}),
          flush=True)


def summary(bare, sweeps) -> dict:
  """Medians over rounds, and the fit of every job's wall time against its steps."""
  jobs = np.array([j for s in sweeps for j in s["jobs"]], float)
  steps = [s["model_steps"] / s["wall_s"] for s in sweeps]
  out = {"bare_steps_per_s": round(statistics.median(bare), 1),
         "sweep_steps_per_s": round(statistics.median(steps), 1),
         "of_bare": round(statistics.median(steps) / statistics.median(bare), 3),
         "jobs": len(jobs) // max(len(sweeps), 1)}
  if len(jobs) > 2 and np.ptp(jobs[:, 0]) > 0:
    slope, fixed = np.polyfit(jobs[:, 0], jobs[:, 1], 1)
    out.update(job_fixed_s=round(float(fixed), 2), job_steps_per_s=round(1 / slope, 1))
  return out


if __name__ == "__main__":
  main()
