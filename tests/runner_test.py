"""Tests of the Ray runner with fake trainers: outcomes, relaunches, kills and packs."""
import json
import os
import re
import subprocess
import sys
import time

from conftest import FAKE_TRAINER, REPO, kill_sweep, log_counts, sweep_file
import pytest

from wae_jax import hyper
from wae_jax import lock as lock_lib
from wae_jax import results as results_lib
from wae_jax import progress
from wae_jax import runner
from wae_jax import supervise
from wae_jax.searches import random as random_search
from wae_jax import study
from wae_jax import workdir as workdir_lib

# --- The runner ---------------------------------------------------------------------------


FAKE_SWEEP = """
def get_hyper(h):
  return h.chainit([
      h.product([h.fixed("config", "fake"), h.sweep("config.seed", [0, 1])]),
      h.product([h.fixed("config", "fake"), h.zipit([
          h.sweep("config.diverge_at", [3, -1, -1, -1]),
          h.sweep("config.crash_at", [-1, 2, -1, -1]),
          h.sweep("config.bad", [0, 0, 1, 0]),
          h.sweep("config.kill_worker", [0, 0, 0, 1]),
      ])]),
  ])
"""


def test_run_records_every_outcome_and_relaunch_skips_them(tmp_path, local_ray, capsys,
                                                          monkeypatch):
  monkeypatch.setattr(runner, "PROGRESS_S", 0.05)
  s = study.load_sweep(sweep_file(tmp_path, FAKE_SWEEP), check=False)
  log, workdir = str(tmp_path / "log"), tmp_path / "w"
  trainer = [sys.executable, FAKE_TRAINER, f"--log={log}"]
  counts = runner.run_sweep(s, workdir, options={'parallel': 2}, trainer=trainer)
  assert counts == {"done": 3, "diverged": 1, "failed": 2}
  by_kind = {}
  for tid, trial in s.trials.items():
    kind = next((k for k in ("diverge_at", "crash_at", "bad", "kill_worker")
                 if trial.get(f"config.{k}", -1) > 0), "plain")
    by_kind.setdefault(kind, []).append(json.loads((workdir / tid / "metrics.json").read_text()))
  assert [r["status"] for r in by_kind["plain"]] == ["done", "done"]
  assert by_kind["diverge_at"][0]["status"] == "diverged"
  assert by_kind["diverge_at"][0]["step"] == 3
  assert by_kind["crash_at"][0]["error"] == "RuntimeError: crashed on purpose"
  # The trainer refused its config before writing anything: the runner records why.
  assert by_kind["bad"][0] == {"status": "failed", "step": 0,
                               "error": "wae-train: error: config.bad: refused"}
  # The worker killed under its trial was replaced and the trial retried once.
  assert by_kind["kill_worker"][0]["status"] == "done"
  starts, dones = log_counts(log)
  kill_id = next(t for t, tr in s.trials.items() if tr.get("config.kill_worker") == 1)
  assert starts[kill_id] == 2
  assert set(dones.values()) == {1} and len(dones) == 3
  out = capsys.readouterr().out
  assert "6 to run" in out and "eta" in out and "diverged 1" in out
  # While trials run: their steps and losses, the bar and the ETA in steps.
  assert re.search(r"\d+/\d+ steps  eta \S+  running: \S+ \d+/10", out), out
  ledger = json.loads((workdir / "sweep.json").read_text())
  assert set(ledger["trials"]) == set(s.trials)
  # The live Optuna mirror, and the one command that opens its dashboard.
  url = f"sqlite:///{workdir}/optuna.db"
  assert f"live dashboard: optuna-dashboard {url}" in out
  import optuna  # pylint: disable=g-import-not-at-top
  (summary,) = optuna.get_all_study_summaries(url)
  states = sorted(t.state.name for t in optuna.load_study(
      study_name=summary.study_name, storage=url).trials)
  assert states == ["COMPLETE"] * 3 + ["FAIL"] * 3

  # A relaunch finds every trial final and starts nothing.
  assert runner.run_sweep(s, workdir, options={'parallel': 2}, trainer=trainer) == counts
  assert log_counts(log)[0] == starts
  assert "0 to run" in capsys.readouterr().out
  progress.status(s, workdir)
  out = capsys.readouterr().out
  assert "done 3  diverged 1  failed 2" in out and "6/6 final" in out


def test_a_sweep_directory_has_one_driver(tmp_path):
  s = study.load_sweep(sweep_file(tmp_path, FAKE_SWEEP), check=False)
  with lock_lib.Lock(tmp_path / "w", "sweep driver"):
    with pytest.raises(hyper.SweepError, match="owned by sweep driver pid .*one driver"):
      runner.run_sweep(s, tmp_path / "w", trainer=[sys.executable, FAKE_TRAINER])
  assert not (tmp_path / "w" / workdir_lib.LEDGER).exists()


def test_interrupted_trials_resume(tmp_path, local_ray):
  """A trial left `running` (its sweep was killed) resumes from its checkpoint on relaunch."""
  s = study.load_sweep(sweep_file(
      tmp_path, "def get_hyper(h):\n  return h.sweep('config', ['a', 'b'])\n"), check=False)
  log, workdir = str(tmp_path / "log"), tmp_path / "w"
  a, b = s.trials
  (workdir / a).mkdir(parents=True)
  (workdir / a / "checkpoint").write_text("7")
  (workdir / a / "metrics.json").write_text(json.dumps({"status": "running", "step": 7}))
  (workdir / b).mkdir()
  (workdir / b / "metrics.json").write_text("{not json")
  runner.run_sweep(s, workdir, trainer=[sys.executable, FAKE_TRAINER, f"--log={log}"])
  starts = [line.split()[:3] for line in open(log) if line.startswith("start")]
  assert sorted(starts) == sorted([["start", a, "7"], ["start", b, "0"]])
  assert workdir_lib.read_state(workdir / a).status == "done"


@pytest.mark.slow
def test_kill_and_relaunch_runs_each_trial_once(tmp_path):
  """Kills the whole sweep process twice mid-way; the relaunches finish every trial once."""
  spec = sweep_file(tmp_path, """
      def get_hyper(h):
        return h.product([h.fixed("config", "fake"), h.fixed("config.step_s", 0.1),
                          h.sweep("config.seed", list(range(6)))])
      """)
  log, workdir = tmp_path / "log", tmp_path / "w"
  log.touch()
  command = [sys.executable, "-m", "wae_jax.cli.sweep", "run", spec, f"--workdir={workdir}",
             "--parallel=2", "--nocheck", f"--trainer={sys.executable} {FAKE_TRAINER} --log={log}"]
  for kill_after in (2, 4):
    sweep = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while sum(log_counts(log)[1].values()) < kill_after:
      assert sweep.poll() is None and time.time() < deadline
      time.sleep(0.1)
    kill_sweep(sweep, log)
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  starts, dones = log_counts(log)
  assert len(dones) == 6 and set(dones.values()) == {1}
  assert {st.status for st in workdir_lib.read_states(workdir, dones).values()} == {"done"}
  print(json.dumps({"kills": 2, "trials": 6, "completions": sum(dones.values()),
                    "restarted": sum(n > 1 for n in starts.values())}))


@pytest.mark.slow
def test_real_trainer_sweep(tmp_path, local_ray):
  """Two 20-step trials of the real trainer; the one with lambda = 1e39 (inf) diverges."""
  spec = sweep_file(tmp_path, """
      def get_hyper(h):
        return h.product([
            h.fixed("config", "mnist_wae_mmd:debug"), h.fixed("config.num_steps", 20),
            h.fixed("config.log_every", 10), h.fixed("config.model.width", 0.015625),
            h.fixed("config.batch_size", 32),
            h.sweep("config.lam", [10.0, 1e39]),
        ])
      """)
  workdir = tmp_path / "w"
  counts = runner.run_sweep(study.load_sweep(spec), workdir, options={'parallel': 2})
  assert counts == {"done": 1, "diverged": 1}
  results = results_lib.read_results(workdir)
  trials = results.trials.set_index("lam")
  assert trials.loc[1e39, "step"] == 1 and "nan" in trials.loc[1e39, "error"]
  assert trials.loc[10.0, "step"] == 20 and trials.loc[10.0, "recon"] > 0
  assert results.errors == []
  assert os.path.exists(workdir / trials.loc[1e39, "trial"] / "train.log")


# --- Packs ----------------------------------------------------------------------------------


def test_pack_trials_share_packs_only_with_equal_shapes_and_resume_steps():
  base = {"config": "mnist_wae_mmd:debug"}
  same = [{**base, "config.lam": 1.0}, {**base, "config.optim.lr": 3e-4},
          {**base, "config.seed": 5, "config.num_steps": 50}, {**base, "config.prior_var": 2.0},
          {**base, "config.recon.scale": 0.1, "config.log_every": 7}]
  other = [{**base, "config.z_dim": 16}, {**base, "config.z_dim": 16, "config.lam": 3.0},
           {**base, "config.model.arch": "resnet"}, {**base, "config.batch_size": 32},
           {"config": "mnist_wae_gan:debug"}, {**base, "config.seed": 9}]
  trials = {study.trial_id(t): t for t in same + other}
  ids = list(trials)
  resumed = ids[-1]  # Shaped like `same`, but resumes from a checkpoint.
  packs = random_search.pack_trials(trials, {resumed: 100}, size=4)
  # The 5 trials that differ only in per-trial fields: 2 packs of as equal sizes as possible.
  assert packs[:2] == [ids[0:2], ids[2:5]]
  assert packs[2:] == [ids[5:7], [ids[7]], [ids[8]], [ids[9]], [resumed]]
  assert random_search.pack_trials(trials, {resumed: 100}, size=8)[0] == ids[0:5]
  assert random_search.pack_trials(trials, {}, size=8)[0] == ids[0:5] + [resumed]
  assert all(len(p) == 1 for p in random_search.pack_trials(trials, {}, size=1))


FAKE_PACK_TRAINER = """
import json, os, signal, sys
from wae_jax import workdir as workdir_lib

log, spec = sys.argv[1], json.loads(sys.argv[2])
with open(log, "a") as f:
  f.write(" ".join(os.path.basename(m["workdir"]) for m in spec) + "\\n")
print("training", len(spec), "trials")
for m in spec:
  behaviour = m["trial"].get("config.behaviour", "done")
  status = "running" if behaviour in ("crash", "signal") else behaviour
  workdir_lib.write_metrics(m["workdir"], status=status, step=3, num_steps=3, wall_s=1.0,
                            metrics={}, config={})
behaviours = {m["trial"].get("config.behaviour") for m in spec}
if "signal" in behaviours:
  os.kill(os.getpid(), signal.SIGTERM)
if "crash" in behaviours:
  raise RuntimeError("crashed on purpose")
"""


def test_run_pack_records_each_member(tmp_path):
  trainer = [sys.executable, sweep_file(tmp_path, FAKE_PACK_TRAINER, "trainer.py"),
             str(tmp_path / "log")]
  member = lambda name, behaviour: ({"config": "x", "config.behaviour": behaviour},
                                    str(tmp_path / name))
  pack = [member("ok", "done"), member("nan", "diverged"), member("crash", "crash"),
          member("final", "crash")]
  os.makedirs(tmp_path / "final")
  (tmp_path / "final" / "metrics.json").write_text(json.dumps({"status": "done", "step": 3}))
  records = supervise.run_pack(pack, trainer)
  # A finished member is not trained again; the crash fails each member it left unfinished.
  assert (tmp_path / "log").read_text() == "ok nan crash\n"
  assert [r["status"] for r in records] == ["done", "diverged", "failed", "done"]
  assert records[2]["error"] == "RuntimeError: crashed on purpose"
  assert json.loads((tmp_path / "crash" / "metrics.json").read_text())["status"] == "failed"
  for name in ("ok", "nan", "crash"):
    assert "training 3 trials" in (tmp_path / name / "train.log").read_text()

  # Killed by a signal: Ray's retry resumes it.
  with pytest.raises(supervise.TrialInterrupted, match="code -15"):
    supervise.run_pack([member("a", "done"), member("b", "signal")], trainer)

  # Members a kill left at different checkpoint steps train as one pack per step.
  for name, step in (("c", 2), ("d", 4), ("e", 2)):
    os.makedirs(tmp_path / name / "checkpoints" / str(step))
  supervise.run_pack([member(n, "done") for n in "cde"], trainer)
  assert (tmp_path / "log").read_text().splitlines()[-2:] == ["c e", "d"]


@pytest.mark.slow
def test_packed_sweep_through_the_cli(tmp_path):
  """4 trials of the real trainer as one pack; each ends done with its own metrics.json."""
  spec = sweep_file(tmp_path, """
      def get_hyper(h):
        return h.product([
            h.fixed("config", "mnist_wae_mmd:debug"), h.fixed("config.num_steps", 20),
            h.fixed("config.model.width", 0.015625), h.fixed("config.batch_size", 32),
            h.fixed("config.log_every", 10),
            h.zipit([h.sweep("config.lam", [1.0, 10.0, 10.0, 100.0]),
                     h.sweep("config.optim.lr", [1e-3, 1e-3, 3e-4, 1e-3]),
                     h.sweep("config.seed", [0, 1, 2, 3])]),
        ])
      """)
  workdir = tmp_path / "w"
  command = [sys.executable, "-m", "wae_jax.cli.sweep", "run", spec, f"--workdir={workdir}",
             "--pack=4"]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "4 to run as 1 pack of <= 4" in done.stdout and "done 4" in done.stdout
  trials = study.load_sweep(spec).trials
  records = {tid: json.loads((workdir / tid / "metrics.json").read_text()) for tid in trials}
  for tid, record in records.items():
    assert (record["status"], record["step"]) == ("done", 20)
    assert {k: record["config"][k] for k in ("lam", "optim.lr", "seed")} == {
        k: trials[tid][f"config.{k}"] for k in ("lam", "optim.lr", "seed")}
    assert (workdir / tid / "checkpoints" / "20").is_dir()
  assert len({r["metrics"]["mmd_heldout"] for r in records.values()}) == 4
  [log] = {(workdir / tid / "train.log").read_text() for tid in trials}  # One program's log.
  assert all(f"Done: metrics in {workdir / tid}" in log for tid in trials)


@pytest.mark.slow
def test_chaos_leaves_no_trial_lost_damaged_or_trained_twice(tmp_path):
  """benchmarks/chaos.py at a small size: kills of trainers and of the driver, a corrupt
  checkpoint; every trial ends final, intact, trained once and equal to an undisturbed run."""
  done = subprocess.run(
      [sys.executable, os.path.join(REPO, "benchmarks", "chaos.py"), "--trials=2",
       "--trainer_kills=2", "--driver_kills=1", "--corruptions=1", "--seed=1",
       f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  summary = json.loads(done.stdout.strip().splitlines()[-1])
  assert summary["event"] == "summary", done.stdout[-3000:]
  assert (summary["trainer_kills"], summary["driver_kills"]) == (2, 1), summary
  assert {k: summary[k] for k in ("lost", "trained_twice", "damaged", "differ", "orphans")} == {
      "lost": 0, "trained_twice": 0, "damaged": 0, "differ": 0, "orphans": 0}, done.stdout
