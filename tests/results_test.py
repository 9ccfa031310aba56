"""Tests of reading trial directories into tables: values, tolerance, formats, plots."""
import dataclasses
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from wae_jax import curves as curves_lib
from wae_jax import plots
from wae_jax import replay
from wae_jax import results as results_lib
from wae_jax.cli import results as results_cli

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "results")
# The fixture sweep: 10 trials in sweep.json, 9 directories (one trial never started).
CORRUPT, PENDING, FAILED, DIVERGED = "7857c64843aa", "2a5bfbca27f5", "2648982a2414", "eecaf42ba5c2"


def test_fixture_trials():
  results = results_lib.read_results(FIXTURE)
  trials = results.trials.set_index("trial")
  assert len(trials) == 10
  assert trials["status"].value_counts().to_dict() == {
      "done": 6, "diverged": 1, "failed": 1, "pending": 1, "corrupt": 1}
  assert results.errors == [
      f"{CORRUPT}: metrics.json unreadable: Expecting ',' delimiter: line 1 column 30 (char 29)"]
  assert trials.loc[DIVERGED, "step"] == 123
  assert trials.loc[DIVERGED, "error"] == "loss became nan at step 123"
  assert trials.loc[FAILED, "error"] == "RuntimeError: boom"
  assert np.isnan(trials.loc[FAILED, "fid"])
  # Trials without a readable metrics.json get the hyperparameters their sweep asked for.
  assert trials.loc[PENDING, ["algo", "lam", "seed"]].tolist() == ["wae_mmd", 10.0, 1]
  assert trials.loc[CORRUPT, ["algo", "recon.scale"]].tolist() == ["vae", 5.0]
  assert {"lam", "seed", "recon.scale", "optim.lr"} <= set(results.hyperparameters)
  assert set(results_lib.swept_columns(results)) >= {"algo", "lam", "seed", "recon.scale"}


def test_fixture_table1():
  summary = results_lib.summarize(results_lib.read_results(FIXTURE).trials)
  rows = {r["algo"]: r for r in summary.to_dict("records")}
  assert rows.keys() == {"vae", "wae_gan", "wae_mmd", "data"}
  # The diverged WAE-GAN (its last evaluated FID was 30) is not the best one.
  assert {k: rows["wae_gan"][k] for k in (
      "trials", "done", "diverged", "failed", "best fid", "median fid", "sharpness of best",
      "best trial")} == {"trials": 3, "done": 2, "diverged": 1, "failed": 0, "best fid": 40.0,
                         "median fid": 45.0, "sharpness of best": 0.006,
                         "best trial": "c6382cee3163"}
  assert (rows["wae_mmd"]["best fid"], rows["wae_mmd"]["median fid"]) == (55.0, 60.0)
  assert (rows["wae_mmd"]["done"], rows["wae_mmd"]["pending"]) == (3, 1)
  assert (rows["vae"]["done"], rows["vae"]["failed"], rows["vae"]["corrupt"]) == (1, 1, 1)
  assert rows["vae"]["best fid"] == 63.0
  # The real-data row: held-out images' FID and sharpness (medians over the trials).
  assert (rows["data"]["best fid"], rows["data"]["sharpness of best"]) == (2.5, 0.02)
  assert set(summary["data"]) == {"tfds:celeb_a"}


def _trial(workdir, name, status="done", **metrics):
  os.makedirs(workdir / name)
  (workdir / name / "metrics.json").write_text(json.dumps({
      "status": status, "step": 5, "num_steps": 5, "wall_s": 1.0, "metrics": metrics,
      "error": None, "config": {"algo": "wae_mmd", "lam": 1.0, "data.source": "bundled:mnist"}}))


def test_metric_is_fid_then_domain_fid_and_recon_only_when_asked(tmp_path, capsys):
  _trial(tmp_path, "a", recon=2.0, domain_fid=7.0)
  _trial(tmp_path, "b", recon=1.0, domain_fid=9.0)
  _trial(tmp_path, "c", status="running", recon=0.5, fid=1.0)  # Not finished: not counted.
  results = results_lib.read_results(tmp_path)
  trials = results.trials
  assert results_lib.table_metric(trials) == "domain_fid"
  assert results_lib.summarize(trials)["best domain_fid"].tolist() == [7.0]
  # Without a quality metric the table does not fall back to the reconstruction, which the
  # smallest lambda always wins: it says what is missing.
  no_quality = dataclasses.replace(results, trials=trials.drop(columns="domain_fid"))
  assert results_lib.table_metric(no_quality.trials) == "fid"
  assert "No trial has fid yet" in results_lib.report(no_quality)
  assert results_lib.table_metric(trials, "recon") == "recon"
  assert results_lib.summarize(trials, "recon")["running"].tolist() == [1]
  with pytest.raises(ValueError, match="--metric: no trial has 'fdi' .*domain_fid"):
    results_lib.table_metric(trials, "fdi")
  results_cli.main([str(tmp_path), "--metric=recon"])
  out = capsys.readouterr().out
  assert "## Table 1 (metric: recon, lower is better)" in out
  assert "| bundled:mnist | wae_mmd | 3 | 1 | 2 | 0 | 0 | 1 | 1.5 |  | b |" in out


def test_last_training_metrics_are_train_columns(tmp_path):
  _trial(tmp_path, "a", recon=2.0)
  _trial(tmp_path, "b", recon=1.0)
  record = json.loads((tmp_path / "a" / "metrics.json").read_text())
  record["train"] = {"loss": 3.5, "recon": 2.5, "mmd": None}
  (tmp_path / "a" / "metrics.json").write_text(json.dumps(record))
  results = results_lib.read_results(tmp_path)
  trials = results.trials.set_index("trial")
  assert trials.loc["a", ["train/loss", "train/recon"]].tolist() == [3.5, 2.5]
  assert np.isnan(trials.loc["a", "train/mmd"]) and np.isnan(trials.loc["b", "train/loss"])
  assert trials.loc["a", "recon"] == 2.0  # The evaluated metric keeps its own column.
  assert not any(h.startswith("train/") for h in results.hyperparameters)
  report = results_lib.report(results)
  header = next(l for l in report.splitlines() if l.startswith("| trial |"))
  assert header.split(" | ")[-3:] == ["train/loss", "train/recon", "train/mmd |"]
  assert "| b | done | 5 | 1 |  |  |  |" in report


def test_partial_and_foreign_files_without_a_ledger(tmp_path):
  _trial(tmp_path, "ok", recon=1.0)
  os.makedirs(tmp_path / "partial")
  (tmp_path / "partial" / "metrics.json").write_text('{"status": "running"}')
  os.makedirs(tmp_path / "foreign")
  (tmp_path / "foreign" / "metrics.json").write_text('["not", "a", "record"]')
  os.makedirs(tmp_path / "typed")  # A done row whose numbers are strings is not a result.
  (tmp_path / "typed" / "metrics.json").write_text(
      '{"status": "done", "step": 20, "metrics": {"recon": "1.0"}}')
  os.makedirs(tmp_path / "empty")
  results = results_lib.read_results(tmp_path)
  trials = results.trials.set_index("trial")
  assert trials["status"].to_dict() == {"empty": "pending", "foreign": "corrupt", "ok": "done",
                                        "partial": "running", "typed": "corrupt"}
  assert results.errors == ["foreign: metrics.json is not a JSON object (got list)",
                            "typed: metrics.json has a malformed 'metrics' (got {'recon': '1.0'})"]


def test_cli_formats(tmp_path, capsys):
  results_cli.main([FIXTURE])
  out = capsys.readouterr().out
  row = "| tfds:celeb_a | wae_gan | 3 | 2 | 1 | 0 | 0 | 0 | 40 | 45 | 0.006 | c6382cee3163 |"
  assert row in out
  assert f"- {CORRUPT}: metrics.json unreadable" in out
  for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet)):
    path = tmp_path / f"t.{fmt}"
    results_cli.main([FIXTURE, f"--format={fmt}", f"--out={path}"])
    table = read(path).set_index("trial")
    assert len(table) == 10
    assert table.loc["c6382cee3163", "fid"] == 40.0
    assert json.loads(table.loc["c6382cee3163", "mmd.scales"])[0] == 0.1
    assert CORRUPT in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys):
  for argv in ([str(tmp_path / "nowhere")], [FIXTURE, "--format=parquet"], [str(tmp_path)]):
    with pytest.raises(SystemExit) as e:
      results_cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("wae-results: error:") and err.count("\n") == 1


def test_another_sweeps_ledger_is_named_not_a_table_without_these_trials(tmp_path, capsys):
  sweep = tmp_path / "w"
  shutil.copytree(FIXTURE, sweep)
  ledger = json.loads((sweep / "sweep.json").read_text())
  ledger["trials"] = {"other-0": {"config": "mnist_wae_mmd"}}
  ledger["search"] = {"name": "asha", "metric": "recon"}
  (sweep / "sweep.json").write_text(json.dumps(ledger))
  with pytest.raises(SystemExit) as e:
    results_cli.main([str(sweep)])
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count("\n") == 1, err
  assert err.startswith(f"wae-results: error: {sweep / 'sweep.json'} names 1 trials, none of "
                        "them here, and the 9 trial directories here are not in it")
  ledger["trials"][DIVERGED] = {"config": "mnist_wae_mmd"}  # One of its own: a sweep.
  (sweep / "sweep.json").write_text(json.dumps(ledger))
  assert len(results_lib.read_results(sweep).trials) == 2


def test_plot(tmp_path):
  path = tmp_path / "p.png"
  results_cli.main([FIXTURE, f"--out={tmp_path / 't.md'}", f"--plot={path}"])
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(ValueError, match="no finished trial"):
    trials = results_lib.read_results(FIXTURE).trials
    plots.plot(trials[trials["status"] != "done"], tmp_path / "q.png")



def test_mean_and_sd_over_seeds(tmp_path, capsys):
  for k, (algo, seed, fid) in enumerate([("vae", 0, 50.0), ("vae", 1, 54.0), ("wae_mmd", 0, 40.0),
                                         ("wae_mmd", 1, 44.0), ("wae_mmd", 2, 48.0)]):
    os.makedirs(tmp_path / str(k))
    (tmp_path / str(k) / "metrics.json").write_text(json.dumps({
        "status": "done", "step": 5, "num_steps": 5, "metrics": {"fid": fid, "fid_data": 2.0},
        "config": {"algo": algo, "seed": seed, "data.source": "bundled:mnist"}}))
  (tmp_path / "5").mkdir()  # A trial that never started: not in the means.
  table = results_lib.over_seeds(results_lib.read_results(tmp_path), "fid")
  assert table.to_dict("records") == [
      {"data.source": "bundled:mnist", "algo": "vae", "seeds": 2, "fid": "52 +- 2.8",
       "fid_data": "2 +- 0"},
      {"data.source": "bundled:mnist", "algo": "wae_mmd", "seeds": 3, "fid": "44 +- 4",
       "fid_data": "2 +- 0"}]
  results_cli.main([str(tmp_path)])
  assert "## Mean +- sd over seeds\n\n| data.source | algo | seeds | fid | fid_data |" in (
      capsys.readouterr().out)


# --- ASHA sweeps: rungs, model-steps, curves and replay -----------------------------------

RUNGS = (1, 2, 4)


def _climbed(workdir, tid, algo, curve, target=4):
  """A trial directory as a climb to `target` leaves it: its curve in its events (every
  step of `curve` up to `target`), metrics.json at `target`, and rungs.json."""
  from wae_jax import events  # pylint: disable=g-import-not-at-top
  os.makedirs(workdir / tid)
  writer = events.Writer(workdir / tid)
  for step, value in curve.items():
    if step <= target:
      writer.write_scalars(step, {"eval/domain_fid": value})
  writer.close()
  (workdir / tid / "metrics.json").write_text(json.dumps({
      "status": "done", "step": target, "num_steps": target, "wall_s": 1.0,
      "metrics": {"domain_fid": curve[target]}, "error": None,
      "config": {"algo": algo, "data.source": "bundled:mnist", "seed": 0}}))
  (workdir / tid / "search.json").write_text(json.dumps({"target": target, "results": {
      str(s): v for s, v in curve.items() if s in RUNGS and s <= target}}))


def _ledger(workdir, trials, search=None):
  (workdir / "sweep.json").write_text(json.dumps({
      "sweeps": {"s.py": list(trials)}, "trials": trials, "search": search}))


def test_an_asha_sweep_reports_rungs_model_steps_and_the_best_at_the_full_budget(
    tmp_path, capsys):
  # m3 stopped at step 1 with a value (3) below every full-budget one: it is no "best".
  for tid, algo, curve, target in [
      ("m1", "wae_mmd", {1: 9, 2: 8, 4: 7}, 4), ("m2", "wae_mmd", {1: 8, 2: 6, 4: 5}, 4),
      ("m3", "wae_mmd", {1: 3}, 1), ("g1", "wae_gan", {1: 5, 2: 4, 4: 3}, 4),
      ("g2", "wae_gan", {1: 6, 2: 7}, 2)]:
    _climbed(tmp_path, tid, algo, curve, target)
  _ledger(tmp_path, {t: {"config": f"mnist_{t[0]}"} for t in ("m1", "m2", "m3", "g1", "g2")},
          {"name": "asha", "min_steps": 1, "eta": 2, "max_steps": 4, "metric": "domain_fid"})
  results = results_lib.read_results(tmp_path)
  assert results.search_metric == "domain_fid"
  assert results.trials.set_index("trial")["rung"].to_dict() == {
      "m1": 4, "m2": 4, "m3": 1, "g1": 4, "g2": 2}
  rows = {r["algo"]: r for r in results_lib.summarize(results.trials, "domain_fid")
          .to_dict("records")}
  assert {k: rows["wae_mmd"][k] for k in ("best domain_fid", "best trial", "at full budget",
                                          "model-steps", "random search's")} == {
      "best domain_fid": 5, "best trial": "m2", "at full budget": 2, "model-steps": 9,
      "random search's": 12}
  assert (rows["wae_gan"]["model-steps"], rows["wae_gan"]["random search's"]) == (6, 8)
  curves_png = tmp_path / "c.png"
  results_cli.main([str(tmp_path), f"--curves={curves_png}"])
  assert "## Table 1 (metric: domain_fid" in capsys.readouterr().out  # The search's metric.
  assert curves_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert curves_lib.read_curves(tmp_path, results.trials, "domain_fid")["g2"] == {1: 6, 2: 7}


def test_replay_of_a_full_budget_study(tmp_path, capsys):
  curves = {"a1": {1: 5, 2: 4, 4: 3}, "a2": {1: 3, 2: 2, 4: 1}, "a3": {1: 4, 2: 3, 4: 2},
            "b1": {1: 1, 2: 3, 4: 5}, "b2": {1: 2, 2: 1, 4: 0.5}}
  for tid, curve in curves.items():
    _climbed(tmp_path, tid, tid[0], curve)
  _ledger(tmp_path, {t: {"config": t[0]} for t in curves})
  results = results_lib.read_results(tmp_path)
  read = curves_lib.read_curves(tmp_path, results.trials, "domain_fid")
  assert read == curves
  table = replay.table(results.trials, read, "domain_fid", "asha", {"min_steps": [1], "eta": [2]})
  row = table.iloc[0].to_dict()
  # a: a2 leads rung 1, climbs to 2, then (rung 2 settled) to 4; a1 and a3 stop at 1.
  # b: b1 leads rung 1 and climbs to 2, then to 4; b2 stops at 1. 1 + 4 + 1 + 4 + 1 steps.
  assert (row["min_steps"], row["eta"], row["model-steps"], row["of random search"]) == (
      1, 2, 11, "55%")
  assert row["a best kept"] == "yes"
  assert row["b best kept"] == "no (5 vs 0.5: 10.000x)"  # b1 led early; b2 never went up.
  assert (row["a best's rank"], row["b best's rank"]) == ("1: 1, 2: 1", "1: 2, 2: 1")
  # Spearman by hand: rung 1 ranks (a1..b2) 5 3 4 1 2 against the final 4 2 3 5 1, sum of
  # squared differences 20, rho = 1 - 6 * 20 / (5 * 24) = 0; rung 2 ranks 5 2 3.5 3.5 1
  # (a tie), Pearson of the ranks 8 / sqrt(9.5 * 10) = 0.82.
  assert row["rank corr. (all)"] == "1: 0.00, 2: 0.82"
  assert (row["a rank corr."], row["b rank corr."]) == ("1: 1.00, 2: 1.00", "1: nan, 2: nan")
  results_cli.main([str(tmp_path), "--replay", "--grid", "min_steps=1,2", "--grid=eta=2"])
  out = capsys.readouterr().out
  assert "asha replayed on 5 trials by domain_fid" in out and out.count("| 2 |") >= 2
  _climbed(tmp_path, "a4", "a", {1: 1}, target=1)  # A study with a stopped trial: refused.
  _ledger(tmp_path, {t: {"config": t[0]} for t in [*curves, "a4"]})
  with pytest.raises(ValueError, match="--replay needs a finished study of one full budget"):
    replay.table(results_lib.read_results(tmp_path).trials, read, "domain_fid", "asha",
                 {"min_steps": [1], "eta": [2]})


def test_markdown_writes_large_counts_in_full_and_other_floats_to_four_digits():
  df = pd.DataFrame({"model-steps": [14_100.0, np.nan], "fid": [191.0725, 12_345.6]})
  assert results_lib.to_markdown(df).splitlines()[2:] == [
      "| 14,100 | 191.1 |", "|  | 1.235e+04 |"]


def test_optuna_mirror_and_importance_from_the_cli(tmp_path, capsys):
  import optuna  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "sweep"
  shutil.copytree(FIXTURE, workdir)
  results_cli.main([str(workdir), "--optuna"])
  out = capsys.readouterr().out
  url = f"sqlite:///{workdir}/optuna.db"
  assert f"rebuilt in {url}" in out and f"optuna-dashboard {url}" in out
  studies = optuna.get_all_study_summaries(url)
  trials = json.loads((workdir / "sweep.json").read_text())["trials"]
  assert sorted(s.study_name for s in studies) == sorted(
      {f"sweep/{t['config']}" for t in trials.values()})
  assert sum(s.n_trials for s in studies) == len(trials) - 1  # One's metrics.json is corrupt.
  results_cli.main([str(workdir), "--importance"])
  out = capsys.readouterr().out
  assert "## Hyperparameter importance by" in out and "| study | bracket | param |" in out
