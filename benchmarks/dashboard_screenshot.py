r"""The README's screenshot of optuna-dashboard on a sweep's Optuna mirror (wae_jax/mirror.py).

  python benchmarks/dashboard_screenshot.py [--workdir /tmp/mirror_demo]
      [--out docs/images/optuna_dashboard.png] [--chromium chromium]

Writes a synthetic ASHA sweep (no training: metrics.json and eval/domain_fid events as the
trainer leaves them, dated as four workers would have written them) of three algorithms,
27 trials each, rungs at 100, 300 and 900 steps with eta 3, plus a diverged and a
still-running trial; mirrors it; serves it with optuna-dashboard on a free loopback port; and
has headless Chromium (Debian's `chromium` package) take a screenshot of one study's page,
tall enough to show its curves. Prints the files and the command that opens the dashboard.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import subprocess
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request

from wae_jax import events
from wae_jax import mirror
from wae_jax import workdir as workdir_lib

METRIC = "domain_fid"
RUNGS, ETA, EVAL_EVERY = (100, 300, 900), 3, 50
TRIALS, WORKERS, STEP_S = 27, 4, 0.4  # Per algorithm; seconds a step.
ALGORITHMS = {"mnist_wae_mmd:debug": 9.0, "mnist_wae_gan:debug": 11.0, "mnist_vae:debug": 16.0}


def quality(algorithm: str, lr: float, latent_dim: int, rng: random.Random) -> float:
  """The domain FID a trial would reach: best near lr 1e-3, better with wider latents."""
  return (ALGORITHMS[algorithm] + 4 * math.log10(lr / 1e-3) ** 2 + 24 / latent_dim
          + rng.uniform(0, 1.5))


def curve(final: float, steps: int, rng: random.Random) -> dict[int, float]:
  return {s: final + 60 / math.sqrt(s / 50) * (1 + rng.uniform(-0.05, 0.05))
          for s in range(EVAL_EVERY, steps + 1, EVAL_EVERY)}


def write_trial(trial_dir: str, points: dict[int, float], status: str, num_steps: int,
                end: float, error: str | None = None) -> None:
  """A trial directory whose metrics.json was last written at time `end`."""
  os.makedirs(trial_dir, exist_ok=True)
  writer = events.Writer(trial_dir)
  for step, value in points.items():
    writer.write_scalars(step, {f"eval/{METRIC}": value})
  writer.close()
  last = max(points) if points else 0
  metrics = {METRIC: points[last]} if points and status != workdir_lib.DIVERGED else {}
  workdir_lib.write_metrics(trial_dir, status=status, step=last, num_steps=num_steps,
                            wall_s=last * STEP_S, metrics=metrics, config={}, error=error)
  os.utime(os.path.join(trial_dir, workdir_lib.METRICS), (end, end))


def make_sweep(workdir: str, seed: int = 0) -> tuple[dict, dict]:
  """(trials, search states) of a finished ASHA sweep, its directories written."""
  rng, trials, states = random.Random(seed), {}, {}
  clock = [time.time() - 6 * 3600] * WORKERS  # When each worker is free.

  def run(steps: int) -> float:
    """When a run of `steps` more steps, on the first free worker, ends."""
    worker = clock.index(min(clock))
    clock[worker] += steps * STEP_S
    return clock[worker]

  for algorithm in ALGORITHMS:
    finals, ends = {}, {}
    for i in range(TRIALS):
      tid = f"{algorithm.split(':')[0].removeprefix('mnist_')}-{i}"
      lr, latent_dim = 10 ** rng.uniform(-4, -2), rng.choice([8, 16, 32])
      trials[tid] = {"config": algorithm, "config.optim.lr": lr,
                     "config.model.latent_dim": latent_dim, "config.seed": 0}
      finals[tid] = quality(algorithm, lr, latent_dim, rng)
    alive, previous = list(finals), 0
    for rung in RUNGS:
      ends.update({tid: run(rung - previous) for tid in alive})
      alive.sort(key=finals.get)
      top = len(alive) // ETA if rung < RUNGS[-1] else 0  # Sent on to the next rung.
      for tid in alive[top:]:
        write_trial(os.path.join(workdir, tid), curve(finals[tid], rung, rng),
                    workdir_lib.DONE, rung, ends[tid])
        states[tid] = "stopped" if rung < RUNGS[-1] else "done"
      alive, previous = alive[:top], rung
  trials["wae_gan-diverged"] = {"config": "mnist_wae_gan:debug", "config.optim.lr": 0.0099,
                                "config.model.latent_dim": 8, "config.seed": 0}
  write_trial(os.path.join(workdir, "wae_gan-diverged"), curve(30.0, 150, rng),
              workdir_lib.DIVERGED, 300, run(170), "loss became nan at step 170")
  trials["wae_mmd-running"] = {"config": "mnist_wae_mmd:debug", "config.optim.lr": 0.0011,
                               "config.model.latent_dim": 32, "config.seed": 0}
  write_trial(os.path.join(workdir, "wae_mmd-running"), curve(9.5, 200, rng),
              workdir_lib.RUNNING, 300, run(200))
  return trials, states


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def get_json(url: str, wait_s: float) -> dict:
  deadline = time.time() + wait_s
  while True:
    try:
      with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError):
      if time.time() > deadline:
        raise
      time.sleep(0.2)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default=None, help="the sweep directory (default: a new "
                      "temporary one)")
  parser.add_argument("--out", default="docs/images/optuna_dashboard.png")
  parser.add_argument("--study", default="mnist_wae_mmd:debug", help="the bracket shown")
  parser.add_argument("--chromium", default="chromium")
  parser.add_argument("--size", default="1400,2300", help="the browser window, in pixels")
  args = parser.parse_args()
  workdir = args.workdir or tempfile.mkdtemp(prefix="mirror_demo_")
  trials, states = make_sweep(workdir)
  url = mirror.sync(workdir, trials, metric=METRIC, search_states=states)
  port = free_port()
  server = subprocess.Popen(
      [os.path.join(sysconfig.get_path("scripts"), "optuna-dashboard"), url,
       "--host", "127.0.0.1", "--port", str(port)],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    studies = get_json(f"http://127.0.0.1:{port}/api/studies", 60)["study_summaries"]
    study_id = next(s["study_id"] for s in studies if s["study_name"].endswith(args.study))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    subprocess.run([args.chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={os.path.abspath(args.out)}",
                    f"--window-size={args.size}", "--virtual-time-budget=10000",
                    f"http://127.0.0.1:{port}/dashboard/studies/{study_id}"],
                   check=True, timeout=120, capture_output=True)
  finally:
    server.terminate()
    server.wait(timeout=10)
  print(json.dumps({"workdir": workdir, "storage": url, "screenshot": args.out,
                    "open": mirror.dashboard_command(url)}))


if __name__ == "__main__":
  main()
