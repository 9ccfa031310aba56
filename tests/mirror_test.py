"""The Optuna mirror of a sweep: studies, trials, states, curves, importances, the dashboard."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request

import optuna
from optuna import distributions as dists
from optuna.trial import TrialState
import pytest

from wae_jax import events
from wae_jax import mirror
from wae_jax import workdir as workdir_lib

MMD, VAE = "mnist_wae_mmd:debug", "mnist_vae:debug"
METRIC = "domain_fid"  # Lower is better.

# Bracket MMD: lr spans 100x (log float), latent_dim 8..16 (linear int), hidden a list
# (categorical), seed the same everywhere (a constant). Bracket VAE: lr and a bool.
TRIALS = {
    "done": {"config": MMD, "config.optim.lr": 1e-4, "config.model.latent_dim": 8,
             "config.model.hidden": [64, 64], "config.seed": 0},
    "diverged": {"config": MMD, "config.optim.lr": 1e-2, "config.model.latent_dim": 16,
                 "config.model.hidden": [128], "config.seed": 0},
    "running": {"config": MMD, "config.optim.lr": 1e-3, "config.model.latent_dim": 8,
                "config.model.hidden": [128], "config.seed": 0},
    "pending": {"config": MMD, "config.optim.lr": 1e-3, "config.model.latent_dim": 16,
                "config.model.hidden": [64, 64], "config.seed": 0},
    "stopped": {"config": MMD, "config.optim.lr": 1e-2, "config.model.latent_dim": 8,
                "config.model.hidden": [64, 64], "config.seed": 0},
    "rung": {"config": MMD, "config.optim.lr": 1e-4, "config.model.latent_dim": 16,
             "config.model.hidden": [128], "config.seed": 0},
    "vae1": {"config": VAE, "config.optim.lr": 0.5, "config.flag": True},
    "vae2": {"config": VAE, "config.optim.lr": 1.0, "config.flag": False},
    "corrupt": {"config": VAE, "config.optim.lr": 1.0, "config.flag": True},
    "blank": {"config": VAE, "config.optim.lr": 0.5, "config.flag": False},
}
SEARCH = {"stopped": "stopped", "rung": "waiting"}


def _curve(trial_dir, points):
  trial_dir.mkdir(parents=True, exist_ok=True)
  writer = events.Writer(trial_dir)
  for step, value in points:
    writer.write_scalars(step, {f"eval/{METRIC}": value, "eval/recon": 0.1})
  writer.close()


def _record(trial_dir, status, step, num_steps, value=None, error=None):
  workdir_lib.write_metrics(trial_dir, status=status, step=step, num_steps=num_steps, wall_s=5.0,
                            metrics={} if value is None else {METRIC: value}, config={},
                            error=error)


def _sweep(tmp_path):
  """The directories of TRIALS, as a trainer (events) and the fake trainer (none) leave them."""
  w = tmp_path / "mysweep"
  _curve(w / "done", [(100, 9.0), (200, 6.0), (300, 5.0)])
  _record(w / "done", "done", 300, 300, 5.0)
  _curve(w / "diverged", [(100, 12.0)])
  _record(w / "diverged", "diverged", 150, 300, error="loss became nan at step 150")
  _curve(w / "running", [(100, 8.0)])
  _record(w / "running", "running", 180, 300, 8.0)
  _curve(w / "stopped", [(100, 11.0)])
  _record(w / "stopped", "done", 100, 100, 11.0)  # Done at its rung; the search stopped it.
  _curve(w / "rung", [(100, 7.0)])
  _record(w / "rung", "done", 100, 100, 7.0)  # Done at its rung; the search may climb it.
  _record(w / "vae1", "done", 10, 10, 3.0)  # The fake trainer's: a record, no events.
  _record(w / "vae2", "done", 10, 10, 2.0)
  _record(w / "blank", "done", 10, 10)  # Its evaluators never computed the metric.
  (w / "corrupt").mkdir()
  (w / "corrupt" / workdir_lib.METRICS).write_text("{not json")
  return w


def _trials(url, name):
  """{wae-jax trial id: FrozenTrial} of the study, checking each id appears once."""
  trials = optuna.load_study(study_name=name, storage=url).get_trials()
  ids = [t.user_attrs[mirror.TRIAL_ID] for t in trials]
  assert len(ids) == len(set(ids)), ids
  return dict(zip(ids, trials))


def test_a_sweep_becomes_one_study_per_bracket(tmp_path):
  w = _sweep(tmp_path)
  url = mirror.sync(w, TRIALS, metric=METRIC, search_states=SEARCH)
  assert url == f"sqlite:///{w}/optuna.db" == mirror.default_storage(w)
  studies = {s.study_name: s for s in optuna.get_all_study_summaries(url)}
  assert set(studies) == {"mysweep/" + MMD, "mysweep/" + VAE}
  study = optuna.load_study(study_name="mysweep/" + MMD, storage=url)
  assert study.direction == optuna.study.StudyDirection.MINIMIZE
  assert study.user_attrs["constants"] == {"seed": 0}
  assert study.user_attrs["metric"] == METRIC and study.user_attrs["sweep_dir"] == str(w)

  mmd = _trials(url, "mysweep/" + MMD)
  assert {tid: t.state for tid, t in mmd.items()} == {
      "done": TrialState.COMPLETE, "diverged": TrialState.FAIL, "running": TrialState.RUNNING,
      "pending": TrialState.WAITING, "stopped": TrialState.PRUNED, "rung": TrialState.RUNNING}
  assert [t.number for t in mmd.values()] == list(range(6))  # The ledger's order.
  assert mmd["done"].value == 5.0 and mmd["stopped"].value == 11.0
  assert mmd["diverged"].value is None
  assert mmd["diverged"].user_attrs["error"] == "loss became nan at step 150"
  assert mmd["done"].intermediate_values == {100: 9.0, 200: 6.0, 300: 5.0}
  assert mmd["running"].intermediate_values == {100: 8.0}  # Not the record's log step 180.
  assert mmd["pending"].intermediate_values == {}
  assert mmd["rung"].user_attrs["search"] == "waiting"
  assert mmd["done"].user_attrs["trial_dir"] == str(w / "done")
  assert mmd["done"].params == {"optim.lr": 1e-4, "model.latent_dim": 8,
                                "model.hidden": "[64, 64]"}
  assert mmd["pending"].params["model.latent_dim"] == 16  # Known before it runs.
  assert mmd["done"].distributions == {
      "optim.lr": dists.FloatDistribution(1e-4, 1e-2, log=True),
      "model.latent_dim": dists.IntDistribution(8, 16),
      "model.hidden": dists.CategoricalDistribution(["[128]", "[64, 64]"])}

  vae = _trials(url, "mysweep/" + VAE)
  assert set(vae) == {"vae1", "vae2", "blank"}  # The corrupt directory is skipped.
  assert vae["blank"].state == TrialState.FAIL
  assert vae["blank"].user_attrs["error"] == f"done without a finite {METRIC} in metrics.json"
  assert vae["vae1"].intermediate_values == {10: 3.0}  # From metrics.json: no events.
  assert vae["vae2"].params == {"optim.lr": 1.0, "flag": False}
  assert vae["vae2"].distributions["flag"] == dists.CategoricalDistribution([False, True])
  assert vae["vae2"].distributions["optim.lr"] == dists.FloatDistribution(0.5, 1.0)


def test_a_second_sync_moves_trials_on_without_duplicates(tmp_path):
  w = _sweep(tmp_path)
  url = mirror.sync(w, TRIALS, metric=METRIC, search_states=SEARCH)
  first = _trials(url, "mysweep/" + MMD)

  _curve(w / "running", [(200, 6.5), (300, 4.0)])  # A second events file, as on a resume.
  _record(w / "running", "done", 300, 300, 4.0)
  _record(w / "pending", "running", 20, 300)
  _curve(w / "rung", [(400, 3.0)])  # Climbed to its next rung and finished there.
  _record(w / "rung", "done", 400, 400, 3.0)
  _record(w / "corrupt", "done", 10, 10, 4.0)  # Rewritten whole.
  assert mirror.sync(w, TRIALS, metric=METRIC, search_states={"stopped": "stopped"}) == url

  mmd = _trials(url, "mysweep/" + MMD)
  assert {tid: t._trial_id for tid, t in mmd.items()} == {
      tid: t._trial_id for tid, t in first.items()}
  assert mmd["running"].state == TrialState.COMPLETE and mmd["running"].value == 4.0
  assert mmd["running"].intermediate_values == {100: 8.0, 200: 6.5, 300: 4.0}
  assert mmd["running"].user_attrs["status"] == "done"
  assert mmd["pending"].state == TrialState.RUNNING and mmd["pending"].datetime_start
  assert mmd["rung"].state == TrialState.COMPLETE and mmd["rung"].value == 3.0
  assert mmd["rung"].intermediate_values == {100: 7.0, 400: 3.0}
  assert mmd["done"].datetime_complete == first["done"].datetime_complete  # Left alone.
  assert _trials(url, "mysweep/" + VAE)["corrupt"].state == TrialState.COMPLETE

  mirror.sync(w, TRIALS, metric=METRIC, search_states=SEARCH)  # Nothing new: nothing changes.
  assert len(_trials(url, "mysweep/" + MMD)) == 6


def _mark(url):
  """Marks every study, so a test can tell a kept study from a rebuilt one (SQLite reuses a
  deleted study's id)."""
  for study in optuna.get_all_study_summaries(url):
    optuna.load_study(study_name=study.study_name, storage=url).set_user_attr("mark", True)


def _marked(url):
  return {s.study_name: "mark" in s.user_attrs for s in optuna.get_all_study_summaries(url)}


def test_a_grown_bracket_or_another_metric_rebuilds_its_study(tmp_path):
  w = _sweep(tmp_path)
  url = mirror.sync(w, TRIALS, metric=METRIC, search_states=SEARCH)
  _mark(url)
  grown = {**TRIALS, "vae3": {"config": VAE, "config.optim.lr": 0.05, "config.flag": True}}
  _record(w / "vae3", "done", 10, 10, 1.0)
  mirror.sync(w, grown, metric=METRIC, search_states=SEARCH)
  assert _marked(url) == {"mysweep/" + MMD: True, "mysweep/" + VAE: False}
  vae = _trials(url, "mysweep/" + VAE)
  assert {t.distributions["optim.lr"] for t in vae.values()} == {
      dists.FloatDistribution(0.05, 1.0, log=True)}

  mirror.sync(w, grown, metric="sharpness_mean")  # Higher is better.
  study = optuna.load_study(study_name="mysweep/" + MMD, storage=url)
  assert study.direction == optuna.study.StudyDirection.MAXIMIZE
  assert len(study.trials) == 6


def test_rebuild_recreates_the_studies_from_the_directories(tmp_path):
  w = _sweep(tmp_path)
  url = mirror.sync(w, TRIALS, metric=METRIC, search_states=SEARCH)
  before = {tid: (t.state, t.value, t.params, t.intermediate_values)
            for tid, t in _trials(url, "mysweep/" + MMD).items()}
  _mark(url)
  mirror.sync(w, TRIALS, metric=METRIC, search_states=SEARCH, rebuild=True)
  assert _marked(url) == {"mysweep/" + MMD: False, "mysweep/" + VAE: False}
  assert {tid: (t.state, t.value, t.params, t.intermediate_values)
          for tid, t in _trials(url, "mysweep/" + MMD).items()} == before


def test_storages_and_the_dashboard_command(tmp_path):
  w = _sweep(tmp_path)
  elsewhere = f"sqlite:///{tmp_path}/elsewhere.db"
  assert mirror.sync(w, TRIALS, metric=METRIC, storage=elsewhere) == elsewhere
  assert len(optuna.get_all_study_summaries(elsewhere)) == 2
  assert not (w / mirror.DATABASE).exists()
  other = tmp_path / "other" / "mysweep"  # Same directory name, another sweep.
  other.mkdir(parents=True)
  with pytest.raises(ValueError, match="mirrors"):
    mirror.sync(other, TRIALS, metric=METRIC, storage=elsewhere)
  with pytest.raises(ValueError, match="pass a storage URL"):
    mirror.sync("gs://bucket/sweep", TRIALS, metric=METRIC)
  with pytest.raises(ValueError, match="unknown metric"):
    mirror.sync(w, TRIALS, metric="nope")
  assert mirror.dashboard_command("sqlite:////a b/optuna.db") == (
      "optuna-dashboard 'sqlite:////a b/optuna.db'")
  assert mirror.dashboard_command(elsewhere) == f"optuna-dashboard {elsewhere}"


def _importance_sweep(tmp_path):
  """Bracket MMD: 12 finished trials whose metric follows lr alone, beside a noise param;
  VAE: one param; "few": one complete trial."""
  w, trials = tmp_path / "imp", {}
  for i in range(12):
    lr, noise = 10 ** (-4 + 3 * (i % 4) / 3), (7 * i) % 5
    tid = f"m{i}"
    trials[tid] = {"config": MMD, "config.optim.lr": lr, "config.noise": noise}
    _record(w / tid, "done", 10, 10, 100 * lr)
  for i in range(3):
    trials[f"v{i}"] = {"config": VAE, "config.optim.lr": 0.1 * (i + 1)}
    _record(w / f"v{i}", "done", 10, 10, float(i))
  for i, status in enumerate(("done", "running", "diverged")):
    trials[f"f{i}"] = {"config": "few:debug", "config.a": i, "config.b": str(i)}
    _record(w / f"f{i}", status, 10, 10, 1.0)
  return w, trials


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _get(url, deadline):
  while True:
    try:
      with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError):
      if time.time() > deadline:
        raise
      time.sleep(0.2)


def test_the_dashboard_serves_the_mirror(tmp_path):
  w = _sweep(tmp_path)
  url = mirror.sync(w, TRIALS, metric=METRIC, search_states=SEARCH)
  port = _free_port()
  # The command mirror.dashboard_command prints, on a free loopback port.
  command = [os.path.join(sysconfig.get_path("scripts"), "optuna-dashboard"), url, "--host", "127.0.0.1",
             "--port", str(port)]
  server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  try:
    api = f"http://127.0.0.1:{port}/api/studies"
    studies = {s["study_name"]: s for s in _get(api, time.time() + 60)["study_summaries"]}
    assert set(studies) == {"mysweep/" + MMD, "mysweep/" + VAE}
    assert studies["mysweep/" + MMD]["directions"] == ["minimize"]
    detail = _get(f"{api}/{studies['mysweep/' + MMD]['study_id']}", time.time() + 10)
    trials = {next(a["value"] for a in t["user_attrs"] if a["key"] == mirror.TRIAL_ID): t
              for t in detail["trials"]}
    assert {tid: t["state"] for tid, t in trials.items()} == {
        "done": "Complete", "diverged": "Fail", "running": "Running", "pending": "Waiting",
        "stopped": "Pruned", "rung": "Running"}
    assert trials["stopped"]["values"] == [11.0]
    assert trials["done"]["intermediate_values"] == [
        {"step": 100, "value": 9.0}, {"step": 200, "value": 6.0}, {"step": 300, "value": 5.0}]
    assert {p["name"] for p in trials["done"]["params"]} == {
        "optim.lr", "model.latent_dim", "model.hidden"}
    assert detail["has_intermediate_values"]
  finally:
    server.terminate()
    try:
      server.wait(timeout=10)
    except subprocess.TimeoutExpired:
      server.kill()
      server.wait()


def test_a_job_in_flight_stays_open_until_its_search_takes_its_end(tmp_path):
  """The live mirror reads the directories after it asked the search: a trial done there but
  not yet taken by the search (its job in flight) must not be closed as COMPLETE, since a
  search may still take it further (ASHA: a rung) and Optuna never reopens a trial."""
  import types  # pylint: disable=g-import-not-at-top
  w = tmp_path / "sw"
  trials = {"a": {"config": MMD, "config.lam": 1.0}, "b": {"config": MMD, "config.lam": 10.0}}
  _record(w / "a", "done", 2, 2, 3.0)
  _record(w / "b", "done", 2, 2, 4.0)
  search = types.SimpleNamespace(waiting=lambda: {"b"}, in_flight=lambda: ["a"],
                                 stopped=lambda: set())
  assert mirror.search_states(search) == {"a": "waiting", "b": "waiting"}
  url = mirror.sync(w, trials, metric=METRIC, search_states=mirror.search_states(search))
  assert {t: f.state.name for t, f in _trials(url, f"sw/{MMD}").items()} == {
      "a": "RUNNING", "b": "RUNNING"}
  search.in_flight, search.waiting, search.stopped = list, set, lambda: {"b"}
  mirror.sync(w, trials, metric=METRIC, search_states=mirror.search_states(search))
  assert {t: f.state.name for t, f in _trials(url, f"sw/{MMD}").items()} == {
      "a": "COMPLETE", "b": "PRUNED"}
