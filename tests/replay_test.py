"""A replay takes the live driver's decisions: a search run live on the fake trainer and the
same search replayed on the curves of a full-budget run of the same trials agree."""
import sys

from conftest import FAKE_TRAINER, sweep_file
import pytest

from wae_jax import curves as curves_lib
from wae_jax import replay
from wae_jax import results as results_lib
from wae_jax import runner
from wae_jax import searches
from wae_jax import study
from wae_jax import workdir as workdir_lib

SWEEP = """
def get_hyper(h):
  return h.chainit([h.product([h.fixed("config", b), h.fixed("config.num_steps", 8),
                               h.fixed("config.step_s", 0.0),
                               h.random_search(6, {"config.quality": h.uniform(0, 10)}, seed=i)])
                    for i, b in enumerate(["fb", "fa"])])  # Not in sorted order.

def get_search(arg=None):
  return %r
"""


SEARCHES = [
    {"name": "asha", "min_steps": 2, "eta": 2, "max_steps": 8, "metric": "domain_fid"},
    {"name": "curve", "min_steps": 2, "eta": 3, "max_steps": 8, "metric": "domain_fid"},
]


@pytest.mark.slow
def test_replay_decides_as_the_live_driver(tmp_path):
  trainer = [sys.executable, FAKE_TRAINER, f"--log={tmp_path / 'log'}"]
  run = lambda s, w: runner.run_sweep(s, tmp_path / w, executor="local",
                                      options={"parallel": 1}, trainer=trainer, storage="")
  spec = sweep_file(tmp_path, SWEEP % SEARCHES[0])
  full = study.load_sweep(spec, check=False, search="random")
  assert run(full, "full") == {"done": 12}
  curves = {t: curves_lib.read_curve(tmp_path / "full" / t, "domain_fid") for t in full.trials}
  # `wae-results --replay` takes the trials in the sweep file's order, as the driver does.
  assert list(results_lib.read_results(tmp_path / "full").trials["trial"]) == list(full.trials)
  for i, search in enumerate(SEARCHES):
    s = study.load_sweep(sweep_file(tmp_path, SWEEP % search, f"s{i}.py"), check=False)
    assert run(s, f"live{i}") == {"done": 12}
    replayed = searches.parse(search)
    replay.replay(replayed, study.brackets(s.trials), curves, "domain_fid", 8)
    live = {t: workdir_lib.read_json(tmp_path / f"live{i}" / t / workdir_lib.SEARCH)
            for t in s.trials}
    assert _decisions({t: replayed.note(t) for t in s.trials}) == _decisions(live)


def _decisions(notes):
  """Each trial's rung and results (to 5 digits: the events keep float32)."""
  return {t: (n["target"], {k: float(f"{v:.5g}") for k, v in n["results"].items()})
          for t, n in notes.items()}
