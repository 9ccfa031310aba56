r"""Kill-and-relaunch: SIGKILL a real `wae-sweep run` mid-way, relaunch, count what was lost.

  python benchmarks/sweep_relaunch.py [--sweep sweeps/bigwae.py:debug] [--kills_after 2,5]
      [--workdir runs/relaunch] [--parallel 2]

Runs the sweep with the real trainer; each time the number of finished trials reaches the
next value of --kills_after and another trial has saved a checkpoint (so the kill lands
mid-trial), the sweep process (the Ray driver) is SIGKILLed, and the same command is run
again; the last run goes to the end. Then every trial directory is read:
`lost` counts trials without a final status, `repeated` trials whose final step was logged
by more than one trainer run (every run writes its own TensorBoard event file), `resumed`
trials trained by more than one run. One JSON line per launch and one summary line.
"""

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

from tensorboard.backend.event_processing import event_file_loader

from wae_jax import study
from wae_jax import workdir as workdir_lib


def finished(workdir: pathlib.Path) -> int:
  return sum((workdir_lib.read_metrics(d) or {}).get("status") in workdir_lib.FINAL
             for d in workdir.iterdir() if d.is_dir())


def interrupted(workdir: pathlib.Path) -> dict[str, int]:
  """Trials not final that have a checkpoint: {trial id: its latest checkpoint step}."""
  out = {}
  for d in filter(pathlib.Path.is_dir, workdir.iterdir()):
    steps = [int(c.name) for c in (d / "checkpoints").glob("*") if c.name.isdigit()]
    if steps and (workdir_lib.read_metrics(d) or {}).get("status") not in workdir_lib.FINAL:
      out[d.name] = max(steps)
  return out


def steps_per_run(trial_dir: pathlib.Path) -> list[int]:
  """The last step each trainer run logged, one entry per TensorBoard event file."""
  last = []
  for path in sorted(trial_dir.glob("events.out.tfevents.*")):
    steps = [e.step for e in event_file_loader.EventFileLoader(str(path)).Load() if e.summary.value]
    last.append(max(steps, default=0))
  return last


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sweep", default="sweeps/bigwae.py:debug")
  parser.add_argument("--workdir", default="runs/relaunch")
  parser.add_argument("--kills_after", default="2,5",
                      help="kill the sweep when this many trials have finished (and "
                           "another has a checkpoint), in turn")
  parser.add_argument("--parallel", type=int, default=2)
  args = parser.parse_args()
  workdir = pathlib.Path(args.workdir)
  if workdir.exists() and any(workdir.iterdir()):
    sys.exit(f"sweep_relaunch: {workdir} is not empty; the experiment starts from nothing")
  workdir.mkdir(parents=True, exist_ok=True)
  command = [sys.executable, "-m", "wae_jax.cli.sweep", "run", args.sweep,
             f"--workdir={workdir}", f"--parallel={args.parallel}"]
  start = time.time()
  kills = [int(k) for k in args.kills_after.split(",") if k]
  for launch, kill_after in enumerate(kills + [None]):
    with open(workdir.with_name(f"{workdir.name}.launch{launch}.log"), "w") as log:
      sweep = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
      # Kill mid-trial: once enough trials are final and another has a checkpoint to lose.
      while kill_after is not None and sweep.poll() is None and not (
          finished(workdir) >= kill_after and interrupted(workdir)):
        time.sleep(1)
      in_flight = interrupted(workdir)
      if kill_after is not None and sweep.poll() is None:
        sweep.send_signal(signal.SIGKILL)
      rc = sweep.wait()
    print(json.dumps({"launch": launch, "killed": rc == -signal.SIGKILL, "rc": rc,
                      "finished_trials": finished(workdir),
                      "interrupted_at_checkpoint": in_flight if rc else {},
                      "elapsed_s": round(time.time() - start, 1)}), flush=True)

  trials = study.load_sweep(args.sweep, check=False).trials
  lost = repeated = resumed = 0
  for tid in trials:
    metrics = workdir_lib.read_metrics(workdir / tid) or {}
    runs = steps_per_run(workdir / tid)
    final = [s for s in runs if s == metrics.get("num_steps")]
    lost += metrics.get("status") not in workdir_lib.FINAL
    repeated += len(final) > 1
    resumed += len(runs) > 1
  wall = time.time() - start
  print(json.dumps({"sweep": args.sweep, "trials": len(trials), "kills": len(kills),
                    "lost": lost, "repeated": repeated, "resumed": resumed,
                    "wall_s": round(wall), "trials_per_hour": round(len(trials) * 3600 / wall, 1),
                    "cpu_count": os.cpu_count()}), flush=True)


if __name__ == "__main__":
  main()
