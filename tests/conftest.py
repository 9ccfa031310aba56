"""Every test sees 8 simulated CPU devices, so sharded code paths run without an accelerator.

Compiled programs go to JAX's persistent cache, shared by the test process and the trainer
subprocesses it starts: most tests train the same tiny nets, which then compile once a run.
"""
import collections
import os
import random
import signal
import subprocess
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_TRAINER = os.path.join(REPO, "tests", "fixtures", "fake_trainer.py")

# Must happen before JAX initialises its backends; subprocesses inherit them.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["JAX_NUM_CPU_DEVICES"] = "8"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(REPO, ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
# POT (sliced_test's reference) would import TensorFlow and torch as backends at collection,
# 9 s a worker; it only needs NumPy.
os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")
os.environ.setdefault("POT_BACKEND_DISABLE_PYTORCH", "1")


def pytest_collection_modifyitems(items):
  """Slow tests first: xdist workers take tests in this order, so the longest ones no longer
  end the run on one worker while the other idles."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# --- Helpers of the sweep tests (`from conftest import ...`) --------------------------------


def sweep_file(tmp_path, body, name="s.py"):
  path = tmp_path / name
  path.write_text(textwrap.dedent(body))
  return str(path)


def log_counts(log):
  """{trial: (attempts, completions)} from the fake trainer's log."""
  starts, dones = collections.Counter(), collections.Counter()
  for line in open(log).read().splitlines():
    kind, trial = line.split()[:2]
    (starts if kind == "start" else dones)[trial] += 1
  return starts, dones


def kill_sweep(sweep, log):
  """SIGKILLs a `wae-sweep run` process, then waits until Ray has taken down the fake
  trainers it started (their pids are in the fake trainer's log)."""
  sweep.send_signal(signal.SIGKILL)
  sweep.wait()
  pids = {int(l.split()[3]) for l in log.read_text().splitlines() if l.startswith("start")}
  deadline = time.time() + 60
  while any(alive(p) for p in pids):
    assert time.time() < deadline, "trainers outlived the killed sweep"
    time.sleep(0.2)


def kill_and_relaunch(command, log, kill_at=(2, 5, 8), seed=0):
  """Starts the sweep `command` and SIGKILLs it once the fake trainer's log holds each of
  `kill_at` starts (then after 0 to 0.4 s more), relaunching in between; then runs it to
  its end and returns that run (`subprocess.CompletedProcess`)."""
  rng = random.Random(seed)
  for starts in kill_at:
    sweep = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while log.read_text().count("start") < starts:
      assert sweep.poll() is None and time.time() < deadline
      time.sleep(0.05)
    time.sleep(rng.uniform(0, 0.4))
    kill_sweep(sweep, log)
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def alive(pid):
  # A zombie is dead but not yet reaped; a process that exits between the open and the read
  # fails the read with ESRCH.
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split(")")[-1].split()[0] != "Z"
  except (FileNotFoundError, ProcessLookupError):
    return False


@pytest.fixture(scope="session")
def local_ray():
  """One local Ray for the in-process runner tests of a test process: it takes seconds to
  start."""
  ray = pytest.importorskip("ray")
  ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
           logging_level="ERROR")
  yield
  ray.shutdown()
