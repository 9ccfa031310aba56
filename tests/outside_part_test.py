"""The registry's seam from outside: tests/fixtures/rff_mmd.py, a regulariser with a setting
of its own that wae_jax does not know, trains, resumes and is evaluated through the CLIs,
named by its module (`--config.algo=rff_mmd`) on the Python path."""
import os
import subprocess
import sys

import numpy as np
import pytest

from wae_jax import config as config_lib
from wae_jax import regularisers
from wae_jax import workdir as workdir_lib

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
# A tiny net on the bundled MNIST, evaluated by the held-out metrics alone.
FLAGS = ["--config=mnist_wae_mmd:debug", "--config.algo=rff_mmd", "--config.rff.num_features=32",
         "--config.model.width=0.015625", "--config.batch_size=32", "--config.log_every=5",
         "--config.ckpt_every=5", "--config.eval_every=10", "--config.eval.num_samples=64",
         "--config.eval.batch_size=256", "--config.mmd.block_size=16",
         "--config.eval.final_evaluators=heldout"]


def _run(module, *args):
  path = os.pathsep.join(p for p in (FIXTURES, os.environ.get("PYTHONPATH")) if p)
  return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=path), timeout=600)


def _ok(result):
  assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.mark.slow
def test_an_outside_regulariser_trains_resumes_and_evaluates_through_the_clis(tmp_path,
                                                                              monkeypatch):
  workdir = str(tmp_path / "trial")
  refused = _run("wae_jax.cli.train", *FLAGS, f"--workdir={workdir}", "--config.rff.num_features=0")
  assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == (
      "wae-train: error: config.rff.num_features: must be an integer >= 1, got 0")
  assert not os.path.exists(workdir)

  _ok(_run("wae_jax.cli.train", *FLAGS, f"--workdir={workdir}", "--config.num_steps=10"))
  first = workdir_lib.read_metrics(workdir)
  assert first["status"] == "done" and first["step"] == 10
  assert first["config"]["algo"] == "rff_mmd" and first["config"]["rff.num_features"] == 32
  assert np.isfinite(first["train"]["rff_mmd"]) and first["train"]["rff_mmd"] >= 0

  resumed = _ok(_run("wae_jax.cli.train", *FLAGS, f"--workdir={workdir}", "--config.num_steps=20"))
  assert "Resumed from the checkpoint at step 10" in resumed.stderr
  assert workdir_lib.read_metrics(workdir)["step"] == 20

  _ok(_run("wae_jax.cli.evaluate", f"--workdir={workdir}", "--num_samples=64"))
  record = workdir_lib.read_metrics(workdir)
  assert record["status"] == "done" and np.isfinite(record["metrics"]["mmd_heldout"])
  assert record["metrics"]["eval_num_samples"] == 64

  # Read back here: as saved where the module cannot be imported, with its section otherwise.
  saved = config_lib.read(workdir)
  assert saved.algo == "rff_mmd" and saved.rff.num_features == 32
  with pytest.raises(config_lib.ConfigError, match="^config.algo: unknown regulariser 'rff_mmd'"):
    config_lib.validate(saved, num_devices=8)
  monkeypatch.syspath_prepend(FIXTURES)
  monkeypatch.setattr(regularisers, "_REGISTRY", dict(regularisers._REGISTRY))
  try:
    c = config_lib.read(workdir)
    config_lib.validate(c, num_devices=8)
    assert c.rff.num_features == 32 and c.num_steps == 20
  finally:
    sys.modules.pop("rff_mmd", None)
