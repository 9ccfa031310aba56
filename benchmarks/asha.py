r"""ASHA against random search on the same trials, the ASHA driver killed and relaunched.

  python benchmarks/asha.py [--sweep sweeps/bigwae_asha.py:debug] [--workdir runs/asha]
      [--parallel 2] [--kills 3] [--seed 0] [--executor ray] [--min_steps 150,300]
      [--eta 2,3,4]

1. `W/random`: `wae-sweep run SWEEP --search=random`, every trial to its full budget (a
   finished one there is reused).
2. `W/asha`: `wae-sweep run SWEEP`, SIGKILLed `--kills` times, each at a random moment (2 to
   12 rung results into the launch, then 0 to 20 s), and relaunched; then run to its end. Before each kill the
   decisions so far are read from the trials' `search.json`; at the end every one of them must
   still hold (a trial's rung only grows, a recorded metric never changes: `changed`).
   `lost`: a trial with no final status, or sent to a rung it has no result at.
   `twice_past_a_rung`: a rung's end evaluated by more than one trainer run of a trial.
3. Per algorithm (bracket): the best final metric under each search, and the model-steps
   each spent. Then the replay on the random-search run (`wae-results --replay`).

One JSON line per launch, per algorithm, per replay row, and a summary line.
"""

import argparse
import json
import pathlib
import random
import signal
import subprocess
import sys
import time

from tensorboard.backend.event_processing import event_file_loader

from wae_jax import curves as curves_lib
from wae_jax import replay as replay_lib
from wae_jax import results as results_lib
from wae_jax import study
from wae_jax import workdir as workdir_lib


def decisions(s: study.Sweep, workdir: pathlib.Path) -> dict[str, tuple]:
  """Each decided trial's (target rung, {rung: metric}), from its search.json."""
  out = {}
  for tid in s.trials:
    if note := workdir_lib.read_json(workdir / tid / workdir_lib.SEARCH):
      out[tid] = (note["target"], {int(k): v for k, v in note["results"].items()})
  return out


def evaluations_at(trial_dir: pathlib.Path, tag: str, steps) -> list[int]:
  """For each of `steps`, how many trainer runs (event files) evaluated the trial there."""
  counts = dict.fromkeys(steps, 0)
  for path in sorted(trial_dir.glob("events.out.tfevents.*")):
    seen = {e.step for e in event_file_loader.EventFileLoader(str(path)).Load()
            for v in e.summary.value if v.tag == tag}
    for step in seen & set(counts):
      counts[step] += 1
  return list(counts.values())


def run(command, log_path) -> int:
  with open(log_path, "w") as log:
    return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode


def wait_for_results(log_path: pathlib.Path, proc: subprocess.Popen, n: int) -> None:
  """Until the driver's log has `n` rung results, or the driver has ended."""
  while proc.poll() is None:
    if sum(" rung    " in l for l in log_path.read_text().splitlines()) >= n:
      return
    time.sleep(1)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sweep", default="sweeps/bigwae_asha.py:debug")
  parser.add_argument("--workdir", default="runs/asha")
  parser.add_argument("--parallel", type=int, default=2)
  parser.add_argument("--kills", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--executor", default="ray")
  parser.add_argument("--min_steps", default="150,300")
  parser.add_argument("--eta", default="2,3,4")
  args = parser.parse_args()
  workdir = pathlib.Path(args.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  s = study.load_sweep(args.sweep)
  rng = random.Random(args.seed)
  sweep = [sys.executable, "-m", "wae_jax.cli.sweep", "run", args.sweep,
           f"--parallel={args.parallel}", f"--executor={args.executor}"]
  start = time.time()

  rc = run([*sweep, f"--workdir={workdir / 'random'}", "--search=random"],
           workdir / "random.log")
  random_s = time.time() - start
  print(json.dumps({"search": "random", "rc": rc, "wall_s": round(random_s)}), flush=True)

  before_kills, changed = [], 0
  for launch in range(args.kills + 1):
    log = workdir / f"asha.launch{launch}.log"
    t0 = time.time()
    if launch < args.kills:
      # Killed at a random moment: 2 to 12 rung results into the launch, then 0 to 20 s.
      with open(log, "w") as out:
        proc = subprocess.Popen([*sweep, f"--workdir={workdir / 'asha'}"], stdout=out,
                                stderr=subprocess.STDOUT)
        wait_for_results(log, proc, rng.randint(2, 12))
        time.sleep(rng.uniform(0, 20))
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait()
      before_kills.append(decisions(s, workdir / "asha"))
    else:
      rc = run([*sweep, f"--workdir={workdir / 'asha'}"], log)
    print(json.dumps({"search": "asha", "launch": launch, "rc": rc,
                      "decided": len(decisions(s, workdir / "asha")),
                      "wall_s": round(time.time() - t0)}), flush=True)
  asha_s = time.time() - start - random_s

  final = decisions(s, workdir / "asha")
  for snapshot in before_kills:
    for tid, (target, results) in snapshot.items():
      now_target, now_results = final.get(tid, (None, {}))
      changed += (now_target is None or now_target < target
                  or any(now_results.get(k) != v for k, v in results.items()))
  lost = twice = 0
  tag = f"eval/{s.search.metric}"
  for tid in s.trials:
    record = workdir_lib.read_record(workdir / "asha" / tid)
    target, results = final.get(tid, (None, {}))
    lost += record.get("status") not in workdir_lib.FINAL or target not in results
    twice += any(n > 1 for n in evaluations_at(workdir / "asha" / tid, tag, s.search.rungs))

  metric = s.search.metric
  tables = {name: results_lib.read_results(workdir / name).trials for name in ("random", "asha")}
  summary = {}
  for base, ids in study.brackets(s.trials).items():
    row = {"algorithm": base}
    for name, trials in tables.items():
      group = trials[trials["trial"].isin(ids)]
      full = group[(group["status"] == workdir_lib.DONE)
                   & (group["step"] == s.search.max_steps)]
      best = min(full[metric], key=s.search.key)
      row[f"{name}_best"] = float(best)
      row[f"{name}_model_steps"] = int(group["step"].sum())
    row["asha_best_vs_random"] = round(row["asha_best"] / row["random_best"], 4)
    row["asha_steps_share"] = round(row["asha_model_steps"] / row["random_model_steps"], 4)
    summary[base] = row
    print(json.dumps(row), flush=True)

  curves = curves_lib.read_curves(workdir / "random", tables["random"], metric)
  replay = replay_lib.table(tables["random"], curves, metric, "asha", {
      "min_steps": [int(v) for v in args.min_steps.split(",")],
      "eta": [int(v) for v in args.eta.split(",")]})
  for row in replay.to_dict("records"):
    print(json.dumps({"replay": row}), flush=True)
  print(results_lib.to_markdown(replay), flush=True)
  print(json.dumps({
      "sweep": args.sweep, "trials": len(s.trials), "kills": args.kills, "lost": lost,
      "changed": changed, "twice_past_a_rung": twice,
      "random_wall_s": round(random_s), "asha_wall_s": round(asha_s),
      "asha_steps_share": round(sum(r["asha_model_steps"] for r in summary.values())
                                / sum(r["random_model_steps"] for r in summary.values()), 4),
  }), flush=True)


if __name__ == "__main__":
  main()
