"""Chaos: a debug sweep under random kills and damage, then every trial directory read back.

  python benchmarks/chaos.py [--trials 4] [--steps 60] [--trainer_kills 20]
                             [--driver_kills 10] [--corruptions 3] [--node_kills 0]
                             [--seed 0] [--workdir DIR]

Runs the sweep once undisturbed (the reference), then again while, at random moments, it
kills trainers (SIGKILL or SIGTERM, preferring one inside its final-checkpoint-to-`done`
window), kills the driver with SIGKILL and relaunches it, truncates the newest checkpoint
of an unfinished trial, and starts a second driver on the same directory. With
`--node_kills`, the drivers join a Ray cluster on this machine (`Cluster`: a head without
CPUs and one worker node standing in for a TPU VM), and a preemption SIGKILLs the worker
node's every process (raylet, Ray workers, trainers) and starts a replacement node.
Afterwards the driver is relaunched until every trial is final, and each trial directory
is checked:
  lost           no final status after the last relaunch
  trained_twice  two trainers that overlapped in time on one trial (both past the lock)
  damaged        unreadable records, or a `done` trial without its final checkpoint
  differ         a `done` trial whose final metrics differ from the undisturbed run's
  orphans        trainers still running 10 s after their driver was killed
Target: all zero. One JSON object per event on stdout, the summary last.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

from wae_jax import workdir as workdir_lib
from wae_jax.executors import ray as executors_ray

NUM_STEPS = 60  # Each trial's; --steps sets it.
RAY = os.path.join(os.path.dirname(sys.executable), "ray")  # This environment's CLI.
SWEEP = """
def get_hyper(h):
  return h.product([
      h.fixed("config", "mnist_wae_mmd:debug"), h.fixed("config.num_steps", {steps}),
      h.fixed("config.model.width", 0.015625), h.fixed("config.batch_size", 32),
      h.fixed("config.log_every", 10), h.fixed("config.ckpt_every", 10),
      h.fixed("config.eval_every", {steps}), h.fixed("config.eval.num_samples", 64),
      h.fixed("config.keep_ckpts", 3), h.sweep("config.seed", list(range({trials}))),
  ])
"""


def emit(**event) -> None:
  print(json.dumps(event), flush=True)


# --- The trainer wrapper: records when each attempt ran, so overlaps can be found. -------


def wrap(log: str, args: list[str]) -> int:
  trial = os.path.basename(next(a for a in args if a.startswith("--workdir="))[10:])
  start = time.time()
  libc = ctypes.CDLL(None)
  child = subprocess.Popen([sys.executable, "-m", "wae_jax.cli.train", *args],
                           preexec_fn=lambda: libc.prctl(1, signal.SIGTERM))
  signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
  rc = child.wait()
  with open(log, "a") as f:
    f.write(json.dumps({"trial": trial, "pid": child.pid, "start": start, "end": time.time(),
                        "rc": rc}) + "\n")
  return rc


# --- The chaos run. ------------------------------------------------------------------------


def trainer_pids(workdir: str) -> dict[int, str]:
  """{pid: trial} of the trainers (not wrappers) working in `workdir`."""
  out = {}
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmd = f.read().decode(errors="replace").split("\0")
    except OSError:
      continue
    if "wae_jax.cli.train" in cmd:
      for a in cmd:
        if a.startswith(f"--workdir={workdir}/"):
          out[int(pid)] = os.path.basename(a)
  return out


def _parent(pid: int) -> int | None:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return int(f.read().rsplit(")", 1)[1].split()[1])
  except (OSError, ValueError, IndexError):
    return None


def _is_wrapper(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
      return any(a.startswith(b"--wrap=") for a in f.read().split(b"\0"))
  except OSError:
    return False


class Cluster:
  """A Ray cluster on this machine: a head without CPUs (it only schedules, like a
  coordinator VM) and one worker node (a TPU VM) at a time. Each node is a `ray start
  --block` in its own process group; a preemption kills it, and the trainers of its tasks."""

  def __init__(self, log: str):
    # Ray (2.59+) authenticates every node and driver of a cluster that `ray start` makes:
    # one token for all, in the environment, as `wae-launch setup` gives TPU VMs.
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    # As `wae-launch setup` sets it: a dead worker's trainer gets its stop checkpoint.
    os.environ.update(executors_ray.RAY_ENV)
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
    self.address, self.log = f"127.0.0.1:{port}", log
    self.head = self._start("--head", f"--port={port}", "--num-cpus=0",
                            "--include-dashboard=false")
    self.node = self.head  # Until the head is up.
    deadline = time.time() + 120
    while subprocess.run([RAY, "status", f"--address={self.address}"], capture_output=True,
                         check=False).returncode:
      if time.time() > deadline or self.head.poll() is not None:
        self.close()
        raise RuntimeError("the Ray head did not start")
      time.sleep(1)
    self.node = self._join()

  def _start(self, *args: str) -> subprocess.Popen:
    with open(self.log, "a") as log:  # Each node's output, for when one does not come up.
      return subprocess.Popen([RAY, "start", "--block", "--node-ip-address=127.0.0.1",
                               "--disable-usage-stats", *args], start_new_session=True,
                              stdout=log, stderr=subprocess.STDOUT)

  def _join(self) -> subprocess.Popen:
    """A worker node: two CPUs, so two trials at a time, as `--parallel=2`."""
    return self._start(f"--address={self.address}", "--num-cpus=2")

  def preempt(self, workdir: str) -> None:
    """The worker node's VM goes: every process on it at once (the trainers, in sessions of
    their own, and their wrappers too); a replacement joins."""
    trainers = list(trainer_pids(workdir))
    wrappers = [ppid for ppid in map(_parent, trainers) if ppid and _is_wrapper(ppid)]
    os.killpg(self.node.pid, signal.SIGKILL)
    for pid in wrappers + trainers:
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
    self.node.wait()
    self.node = self._join()

  def close(self) -> None:
    for node in {self.node, self.head}:
      try:
        os.killpg(node.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
      node.wait()


def driver(spec: str, workdir: str, log: str, cluster: Cluster | None = None,
           **kw) -> subprocess.Popen:
  trainer = f"{sys.executable} {os.path.abspath(__file__)} --wrap={log} --"
  address = [f"--ray_address={cluster.address}"] if cluster else []
  return subprocess.Popen([sys.executable, "-m", "wae_jax.cli.sweep", "run", spec,
                           f"--workdir={workdir}", "--parallel=2", f"--trainer={trainer}",
                           *address],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def in_final_window(workdir: str, trial: str) -> bool:
  """The trial's final checkpoint is being written (orbax's temporary directory) or exists,
  but its record does not say `done` yet."""
  checkpoints = os.path.join(workdir, trial, workdir_lib.CHECKPOINTS)
  try:
    final = any(n == str(NUM_STEPS) or n.startswith(f"{NUM_STEPS}.")
                for n in os.listdir(checkpoints))
  except OSError:
    return False
  return final and workdir_lib.read_record(os.path.join(workdir, trial)).get("status") != "done"


def nap(seconds: float, workdir: str) -> int | None:
  """Sleeps `seconds`, or less to return a trainer caught in its final window (it lasts
  well under a second, so it is watched for every 50 ms)."""
  end = time.time() + seconds
  while time.time() < end:
    for pid, trial in trainer_pids(workdir).items():
      if in_final_window(workdir, trial):
        return pid
    time.sleep(0.05)
  return None


def corrupt(workdir: str, rng: random.Random) -> str | None:
  """Truncates every file of the newest checkpoint of a random unfinished trial."""
  candidates = []
  for trial in os.listdir(workdir):
    path = os.path.join(workdir, trial)
    if os.path.isdir(path) and workdir_lib.read_record(path).get("status") not in (
        workdir_lib.FINAL):
      steps = workdir_lib.checkpoint_steps(path)
      if len(steps) >= 2:
        candidates.append((trial, steps[-1]))
  if not candidates:
    return None
  trial, step = rng.choice(candidates)
  for root, _, files in os.walk(os.path.join(workdir, trial, workdir_lib.CHECKPOINTS, str(step))):
    for name in files:
      path = os.path.join(root, name)
      if name != "commit_success.txt":
        with open(path, "r+b") as f:
          f.truncate(os.path.getsize(path) // 2)
  return f"{trial}@{step}"


def finish(spec: str, workdir: str, log: str, cluster: Cluster | None,
           relaunches: int = 4) -> None:
  for _ in range(relaunches):
    d = driver(spec, workdir, log, cluster)
    out = d.communicate()[0]
    emit(event="relaunch", rc=d.returncode, last=out.strip().splitlines()[-1:])
    if d.returncode == 0:
      return


def orphans_after(seconds: float, workdir: str) -> dict[int, str]:
  """The trainers still running `seconds` after their driver (or node) went."""
  end = time.time() + seconds
  while (pids := trainer_pids(workdir)) and time.time() < end:
    time.sleep(0.2)
  return pids


def chaos(spec: str, workdir: str, log: str, args, rng: random.Random,
          cluster: Cluster | None) -> dict[str, int]:
  counts = dict(trainer_kills=0, window_kills=0, driver_kills=0, node_kills=0, corruptions=0,
                second_drivers_refused=0, second_drivers=0, orphans=0)
  d = driver(spec, workdir, log, cluster)
  deadline = time.time() + args.max_minutes * 60
  wanted = ("trainer_kills", "driver_kills", "node_kills", "corruptions")
  while time.time() < deadline and any(counts[k] < getattr(args, k) for k in wanted):
    caught = nap(rng.uniform(1.0, 6.0), workdir)
    if cluster and cluster.node.poll() is not None:
      raise RuntimeError(f"the Ray worker node exited by itself; its output is in {cluster.log}")
    if d.poll() is not None:  # It finished (or gave up): a relaunch continues the study.
      emit(event="driver_exit", rc=d.returncode, last=d.stdout.read().strip().splitlines()[-1:])
      if d.returncode == 0 and all(workdir_lib.read_record(os.path.join(workdir, t)).get(
          "status") in workdir_lib.FINAL for t in os.listdir(workdir)
          if os.path.isdir(os.path.join(workdir, t))):
        break
      d = driver(spec, workdir, log, cluster)
      continue
    pids = trainer_pids(workdir)
    window = [p for p in [caught] if p in pids]
    choice = rng.choices(["trainer", "driver", "node", "corrupt", "second"],
                         [6, 3, 3 if cluster else 0, 1, 0.5])[0]
    if window and counts["trainer_kills"] < args.trainer_kills:
      choice = "window"
    if choice in ("trainer", "window") and pids and counts["trainer_kills"] < args.trainer_kills:
      pid = rng.choice(window or list(pids))
      sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
      try:
        os.kill(pid, sig)
      except ProcessLookupError:
        continue
      counts["trainer_kills"] += 1
      counts["window_kills"] += choice == "window"
      emit(event="kill_trainer", trial=pids[pid], signal=sig.name, window=choice == "window")
    elif choice == "driver" and counts["driver_kills"] < args.driver_kills:
      d.kill()
      d.wait()
      counts["driver_kills"] += 1
      orphans = orphans_after(10, workdir)  # Its Ray workers and trainers go with it.
      counts["orphans"] += len(orphans)
      for pid in orphans:
        os.kill(pid, signal.SIGKILL)
      emit(event="kill_driver", orphans=len(orphans))
      d = driver(spec, workdir, log, cluster)
    elif choice == "node" and pids and counts["node_kills"] < args.node_kills:
      cluster.preempt(workdir)
      counts["node_kills"] += 1
      emit(event="preempt_node", trials=sorted(pids.values()))
    elif choice == "corrupt" and counts["corruptions"] < args.corruptions:
      where = corrupt(workdir, rng)
      if where:
        counts["corruptions"] += 1
        emit(event="corrupt", checkpoint=where)
    elif choice == "second":
      second = driver(spec, workdir, log, cluster)
      out = second.communicate(timeout=300)[0]
      counts["second_drivers"] += 1
      counts["second_drivers_refused"] += second.returncode == 2 and "one driver" in out
      emit(event="second_driver", rc=second.returncode, last=out.strip().splitlines()[-1:])
  if d.poll() is None:
    d.communicate()
  return counts


# --- Reading every trial directory. -------------------------------------------------------


def check(workdir: str, reference: str, log: str) -> dict[str, int]:
  trials = sorted(t for t in os.listdir(reference) if os.path.isdir(os.path.join(reference, t)))
  lost = damaged = differ = 0
  for t in trials:
    record, error = workdir_lib.load_record(os.path.join(workdir, t))
    if error:
      damaged += 1
      emit(event="damaged", trial=t, error=error)
      continue
    if not record or record["status"] not in workdir_lib.FINAL:
      lost += 1
      emit(event="lost", trial=t, status=(record or {}).get("status"))
      continue
    want = workdir_lib.read_record(os.path.join(reference, t))
    if record["status"] == "done":
      if NUM_STEPS not in workdir_lib.checkpoint_steps(os.path.join(workdir, t)):
        damaged += 1
        emit(event="damaged", trial=t, error="done without its final checkpoint")
      if record["metrics"] != want.get("metrics"):
        differ += 1
        emit(event="differ", trial=t, got=record["metrics"], want=want.get("metrics"))
  attempts = [json.loads(l) for l in open(log)] if os.path.exists(log) else []
  trained = [a for a in attempts if a["rc"] != workdir_lib.EXIT_BUSY]
  twice = 0
  for i, a in enumerate(trained):
    for b in trained[i + 1:]:
      if a["trial"] == b["trial"] and a["start"] < b["end"] and b["start"] < a["end"]:
        twice += 1
        emit(event="trained_twice", trial=a["trial"], pids=[a["pid"], b["pid"]])
  return dict(trials=len(trials), lost=lost, trained_twice=twice, damaged=damaged,
              differ=differ, attempts=len(attempts),
              busy_exits=sum(a["rc"] == workdir_lib.EXIT_BUSY for a in attempts))


def main() -> None:
  global NUM_STEPS
  if len(sys.argv) > 1 and sys.argv[1].startswith("--wrap="):
    sys.exit(wrap(sys.argv[1][len("--wrap="):], sys.argv[3:]))
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--trials", type=int, default=4)
  parser.add_argument("--steps", type=int, default=NUM_STEPS)
  parser.add_argument("--trainer_kills", type=int, default=20)
  parser.add_argument("--driver_kills", type=int, default=10)
  parser.add_argument("--corruptions", type=int, default=3)
  parser.add_argument("--node_kills", type=int, default=0)
  parser.add_argument("--max_minutes", type=float, default=30)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", default=None)
  args = parser.parse_args()
  NUM_STEPS = args.steps
  root = args.workdir or tempfile.mkdtemp(prefix="wae-chaos-")
  spec = os.path.join(root, "sweep.py")
  with open(spec, "w") as f:
    f.write(textwrap.dedent(SWEEP.format(steps=NUM_STEPS, trials=args.trials)))
  reference, workdir = os.path.join(root, "reference"), os.path.join(root, "chaos")
  log = os.path.join(root, "attempts.jsonl")
  started = time.time()
  finish(spec, reference, os.path.join(root, "reference_attempts.jsonl"), None)
  emit(event="reference_done", seconds=round(time.time() - started))
  cluster = Cluster(os.path.join(root, "ray_nodes.log")) if args.node_kills else None
  try:
    counts = chaos(spec, workdir, log, args, random.Random(args.seed), cluster)
    finish(spec, workdir, log, cluster)
  finally:
    if cluster:
      cluster.close()
  summary = check(workdir, reference, log)
  emit(event="summary", **counts, **summary, seconds=round(time.time() - started),
       loadavg_1m=os.getloadavg()[0])


if __name__ == "__main__":
  main()
