"""The training loop: learning, 1 vs 8 devices, bit-exact resume (and steps per dispatch),
divergence, the CLI."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from wae_jax import config as config_lib
from wae_jax import events
from wae_jax import lock as lock_lib
from wae_jax import loop
from wae_jax import workdir as workdir_lib

# Runs a tiny config in a fresh process with a given device count, prints its history.
_SUBPROCESS = """
import json, sys
from wae_jax import config as config_lib, loop
c = config_lib.load(sys.argv[1])
c.update_from_flattened_dict(json.loads(sys.argv[2]))
r = loop.train(c, sys.argv[3])
print("HISTORY" + json.dumps({str(k): v for k, v in r.history.items()}))
"""


def tiny(name="mnist_wae_mmd:debug", **overrides):
  c = config_lib.load(name)
  c.update_from_flattened_dict({
      "model.width": 1 / 64, "gan.units": 16, "batch_size": 32, "num_steps": 40,
      "log_every": 10, "ckpt_every": 20, "eval_every": 40, "eval.num_samples": 64,
      "eval.batch_size": 256, "mmd.block_size": 16, **overrides})
  return c


@pytest.mark.parametrize("name", ["mnist_wae_mmd:debug", "mnist_wae_gan:debug", "mnist_wae_sw:debug",
                                  "mnist_vae:debug"])
def test_training_lowers_the_loss_and_writes_the_trial_directory(name, tmp_path):
  c = tiny(name, num_steps=60, log_every=20, eval_every=60, **{"optim.lr": 3e-3})
  result = loop.train(c, str(tmp_path))
  assert result.status == "done"
  assert result.history[60]["recon"] < 0.8 * result.history[20]["recon"]
  # The rate Adam used (60 steps are before the first decay) and the gradient's norm.
  assert result.history[60]["lr"] == pytest.approx(3e-3) and result.history[60]["grad_norm"] > 0
  m = workdir_lib.read_metrics(tmp_path)
  assert m["status"] == "done" and m["step"] == 60 and m["config"]["algo"] == c.algo
  assert set(m["metrics"]) == {"recon", "recon_sq_l2", "mmd_heldout", "mmd_heldout_se", "sharpness_mean", "sharpness_min",
                               "sharpness_data"}
  assert all(np.isfinite(v) for v in m["metrics"].values())
  for name_ in ("samples.png", "reconstructions.png", "config.json"):
    assert (tmp_path / name_).stat().st_size > 0
  assert (tmp_path / "checkpoints" / "60").is_dir()
  # TensorBoard: the run's hparams and its end record, train and eval scalars.
  assert events.read_hparams(tmp_path) == (
      {"algo": c.algo, "seed": 0.0, "optim.lr": 3e-3, "lam": c.lam, "prior_var": c.prior_var,
       "recon.scale": c.recon.scale}, "STATUS_SUCCESS")
  scalars = events.read_scalars(tmp_path)
  assert {"train/loss", "steps_per_sec", "eval/recon"} <= {t for s, t in scalars if s == 60}


def test_one_device_equals_eight_devices(tmp_path):
  # WAE-GAN: its adversary's step is sharded too (the MMD penalty's sharding is mmd_test's).
  name = "mnist_wae_gan:debug"
  c = tiny(name, num_steps=20, eval_every=20)
  eight = loop.train(c, str(tmp_path / "eight")).history
  assert jax.device_count() == 8
  overrides = {"num_steps": 20, "eval_every": 20, "model.width": 1 / 64, "gan.units": 16,
               "batch_size": 32, "log_every": 10, "ckpt_every": 20, "eval.num_samples": 64,
               "eval.batch_size": 256, "mmd.block_size": 16}
  out = subprocess.run(
      [sys.executable, "-c", _SUBPROCESS, name, json.dumps(overrides), str(tmp_path / "one")],
      capture_output=True, text=True, env=dict(os.environ, JAX_NUM_CPU_DEVICES="1"), timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  one = json.loads(out.stdout.split("HISTORY")[-1])
  assert sorted(map(int, one)) == sorted(eight) == [10, 20]
  for step, metrics in eight.items():
    for key, value in metrics.items():
      np.testing.assert_allclose(one[str(step)][key], value, rtol=1e-4, err_msg=f"{key}@{step}")


def test_resume_is_bit_exact_whatever_the_steps_per_dispatch_and_the_feed(tmp_path):
  # Straight: 10 steps a dispatch, batches streamed from the host. Interrupted: 7 a dispatch
  # (7 + 3 to each hook), batches gathered on the device. (N = 1, the debug default, is the
  # step alone: another program, equal up to rounding.) WAE-GAN: the adversary's state and
  # its optimizer are restored too. The first part ends `done` at 20 and goes on to 40, as an
  # ASHA climb does, across the schedule's steps (rate / 2 after 12 steps, / 10 after 28).
  name = "mnist_wae_gan:debug"
  decay = {"optim.decay_epochs": (12 / 125, 28 / 125)}  # 4,000 images, batch 32: 125 a epoch.
  straight = loop.train(tiny(name, steps_per_dispatch=10, **{"data.device_max_mb": 0}, **decay),
                        str(tmp_path / "straight"))
  first = loop.train(tiny(name, num_steps=20, steps_per_dispatch=7, **decay),
                     str(tmp_path / "resumed"))
  assert first.status == "done" and max(first.history) == 20
  resumed = loop.train(tiny(name, steps_per_dispatch=7, **decay), str(tmp_path / "resumed"))
  assert sorted(resumed.history) == [30, 40]  # It went on from the step-20 checkpoint.
  assert resumed.history[40]["lr"] == pytest.approx(tiny(name).optim.lr / 10)
  for step in (30, 40):
    assert resumed.history[step] == straight.history[step]
  for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert resumed.metrics == straight.metrics


def test_a_finished_trial_is_not_trained_again(tmp_path):
  c = tiny(num_steps=10, eval_every=10)
  loop.train(c, str(tmp_path))
  again = loop.train(c, str(tmp_path))
  assert again.status == "done" and again.history == {} and again.state is None


def test_a_run_killed_between_its_last_checkpoint_and_done_finishes_on_rerun(tmp_path):
  c = tiny(num_steps=10, eval_every=10)
  first = loop.train(c, str(tmp_path))
  # What a kill in that window leaves: the final checkpoint, and `running` in metrics.json.
  record = workdir_lib.read_metrics(tmp_path)
  workdir_lib.write_json(tmp_path / workdir_lib.METRICS, {**record, "status": "running",
                                                          "metrics": {}})
  again = loop.train(c, str(tmp_path))
  assert again.status == "done" and again.history == {}
  assert workdir_lib.read_metrics(tmp_path)["status"] == "done"
  assert again.metrics == first.metrics  # The final evaluation, done again, is the same.


def test_a_corrupt_newest_checkpoint_is_set_aside_and_the_one_before_resumes(tmp_path):
  c = tiny(num_steps=20, ckpt_every=10, eval_every=20)
  straight = loop.train(c, str(tmp_path / "straight"))
  loop.train(tiny(num_steps=20, ckpt_every=10, eval_every=20), str(tmp_path / "w"))
  workdir_lib.write_json(tmp_path / "w" / workdir_lib.METRICS, {
      **workdir_lib.read_metrics(tmp_path / "w"), "status": "running"})
  for f in (tmp_path / "w" / "checkpoints" / "20").rglob("*"):
    if f.is_file() and f.stat().st_size > 0 and f.name != "commit_success.txt":
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # Truncated, as by a crash.
  resumed = loop.train(c, str(tmp_path / "w"))
  assert resumed.status == "done" and sorted(resumed.history) == [20]
  assert [p.name for p in (tmp_path / "w" / "aside").iterdir()][0].endswith("checkpoint-20")
  np.testing.assert_allclose(resumed.history[20]["loss"], straight.history[20]["loss"],
                             rtol=1e-6)


def test_an_unreadable_metrics_json_is_rewritten(tmp_path):
  c = tiny(num_steps=10, eval_every=10)
  loop.train(c, str(tmp_path))
  (tmp_path / workdir_lib.METRICS).write_text('{"status": "do')
  assert loop.train(c, str(tmp_path)).status == "done"
  assert workdir_lib.read_metrics(tmp_path)["status"] == "done"


def test_a_trial_directory_has_one_trainer(tmp_path):
  with lock_lib.Lock(tmp_path, "trainer"):
    with pytest.raises(lock_lib.Busy, match="owned by trainer"):
      loop.train(tiny(), str(tmp_path))
  assert not (tmp_path / workdir_lib.METRICS).exists()


def test_divergence_is_recorded_with_its_step(tmp_path):
  c = tiny(**{"recon.scale": 1e38})  # The first loss overflows to inf.
  result = loop.train(c, str(tmp_path))
  m = workdir_lib.read_metrics(tmp_path)
  assert result.status == "diverged" == m["status"]
  assert m["step"] == 1 and "at step 1" in m["error"]


def test_encoder_pretraining_moves_codes_towards_the_prior(tmp_path):
  c = tiny(num_steps=1, eval_every=1,
           **{"pretrain.max_steps": 100, "pretrain.batch_size": 64, "pretrain.tol": 1e-9})
  model_state = loop.train(c, str(tmp_path / "pre")).metrics
  baseline = loop.train(tiny(num_steps=1, eval_every=1), str(tmp_path / "no")).metrics
  assert model_state["mmd_heldout"] < baseline["mmd_heldout"]


@pytest.mark.slow
def test_cli_sigterm_checkpoints_and_a_rerun_finishes(tmp_path):
  """TPU preemption: SIGTERM saves a checkpoint, exits 143; the same command resumes."""
  cmd = [sys.executable, "-m", "wae_jax.cli.train", "--config=mnist_wae_mmd:debug",
         f"--workdir={tmp_path}", "--config.num_steps=100000", "--config.log_every=10",
         "--config.model.width=0.015625"]
  env = dict(os.environ, JAX_NUM_CPU_DEVICES="1")
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
  deadline = time.time() + 240
  while time.time() < deadline:
    m = workdir_lib.read_metrics(tmp_path)
    if m and m["status"] == "running" and list(tmp_path.glob("events.out.tfevents.*")):
      break
    time.sleep(1)
  time.sleep(5)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=240)
  assert proc.returncode == 143, out[-3000:]
  assert _hparams(tmp_path) == {"num_steps", "log_every", "model.width"}  # What it set.
  m = workdir_lib.read_metrics(tmp_path)
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert m["status"] == "running" and saved and saved[-1] == m["step"] > 0
  # Rerun with a reachable end: it resumes and finishes.
  done = subprocess.run(cmd[:-3] + [f"--config.num_steps={m['step'] + 20}", "--config.log_every=10",
                                    "--config.model.width=0.015625"],
                        capture_output=True, text=True, env=env, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"Resumed from the checkpoint at step {m['step']}" in done.stderr
  assert workdir_lib.read_metrics(tmp_path)["status"] == "done"
  # The console: a line a log step (the second with speed and ETA), no library INFO lines
  # (absl's "I1201 ..." prefix), no config dump.
  lines = done.stderr.splitlines()
  logged = [l for l in lines if re.fullmatch(r"\d\d:\d\d:\d\d \S+  step \d+/\d+  loss .*", l)]
  assert len(logged) >= 2 and all("steps/s  ETA" in l for l in logged[1:]), done.stderr[-3000:]
  assert not any(re.match(r"[IW]\d{4} ", l) or "Hyperparameters" in l for l in lines), lines


@pytest.mark.slow
def test_after_a_sigkill_metrics_json_names_no_step_past_the_newest_checkpoint(tmp_path):
  """A log step's record is written before its checkpoint, or with none due: it names the
  step the trainer resumes from, not the one it logged."""
  cmd = [sys.executable, "-m", "wae_jax.cli.train", "--config=mnist_wae_mmd:debug",
         f"--workdir={tmp_path}", "--config.num_steps=100000", "--config.log_every=1",
         "--config.ckpt_every=7", "--config.steps_per_dispatch=1", "--config.model.width=0.015625",
         "--config.batch_size=8"]
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=dict(os.environ, JAX_NUM_CPU_DEVICES="1"))
  try:
    deadline = time.time() + 240
    while time.time() < deadline and len(workdir_lib.checkpoint_steps(tmp_path)) < 2:
      time.sleep(0.2)
    time.sleep(0.5)  # Some log steps past the second checkpoint.
  finally:
    proc.kill()
    proc.wait()
  m, saved = workdir_lib.read_metrics(tmp_path), workdir_lib.checkpoint_steps(tmp_path)
  assert len(saved) >= 2 and m["status"] == "running"
  assert m["step"] <= saved[-1] and m["train"]["loss"] > 0


def test_a_kill_in_the_final_window_leaves_no_checkpoint_past_keep_ckpts(tmp_path):
  c = tiny(num_steps=3, log_every=1, ckpt_every=1, eval_every=3, keep_ckpts=2)
  loop.train(c, str(tmp_path))
  checkpoints = tmp_path / "checkpoints"
  assert workdir_lib.checkpoint_steps(tmp_path) == [2, 3]
  # A kill after the final save, before orbax removed the oldest (and before `done`):
  shutil.copytree(checkpoints / "2", checkpoints / "1")
  workdir_lib.write_json(tmp_path / workdir_lib.METRICS, {
      **workdir_lib.read_metrics(tmp_path), "status": "running"})
  assert loop.train(c, str(tmp_path)).status == "done"
  assert workdir_lib.checkpoint_steps(tmp_path) == [2, 3]


def _hparams(workdir) -> set[str]:
  """The HParams a trial wrote for TensorBoard's dashboard."""
  return set(events.read_hparams(workdir)[0])


@pytest.mark.parametrize("field,value", [("batch_size", 8000), ("data.heldout", 4990)])
def test_a_batch_the_training_set_cannot_fill_is_refused_before_anything_is_written(
    tmp_path, field, value):
  """Refused after writing, the corrected command would then be refused as another config."""
  c = config_lib.load("mnist_wae_mmd:debug")
  head, _, tail = field.rpartition(".")
  (c[head] if head else c)[tail] = value
  with pytest.raises(config_lib.ConfigError, match="^config.batch_size: .* exceeds the .* "
                     "training images that bundled:mnist leaves after config.data.heldout="):
    loop.train(c, str(tmp_path / "t"))
  assert not (tmp_path / "t").exists() or not any((tmp_path / "t").iterdir())
