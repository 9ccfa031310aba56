"""`wae-sweep status`: the view of the search that ran the sweep, whatever the file says."""
import io
import sys

from conftest import FAKE_TRAINER, sweep_file

from wae_jax import progress
from wae_jax import runner
from wae_jax import study

SWEEP = """
def get_hyper(h):
  return h.product([h.fixed("config", "fa"), h.fixed("config.num_steps", 4),
                    h.sweep("config.quality", [1, 2, 3])])
def get_search(arg=None):
  return {"name": "asha", "min_steps": 2, "eta": 2, "max_steps": 4, "metric": "domain_fid"}
"""


def test_status_of_a_sweep_run_by_random_search_shows_no_rungs(tmp_path):
  spec = sweep_file(tmp_path, SWEEP)
  trainer = [sys.executable, FAKE_TRAINER, f"--log={tmp_path / 'log'}"]
  by_random = study.load_sweep(spec, check=False, search="random")
  assert runner.run_sweep(by_random, tmp_path / "w", executor="local", trainer=trainer,
                          storage="", out=io.StringIO()) == {"done": 3}
  out = io.StringIO()
  progress.status(study.load_sweep(spec, check=False), tmp_path / "w", out)
  lines = out.getvalue().splitlines()
  assert lines[0].endswith("3 trials  done 3")
  assert lines[1] == "  run by the random search (--search=random), not the file's asha"
  assert "rung" not in out.getvalue().replace(lines[1], "")
