"""A trainer under a sweep's supervisor: a damaged trial directory is repaired or left for a
person, never marked failed."""
import pytest

from wae_jax import loop
from wae_jax import supervise
from wae_jax import workdir as workdir_lib
from loop_test import tiny

TINY = ["--config=mnist_wae_mmd:debug", "--config.model.width=0.015625",
        "--config.gan.units=16", "--config.batch_size=32", "--config.log_every=10",
        "--config.ckpt_every=20", "--config.eval.num_samples=64", "--config.eval.batch_size=256",
        "--config.mmd.block_size=16"]


@pytest.mark.slow
def test_a_damaged_config_json_is_rebuilt_or_left_damaged_not_failed(tmp_path):
  d = str(tmp_path / "t")
  loop.train(tiny(num_steps=20, eval_every=20), d)
  flags = [*TINY, f"--workdir={d}", "--config.num_steps=40", "--config.eval_every=40"]
  (tmp_path / "t" / workdir_lib.CONFIG).write_text('{"seed": 0, "al')
  record = supervise.run_trial(flags, d, num_steps=40)  # A climb: 20 -> 40.
  assert record["status"] == "done" and record["step"] == 40  # Rebuilt from metrics.json.
  assert workdir_lib.read_json(tmp_path / "t" / workdir_lib.CONFIG)["num_steps"] == 40

  (tmp_path / "t" / workdir_lib.CONFIG).write_text('{"seed": 0, "al')
  (tmp_path / "t" / workdir_lib.METRICS).write_text('{"status": "runn')
  flags[-2] = "--config.num_steps=60"
  record = supervise.run_trial(flags, d, num_steps=60)
  assert record["status"] == workdir_lib.DAMAGED not in workdir_lib.FINAL
  assert record["error"].startswith("wae-train: error: ") and "config.json: unreadable" in (
      record["error"])
  assert workdir_lib.checkpoint_steps(d) == [20, 40]  # Nothing done.
