"""The tpe search: its proposals come from the bracket's h.space, fill each bracket to its
size at equal compute, concentrate where the results are good, and refuse points outside."""
import statistics

import pytest

from wae_jax import hyper
from wae_jax import replay
from wae_jax import searches
from wae_jax import study

SPACE = {"config.quality": hyper.uniform(0, 10)}
BEST = 7.0  # Where the toy objective below is lowest.


def _search(**options):
  return searches.parse({"name": "tpe", "min_steps": 1, "eta": 3, "max_steps": 3,
                         "metric": "domain_fid", "trials": 40, "startup": 6, **options})


def _run(search, brackets=("f",), spaces=None, flat=()):
  """Drives the search serially on the objective |quality - BEST| (+ 1 / steps), from 6
  random points a bracket (of `SPACE`, or its own in `spaces`), where a bracket in `flat`
  scores every point alike; returns every trial it made, by id."""
  spaces = {b: {"config": b, **(spaces or {}).get(b, SPACE)} for b in brackets}
  trials = {study.trial_id(t): t for b in brackets for t in hyper.product([
      hyper.fixed("config", b), hyper.random_search(6, {k: v for k, v in spaces[b].items()
                                                        if k != "config"}, seed=0)])}
  ledger = searches.Ledger(trials, study.brackets(trials), {t: {} for t in trials},
                           {t: None for t in trials}, spaces=spaces)
  search.restore(ledger)
  while job := search.next():
    trials.update(job.proposed)
    (tid,) = job.tids
    flat_value = 1000.0 if trials[tid]["config"] in flat else None
    value = (flat_value or abs(trials[tid]["config.quality"] - BEST)) + 1 / job.num_steps
    search.finished(job, [{"status": "done", "step": job.num_steps, "num_steps": job.num_steps,
                           "metrics": {"domain_fid": value}}])
  return trials


def test_proposals_fill_each_bracket_from_its_space_at_equal_compute():
  search = _search(trials=12)
  trials = _run(search, brackets=("f", "g"))
  assert len(trials) == 24 and len(set(map(study.trial_id, trials.values()))) == 24
  assert search.planned() == 24
  assert search.status()[0] == "  24 of 24 points drawn, the rest to be proposed by TPE"
  assert all(t["config.quality"] in SPACE["config.quality"] for t in trials.values())
  assert search.scheduler.spent("f") == search.scheduler.spent("g")
  assert all(search.scheduler.best(b) for b in ("f", "g"))


def test_tpe_proposes_near_the_best_results_random_draws_do_not():
  trials = list(_run(_search()).values())
  proposed = [abs(t["config.quality"] - BEST) for t in trials[6:]]
  drawn = [abs(t["config.quality"] - BEST)
           for t in hyper.random_search(34, SPACE, seed=1)]
  assert statistics.median(proposed) < 0.5 * statistics.median(drawn)


def test_pooled_a_bracket_learns_a_parameter_it_shares_from_the_others():
  # Bracket g's metric says nothing (every point alike, on another scale) and it has a
  # parameter of its own; f's says where `quality` is good. Pooled, g proposes there too.
  spaces = {"g": {**SPACE, "config.own": hyper.loguniform(1, 100)}}
  def distance(pool):
    trials = _run(_search(pool=pool), brackets=("f", "g"), spaces=spaces, flat=("g",))
    proposed = [t for t in list(trials.values())[12:] if t["config"] == "g"]
    assert len(proposed) == 34 and all(t["config.own"] in spaces["g"]["config.own"]
                                       for t in proposed)
    return statistics.median(abs(t["config.quality"] - BEST) for t in proposed)
  assert distance(pool=True) < 0.5 * distance(pool=False)


def test_the_same_state_and_seed_propose_the_same_points():
  assert _run(_search(seed=3)) == _run(_search(seed=3)) != _run(_search(seed=4))


def test_a_space_with_no_new_point_left_stops_proposing():
  search = _search(trials=12)
  search.restore(searches.Ledger({}, {"f": []}, {}, {}, spaces={
      "f": {"config": "f", "config.quality": hyper.choice([1.0, 2.0, 3.0])}}))
  starts = []
  while job := search.next():
    starts += [t["config.quality"] for t in job.proposed.values()]
    search.finished(job, [{"status": "done", "step": job.num_steps, "num_steps": job.num_steps,
                           "metrics": {"domain_fid": 1.0}}])
  assert sorted(starts) == [1.0, 2.0, 3.0] and search.planned() == 3


def test_a_replay_refuses_it():
  with pytest.raises(ValueError, match="tpe search proposes new points, which a replay"):
    replay.replay(_search(), {"f": ["a"]}, {"a": {1: 1.0, 3: 0.5}}, "domain_fid", 3)


def test_a_point_outside_its_space_is_refused():
  trials = {"a": {"config": "f", "config.quality": 12.0}}
  ledger = searches.Ledger(trials, {"f": ["a"]}, {"a": {}}, {"a": None},
                           spaces={"f": {"config": "f", **SPACE}})
  with pytest.raises(hyper.SweepError, match="config.quality=12.0, outside its h.space"):
    _search().restore(ledger)


SWEEP = """
def get_hyper(h):
  space = {"config.lam": h.loguniform(1, 100)}
  return h.chainit([
      h.product([h.fixed("config", "mnist_wae_mmd:debug"),
                 h.chainit([h.random_search(2, space, 0), h.space(space)])]),
      h.product([h.fixed("config", "mnist_wae_gan:debug"), h.%s]),
  ])
def get_search(arg=None):
  return {"min_steps": 100, "eta": 3, "max_steps": 1200, "metric": "mmd_heldout", %s}
"""


TPE = "'name': 'tpe', 'trials': 4"


@pytest.mark.parametrize("sweep, message", [
    (("random_search(2, space, 1)", TPE), "mnist_wae_gan:debug has none"),
    (("space(space)", "'name': 'asha'"), "the asha search runs only the file's trials"),
    (("space({'config.lamb': h.uniform(0, 1)})", TPE), "config.lamb: no such field"),
])
def test_a_sweep_file_with_spaces_is_checked(tmp_path, sweep, message):
  spec = tmp_path / "s.py"
  spec.write_text(SWEEP % sweep)
  with pytest.raises(hyper.SweepError, match=message):
    study.load_sweep(str(spec))



@pytest.mark.parametrize("options, message", [
    ({"trials": 0}, "search.trials: must be an integer >= 1"),
    ({"startup": 1}, "search.startup: must be an integer >= 2"),
    ({"seed": -1}, "search.seed: must be an integer >= 0"),
    ({"pool": 1}, "search.pool: must be true or false, got 1"),
])
def test_bad_options_name_the_field(options, message):
  with pytest.raises(hyper.SweepError, match=message):
    _search(**options)
