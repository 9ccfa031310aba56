"""The curve search: its extrapolation, a late bloomer it keeps and ASHA loses, and its
predictions kept in the trials' notes for a relaunch."""
import math

import pytest

from wae_jax import hyper
from wae_jax import replay
from wae_jax import searches
from wae_jax.searches import curve as curve_lib

STEPS = range(75, 1201, 75)
# Three trials that have all but stopped improving, and one still falling steeply at the
# first rung (300), the worst there and the best at the full budget (1,200).
CURVES = {
    "a": {t: 100 + 500 / t for t in STEPS},
    "b": {t: 104 + 500 / t for t in STEPS},
    "c": {t: 108 + 500 / t for t in STEPS},
    "late": {t: 20 + 30_000 / t for t in STEPS},
}


def _search(name, **options):
  return searches.parse({"name": name, "min_steps": 300, "eta": 4, "max_steps": 1200,
                         "metric": "domain_fid", **options})


def test_too_few_points_are_the_last_value_and_a_falling_curve_predicts_lower():
  assert curve_lib.extrapolate({75: 6.0, 150: 3.0}, 600) == (3.0, 0.0)
  flat_mean, flat_sd = curve_lib.extrapolate({t: 5.0 for t in (75, 150, 225, 300)}, 1200)
  assert flat_mean == pytest.approx(5.0) and flat_sd == pytest.approx(0.0, abs=1e-9)
  mean, sd = curve_lib.extrapolate({75: 8.0, 150: 7.0, 225: 6.0, 300: 5.0}, 1200)
  assert mean < 5.0 and sd > 0  # Falling on: below its last value, and uncertain.


def test_extrapolation_of_a_power_law_brackets_its_value():
  law = lambda t: 2.0 + 40.0 / t
  mean, sd = curve_lib.extrapolate({t: law(t) for t in (75, 150, 225, 300)}, 1200)
  assert abs(mean - law(1200)) < sd < 0.5


def test_the_late_bloomer_is_kept_by_the_curve_search_and_lost_by_asha():
  brackets = {"x": list(CURVES)}
  lost = replay.replay(_search("asha"), brackets, CURVES, "domain_fid", 1200)
  kept = replay.replay(_search("curve"), brackets, CURVES, "domain_fid", 1200)
  assert lost.best_kept == {"x": False} and lost.best_rank["x"] == {300: 4}
  assert kept.best_kept == {"x": True} and kept.steps == lost.steps  # At the same cost.


def test_predictions_are_noted_and_a_relaunch_ranks_on_them():
  first = _search("curve")
  trials = {t: {"config": "x"} for t in CURVES}
  first.restore(searches.Ledger(trials, {"x": list(CURVES)}, {t: {} for t in trials},
                                {t: None for t in trials}, lambda t, m: CURVES[t]))
  while (job := first.next()) and job.num_steps == 300:
    (tid,) = job.tids
    first.finished(job, [{"status": "done", "step": 300, "num_steps": 300,
                          "metrics": {"domain_fid": CURVES[tid][300]}}])
  assert job.tids == ("late",)  # The first promotion.
  notes = {t: first.note(t) for t in trials}
  assert set(notes["late"]["predicted"]) == {"300"}
  # Restored without the curves (events lost): the noted predictions rank the rung.
  again = _search("curve")
  again.restore(searches.Ledger(trials, {"x": list(CURVES)}, {t: {} for t in trials}, notes))
  assert [again.scheduler.score(t, 300) for t in trials] == pytest.approx(
      [first.scheduler.score(t, 300) for t in trials])
  assert again.next().tids == ("late",)  # It resumes the climb in flight.


@pytest.mark.parametrize("optimism", [-1, math.inf, "1", True])
def test_bad_optimism_names_the_field(optimism):
  with pytest.raises(hyper.SweepError, match="search.optimism: must be a finite number >= 0"):
    _search("curve", optimism=optimism)
