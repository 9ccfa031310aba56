"""ASHA: the promotion rule on hand-checked curves, equal compute per bracket, the search's
validation, replay, and sweeps that climb (killed and relaunched) with a fake trainer."""
import sys

from conftest import FAKE_TRAINER, kill_and_relaunch, log_counts, sweep_file
import pytest

from wae_jax import hyper
from wae_jax import replay
from wae_jax import runner
from wae_jax import searches
from wae_jax import study
from wae_jax import workdir as workdir_lib
from wae_jax.searches import asha


def _asha(min_steps, eta, max_steps, metric="domain_fid"):
  return searches.parse({"name": "asha", "min_steps": min_steps, "eta": eta,
                         "max_steps": max_steps, "metric": metric})


def _scheduler(search, brackets):
  return asha.Scheduler(search.rungs, search.eta, search.key, brackets)


SEARCH = _asha(1, 2, 4)  # domain_fid: lower is better.


def _serial(scheduler, curves):
  """ASHA with one worker: each decision, then its result. Returns the decisions."""
  decisions = []
  while job := scheduler.next_job():
    decisions.append(job)
    scheduler.record(*job, curves[job[0]][job[1]])
  return decisions


def test_rungs():
  assert SEARCH.rungs == (1, 2, 4)
  assert asha.rungs_of(100, 3, 1200) == (100, 300, 900, 1200)
  assert asha.rungs_of(300, 4, 300) == (300,)


# Rung 1 results arrive as a 5, b 3, c 4, d 1, e 6, f 2.
CURVES = {"a": {1: 5}, "b": {1: 3, 2: 2.5}, "c": {1: 4}, "d": {1: 1, 2: 0.5, 4: 0.4},
          "e": {1: 6}, "f": {1: 2, 2: 3}}


def test_promotion_rule_on_hand_checked_curves():
  s = _scheduler(SEARCH, {"x": list("abcdef")})
  assert _serial(s, CURVES) == [
      ("a", 1),  # Nothing to promote: a new trial.
      ("b", 1),  # Rung 1 holds [a]: its top half (1 // 2 = 0 trials) is empty.
      ("b", 2),  # [b, a]: b is the top half, and goes up at once: no rung waits.
      ("c", 1),  # Rung 2 holds [b]: empty top half; rung 1's top half [b] is up already.
      ("d", 1),  # [b, c, a]: top 1 is b, up already.
      ("d", 2),  # [d, b, c, a]: top 2 are d and b; d goes up.
      ("d", 4),  # Rung 2 holds [d, b]: top 1 is d; the highest promotion comes first.
      ("e", 1),  # Nothing promotable: rung 2's top is d (up), rung 1's d and b (up).
      ("f", 1),
      ("f", 2),  # [d, f, b, c, a, e]: top 3 are d, f, b; f is the one not yet up.
  ]  # Rung 2 ends [d, b, f]: top 1 is d; nothing new is left. b stays at 2 though 2nd.
  assert s.complete("x", 0) and s.complete("x", 1) and s.complete("x", 2)
  assert s.stopped("x", 0) == ["c", "a", "e"] and s.stopped("x", 1) == ["b", "f"]
  assert s.best("x") == "d" and s.spent("x") == 1 + 2 + 1 + 4 + 1 + 2
  assert [s.reached(t) for t in "abcdef"] == [1, 2, 1, 4, 1, 2]


def test_a_rung_is_not_complete_while_a_climb_to_it_is_in_flight():
  s = _scheduler(SEARCH, {"x": ["a", "b"]})
  assert s.next_job() == ("a", 1) and s.next_job() == ("b", 1)
  s.record("b", 1, 3.0)  # b's result comes first: a's climb is still in flight.
  assert not s.complete("x", 0) and s.in_flight() == [("a", 1)]
  assert s.next_job() is None  # [b]: empty top half, and no new trial: the worker waits.
  s.record("a", 1, 1.0)
  assert s.next_job() == ("a", 2)


def test_a_settled_rung_sends_its_best_on_even_below_eta_results():
  """Async ASHA's 1/eta of 1 result is none; once no result can still come, the best goes
  on, so each bracket's best trial reaches the full budget."""
  s = _scheduler(_asha(1, 3, 9),
                     {"x": ["a", "b", "c", "d"]})
  curves = {"a": {1: 4}, "b": {1: 3}, "c": {1: 5}, "d": {1: 6}}
  # Rung 1: [a] -> none up; [b, a] -> none (2 // 3 = 0); [b, a, c] -> b; [b, a, c, d]: b only.
  # Rung 3 holds [b] once d's result is in: settled, so b goes on alone.
  curves["b"].update({3: 2.5, 9: 2})
  assert _serial(s, curves) == [("a", 1), ("b", 1), ("c", 1), ("b", 3), ("d", 1), ("b", 9)]
  assert s.best("x") == "b" and s.complete("x", 0) and s.complete("x", 1)


def test_finalists_go_on_from_the_settled_rung_below_the_full_budget():
  """With finalists=2 the runner-up of the last cut also reaches the full budget, once that
  rung has every result it can get; the rungs below it keep ASHA's rule."""
  search = searches.parse({"name": "asha", "min_steps": 1, "eta": 2, "max_steps": 4,
                           "metric": "domain_fid", "finalists": 2})
  assert search.options()["finalists"] == 2 and "2 to the last" in search.describe()
  s = asha.Scheduler(search.rungs, search.eta, search.key, {"x": list("abcdef")},
                     finalists=search.finalists)
  curves = {t: {**c, 2: c.get(2, 9.0), 4: 0.1} for t, c in CURVES.items()}
  # As in the hand-checked run until rung 2 settles as [d, b, f] (d up at once); then b,
  # its runner-up, goes on too. Without finalists b stops at 2.
  assert _serial(s, curves) == _serial(_scheduler(SEARCH, {"x": list("abcdef")}), curves) + [
      ("b", 4)]
  assert s.stopped("x", 1) == ["f"] and s.ranked("x", 4) == ["b", "d"]
  assert s.complete("x", 0) and s.complete("x", 1)


def test_a_trial_without_a_value_is_last_and_never_promoted():
  s = _scheduler(SEARCH, {"x": ["a", "b", "c", "d"]})
  curves = {"a": {1: None}, "b": {1: float("nan")}, "c": {1: None}, "d": {1: None}}
  assert _serial(s, curves) == [("a", 1), ("b", 1), ("c", 1), ("d", 1)]
  assert s.ranked("x", 1) == ["a", "b", "c", "d"] and s.best("x") is None


def test_higher_is_better_metrics_rank_high_first():
  s = _scheduler(_asha(1, 2, 2, "domain_fid_classifier_acc"), {"x": ["a", "b"]})
  _serial(s, {"a": {1: 0.5}, "b": {1: 0.9, 2: 0.95}})
  assert s.ranked("x", 1) == ["b", "a"] and s.best("x") == "b"


def test_each_decision_goes_to_the_bracket_given_the_fewest_model_steps():
  """Mirrored curves: the brackets take turns and end with equal compute."""
  curves = {f"{b}{t}": v for b in "xy" for t, v in CURVES.items()}
  s = _scheduler(SEARCH, {b: [f"{b}{t}" for t in "abcdef"] for b in "xy"})
  decisions = _serial(s, curves)
  assert [t[0] for t, _ in decisions] == list("xy" * 10)
  assert [(t[1:], n) for t, n in decisions[::2]] == _serial(
      _scheduler(SEARCH, {"x": list("abcdef")}), CURVES)
  assert s.spent("x") == s.spent("y") == 11


@pytest.mark.parametrize("spec,message", [
    ({"name": "hyperband"}, "search.name: unknown search 'hyperband'"),
    ({"name": "asha", "eta": 3}, "search.min_steps: the asha search needs it"),
    ({"name": "asha", "min_steps": 100, "eta": 1, "max_steps": 900, "metric": "domain_fid"},
     "search.eta: must be an integer >= 2, got 1"),
    ({"name": "asha", "min_steps": 900, "eta": 3, "max_steps": 100, "metric": "domain_fid"},
     "search.max_steps: 100 is below search.min_steps 900"),
    ({"name": "asha", "min_steps": 1, "eta": 3, "max_steps": 9, "metric": "fidd"},
     "search.metric: 'fidd' is not a declared score"),
    ({"name": "asha", "min_steps": 1, "eta": 3, "max_steps": 9, "metric": "fid", "r": 1},
     "search.r: the asha search has no such option"),
    ({"name": "asha", "min_steps": 1, "eta": 3, "max_steps": 9, "metric": "fid",
      "finalists": 0}, "search.finalists: must be an integer >= 1, got 0"),
    ({"name": "random", "eta": 3}, "search.eta: the random search has no such option"),
    ({"name": 3}, "search.name: must be a search's name"),
])
def test_bad_searches_name_the_field(spec, message):
  with pytest.raises(hyper.SweepError, match=message):
    searches.parse(spec)


def test_a_sweep_checks_its_search_against_its_trials(tmp_path):
  body = """
      def get_hyper(h):
        return h.product([h.fixed("config", "mnist_wae_mmd:debug"), h.sweep("config.seed", [0])])
      def get_search(arg=None):
        return {"name": "asha", "min_steps": 100, "eta": 3, "max_steps": %d, "metric": "%s"}
      """
  with pytest.raises(hyper.SweepError, match="search.max_steps: 900 is not trial .* 1200"):
    study.load_sweep(sweep_file(tmp_path, body % (900, "domain_fid")))
  with pytest.raises(hyper.SweepError, match="search.metric: .* do not measure 'domain_fid'"):
    study.load_sweep(sweep_file(tmp_path, body % (1200, "domain_fid")))
  s = study.load_sweep(sweep_file(tmp_path, body % (1200, "mmd_heldout")))
  assert s.search.rungs == (100, 300, 900, 1200)
  assert study.load_sweep(s.spec, search="random").search.name == "random"
  with pytest.raises(hyper.SweepError, match="--search=toy: .*'s search is asha"):
    study.load_sweep(s.spec, search="toy")


def test_replay_on_full_curves():
  ids = list("abcdef")
  full = {t: {1: v[1], 2: v[1] - 0.5, 4: v[1] - 0.6} for t, v in CURVES.items()}
  r = replay.replay(_asha(1, 2, 4), {"x": ids}, full, "domain_fid", 4)
  assert (r.steps, r.full_steps) == (11, 24)
  assert r.best_kept == {"x": True} and r.best == {"x": (0.4, 0.4)}
  assert r.rank_corr["x"][1] == pytest.approx(1.0)  # d, f, b, c, a, e at every rung.
  assert r.best_rank == {"x": {1: 1, 2: 1}} and r.decisions == (1, 2)
  with pytest.raises(ValueError, match="no domain_fid at step 2"):
    replay.replay(_asha(1, 2, 4), {"x": ids}, {t: {1: v[1]} for t, v in CURVES.items()},
                  "domain_fid", 4)


# --- Sweeps that climb, with the fake trainer (domain_fid = quality + 10 / step) -----------

QUALITY = {"fa": [3, 1, 4, 1.5, 5, 9], "fb": [2, 6, 5, 3.5, 8, 7]}
FAKE_ASHA = """
def get_hyper(h):
  return h.chainit([
      h.product([h.fixed("config", b), h.fixed("config.step_s", %r),
                 h.zipit([h.sweep("config.quality", q), h.sweep("config.seed", range(len(q)))])])
      for b, q in %r.items()])

def get_search(arg=None):
  return {"name": "asha", "min_steps": 2, "eta": 2, "max_steps": 8, "metric": "domain_fid"}
"""


def _expected(s):
  """The decisions of ASHA with one worker, from the curves the fake trainer reports."""
  scheduler = _scheduler(s.search, study.brackets(s.trials))
  curves = {tid: {n: t["config.quality"] + 10 / n for n in s.search.rungs}
            for tid, t in s.trials.items()}
  _serial(scheduler, curves)
  return {tid: (scheduler.target[tid], scheduler.results[tid]) for tid in s.trials}


def _decisions(s, workdir):
  """Each trial's (target rung, {rung: metric}) from its search.json."""
  notes = {t: workdir_lib.read_json(workdir / t / workdir_lib.SEARCH) for t in s.trials}
  return {t: (n["target"], {int(k): v for k, v in n["results"].items()}) if n else (None, {})
          for t, n in notes.items()}


def test_an_asha_sweep_climbs_and_a_relaunch_has_nothing_to_do(tmp_path, local_ray, capsys):
  s = study.load_sweep(sweep_file(tmp_path, FAKE_ASHA % (0.0, QUALITY)), check=False)
  workdir, log = tmp_path / "w", tmp_path / "log"
  trainer = [sys.executable, FAKE_TRAINER, f"--log={log}"]
  assert runner.run_sweep(s, workdir, options={'parallel': 1}, trainer=trainer) == {"done": 12}
  assert _decisions(s, workdir) == _expected(s)
  out = capsys.readouterr().out
  assert "promote" in out and "complete: 3 promoted, 3 stopped" in out and "best" in out
  # Every climb trained once, from where the last one ended: no step trained twice.
  starts = [line.split() for line in log.read_text().splitlines() if line.startswith("start")]
  assert len(starts) == sum(len(r) for _, r in _expected(s).values())
  by_trial = {}
  for _, tid, step, _ in starts:
    assert int(step) == by_trial.get(tid, 0)
    by_trial[tid] = {0: 2, 2: 4, 4: 8}[int(step)]
  assert runner.run_sweep(s, workdir, options={'parallel': 1}, trainer=trainer) == {"done": 12}
  assert len(log.read_text().splitlines()) == 2 * len(starts)  # Nothing ran again.


def test_a_climb_lost_with_its_worker_is_interrupted_and_resumed_by_a_relaunch(
    tmp_path, local_ray):
  spec = sweep_file(tmp_path, """
      def get_hyper(h):
        return h.product([h.fixed("config", "f"), h.zipit([
            h.sweep("config.quality", [1, 2]), h.sweep("config.kill_worker", [1, 0])])])
      def get_search(arg=None):
        return {"name": "asha", "min_steps": 2, "eta": 2, "max_steps": 4, "metric": "domain_fid"}
      """)
  s = study.load_sweep(spec, check=False)
  trainer = [sys.executable, FAKE_TRAINER, f"--log={tmp_path / 'log'}"]
  # The first trial's worker dies and Ray may not retry: its climb is left in flight, so the
  # sweep is unfinished although the other trial is done.
  assert runner.run_sweep(s, tmp_path / "w", options={'parallel': 1, 'max_retries': 0}, trainer=trainer) == {
      "interrupted": 1, "done": 1}
  assert runner.run_sweep(s, tmp_path / "w", options={'parallel': 1}, trainer=trainer) == {"done": 2}
  assert _decisions(s, tmp_path / "w") == _expected(s)


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["ray", "local"])
def test_a_killed_asha_sweep_relaunched_takes_the_same_decisions(tmp_path, executor):
  """Three SIGKILLs of the driver mid-climb on either executor; each relaunch finishes the
  climbs in flight first, and the end is the uninterrupted search's, each climb run once."""
  spec = sweep_file(tmp_path, FAKE_ASHA % (0.05, {b: q[:3] for b, q in QUALITY.items()}))
  s = study.load_sweep(spec, check=False)
  log, workdir = tmp_path / "log", tmp_path / "w"
  log.touch()
  command = [sys.executable, "-m", "wae_jax.cli.sweep", "run", spec, f"--workdir={workdir}",
             "--parallel=1", "--nocheck", f"--executor={executor}", "--optuna=",
             f"--trainer={sys.executable} {FAKE_TRAINER} --log={log}"]
  done = kill_and_relaunch(command, log)
  assert done.returncode == 0, done.stderr
  assert _decisions(s, workdir) == _expected(s)
  _, dones = log_counts(log)
  assert dones == {tid: len(r) for tid, (_, r) in _expected(s).items()}  # Each climb once.


def test_a_lost_note_is_rebuilt_from_the_trials_events_and_record(tmp_path):
  from wae_jax import events  # pylint: disable=g-import-not-at-top
  spec = sweep_file(tmp_path, """
      def get_hyper(h):
        return h.product([h.fixed("config", "f"), h.sweep("config.seed", [0, 1])])
      def get_search(arg=None):
        return {"name": "asha", "min_steps": 1, "eta": 2, "max_steps": 4, "metric": "domain_fid"}
      """)
  s = study.load_sweep(spec, check=False)
  tid = next(iter(s.trials))
  (tmp_path / "w" / tid).mkdir(parents=True)
  writer = events.Writer(tmp_path / "w" / tid)
  for step, value in ((1, 5.0), (2, 4.0), (3, 3.5)):  # Evaluated every step; 3 is no rung.
    writer.write_scalars(step, {"eval/domain_fid": value, "eval/recon": 1.0})
  writer.close()
  record = dict(step=3, num_steps=4, wall_s=1.0, metrics={"domain_fid": 3.5}, config={})
  workdir_lib.write_metrics(tmp_path / "w" / tid, status="running", **record)  # Climbing to 4.

  def restored():
    s.search.restore(runner.read_ledger(s, tmp_path / "w"))
    return s.search.note(tid), s.search.in_flight()
  assert restored() == ({"target": 4, "results": {"1": 5.0, "2": 4.0}}, [tid])
  workdir_lib.write_metrics(tmp_path / "w" / tid, status="diverged", **record)
  assert restored() == ({"target": 4, "results": {"1": 5.0, "2": 4.0, "4": None}}, [])
  (tmp_path / "w" / tid / workdir_lib.SEARCH).write_text("{not json")  # Damaged: the same.
  assert restored()[0] == {"target": 4, "results": {"1": 5.0, "2": 4.0, "4": None}}


def test_climbs_in_flight_with_two_workers():
  """Two climbs at once: a rung counts only the results that have arrived, a trial in flight
  is neither promoted nor started again, and its steps count as given out from its start."""
  s = _scheduler(SEARCH, {"x": list("abcd")})
  assert [s.next_job(), s.next_job()] == [("a", 1), ("b", 1)]
  assert s.in_flight() == [("a", 1), ("b", 1)] and s.spent("x") == 2
  s.record("b", 1, 3.0)  # b first: rung 1 holds [b], whose top half is empty.
  assert s.next_job() == ("c", 1) and not s.complete("x", 0)
  s.record("a", 1, 1.0)  # [a, b]: a goes up while c still climbs to rung 1.
  assert s.next_job() == ("a", 2) and s.in_flight() == [("a", 2), ("c", 1)]
  assert s.next_job() == ("d", 1)  # a is in flight to 2: not promoted twice; d is new.
  assert s.next_job() is None  # Three in flight, nothing to decide: the worker waits.
  s.record("d", 1, 0.5)  # [d, a, b]: the top one, d, goes up.
  assert s.next_job() == ("d", 2)
  s.record("c", 1, 2.0)  # [d, a, c, b]: top two d and a, both up already: rung 1 settles.
  assert s.complete("x", 0) and s.stopped("x", 0) == ["c", "b"]
  assert s.next_job() is None and s.spent("x") == 2 + 2 + 1 + 1
  s.record("a", 2, 0.8)
  s.record("d", 2, 0.4)  # [d, a] at rung 2: d goes to the full budget.
  assert s.next_job() == ("d", 4) and s.stopped("x", 1) == ["a"]
