"""Multi-host for real: 2 JAX processes on 127.0.0.1 with 4 CPU devices each."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from wae_jax import events
from wae_jax import workdir as workdir_lib

ARGS = ["--config=mnist_wae_mmd:debug", "--config.model.width=0.015625",
        "--config.batch_size=32", "--config.num_steps=20", "--config.log_every=10",
        "--config.ckpt_every=10", "--config.eval_every=20", "--config.eval.num_samples=64",
        "--config.mmd.block_size=16"]


def _train(workdir, *extra, env=None):
  return subprocess.Popen([sys.executable, "-m", "wae_jax.cli.train", f"--workdir={workdir}",
                           *ARGS, *extra], env={**os.environ, **(env or {})},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _train_losses(workdir):
  """Exact float32 train scalars from the TensorBoard event files."""
  return {k: v for k, v in events.read_scalars(workdir).items() if k[1].startswith("train/")}


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_and_their_checkpoint_restores_in_one(tmp_path):
  port = _free_port()
  procs = [_train(tmp_path / "two", "--config.multihost=True", env={
      "JAX_NUM_CPU_DEVICES": "4", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
      "WAE_NUM_PROCESSES": "2", "WAE_PROCESS_ID": str(i)}) for i in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
  one = _train(tmp_path / "one", env={"JAX_NUM_CPU_DEVICES": "8"})
  out = one.communicate(timeout=600)[0]
  assert one.returncode == 0, out[-3000:]

  two_losses, one_losses = _train_losses(tmp_path / "two"), _train_losses(tmp_path / "one")
  assert set(two_losses) == set(one_losses) and (20, "train/loss") in one_losses
  for key, value in one_losses.items():
    np.testing.assert_allclose(two_losses[key], value, rtol=1e-5, err_msg=str(key))
  assert workdir_lib.read_metrics(tmp_path / "two")["status"] == "done"
  # Only the lead process wrote the trial files.
  assert len(list((tmp_path / "two").glob("events.out.tfevents.*"))) == 1

  # The 2-process checkpoint restores in a single process, which trains on from it.
  resumed = _train(tmp_path / "two", "--config.num_steps=30", env={"JAX_NUM_CPU_DEVICES": "1"})
  out = resumed.communicate(timeout=600)[0]
  assert resumed.returncode == 0, out[-3000:]
  assert "Resumed from the checkpoint at step 20" in out
  assert workdir_lib.read_metrics(tmp_path / "two")["step"] == 30
