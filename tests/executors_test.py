"""Executors with the real trainer: the warm pool trains what trainer subprocesses train, bit
for bit, and survives its driver's SIGKILLs (each trial resumes from its checkpoint)."""
import json
import random
import subprocess
import sys
import time

from conftest import REPO, alive, sweep_file
import pytest

from wae_jax import lock as lock_lib
from wae_jax import workdir as workdir_lib

TINY = """
def get_hyper(h):
  return h.product([
      h.fixed("config", "mnist_wae_mmd:debug"), h.fixed("config.model.width", 1 / 64),
      h.fixed("config.num_steps", 40), h.fixed("config.eval_every", 10),
      h.fixed("config.ckpt_every", 10), h.fixed("config.log_every", 10),
      h.fixed("config.eval.evaluators", ("heldout",)), h.fixed("config.eval.num_samples", 64),
      h.fixed("config.data.heldout", 256),
      h.sweep("config.lam", [1.0, 10.0, 100.0, 1000.0])])

def get_search(arg=None):
  return {"name": "asha", "min_steps": 10, "eta": 2, "max_steps": 40, "metric": "mmd_heldout"}
"""


def _run(spec, workdir, executor):
  return subprocess.Popen(
      [sys.executable, "-m", "wae_jax.cli.sweep", "run", spec, f"--workdir={workdir}",
       f"--executor={executor}", "--parallel=1", "--optuna="],  # One: ASHA's order is fixed.
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _outcome(workdir):
  """Each trial's search note and final metrics: what a rerun must reproduce."""
  out = {}
  for trial in sorted(p for p in workdir.iterdir() if p.is_dir()):
    record = workdir_lib.read_record(trial)
    out[trial.name] = (json.loads((trial / workdir_lib.SEARCH).read_text()),
                       record["status"], record["step"], record["metrics"]["mmd_heldout"])
  return out


def _owners_gone(workdir, deadline_s=120):
  """Waits until no live process holds a trial's lock (a warm worker checkpoints and leaves
  after its driver's death)."""
  deadline = time.time() + deadline_s
  for path in workdir.glob(f"*/{lock_lib.NAME}"):
    try:
      pid = json.loads(path.read_text())["pid"]
    except (OSError, ValueError, KeyError):
      continue
    while alive(pid):
      assert time.time() < deadline, f"a worker outlived its driver: {pid}"
      time.sleep(0.2)


@pytest.mark.slow
def test_warm_workers_train_what_trainer_subprocesses_train_and_survive_kills(tmp_path):
  """An uninterrupted sweep of trainer subprocesses against a warm one killed three times:
  the same decisions and the same metrics, bit for bit."""
  spec = sweep_file(tmp_path, TINY)
  sweep = _run(spec, tmp_path / "local", "local")
  assert sweep.wait(timeout=600) == 0, sweep.stdout.read()
  rng, killed = random.Random(0), tmp_path / "killed"
  for _ in range(3):  # Each launch killed just after a rung's result: 7 climbs in all.
    sweep = _run(spec, killed, "warm")
    while not sweep.stdout.readline().startswith("rung "):
      assert sweep.poll() is None, "the sweep ended before its kill"
    time.sleep(rng.uniform(0, 0.2))
    sweep.kill()
    assert sweep.wait() == -9  # Killed before it ended.
    _owners_gone(killed)
  sweep = _run(spec, killed, "warm")
  assert sweep.wait(timeout=600) == 0, sweep.stdout.read()
  assert _outcome(killed) == _outcome(tmp_path / "local")


# The same trials to their own full budget, two to a pack.
PACKED = TINY.split("def get_search")[0]


@pytest.mark.slow
def test_a_warm_worker_trains_packs_as_trainer_subprocesses_do(tmp_path):
  spec = sweep_file(tmp_path, PACKED)
  metrics = {}
  for executor in ("local", "warm"):
    sweep = subprocess.run(
        [sys.executable, "-m", "wae_jax.cli.sweep", "run", spec, f"--workdir={tmp_path / executor}",
         f"--executor={executor}", "--parallel=1", "--pack=2", "--optuna="],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    assert "as 2 packs of <= 2" in sweep.stdout
    metrics[executor] = {p.name: workdir_lib.read_record(p)["metrics"]
                         for p in (tmp_path / executor).iterdir() if p.is_dir()}
  assert len(metrics["warm"]) == 4 and metrics["warm"] == metrics["local"]


LONG = """
def get_hyper(h):
  return h.product([
      h.fixed("config", "mnist_wae_mmd:debug"), h.fixed("config.model.width", 1 / 64),
      h.fixed("config.num_steps", 100000), h.fixed("config.ckpt_every", 100000),
      h.fixed("config.log_every", 10), h.fixed("config.batch_size", 32),
      h.sweep("config.seed", [0])])
"""


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_killed_drivers_trainer_saves_its_stop_checkpoint(tmp_path, executor):
  """The runner's promise: the trainer of a SIGKILLed driver checkpoints the step it reached
  (no checkpoint is due for 100,000 steps), so a relaunch redoes nothing."""
  driver = _run(sweep_file(tmp_path, LONG), tmp_path / "w", executor)
  try:
    deadline = time.time() + 180
    while not [l for l in (tmp_path / "w").glob(f"*/{workdir_lib.LOG}")
               if " step 20/" in l.read_text()]:
      assert time.time() < deadline and driver.poll() is None, "no trainer got going"
      time.sleep(0.5)
  finally:
    driver.kill()
    driver.wait()
  _owners_gone(tmp_path / "w")
  [trial] = [p for p in (tmp_path / "w").iterdir() if p.is_dir()]
  reached = [int(l.split("Stopped at step ")[1].split(";")[0])
             for l in (trial / workdir_lib.LOG).read_text().splitlines() if "Stopped at" in l]
  assert reached and reached[0] >= 20, (trial / workdir_lib.LOG).read_text()[-2000:]
  assert workdir_lib.checkpoint_steps(trial) == reached
  assert workdir_lib.read_record(trial)["step"] == reached[0]
