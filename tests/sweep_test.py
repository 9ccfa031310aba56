"""Tests of the sweep DSL, trial ids, the sweep files and the Ray runner (with a fake trainer)."""
import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from wae_jax import results as results_lib
from wae_jax import sweep as sweep_lib

h = sweep_lib.HYPER
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_TRAINER = os.path.join(REPO, "tests", "fixtures", "fake_trainer.py")


def _sweep_file(tmp_path, body, name="s.py"):
  path = tmp_path / name
  path.write_text(textwrap.dedent(body))
  return str(path)


def _log_counts(log):
  """{trial: (attempts, completions)} from the fake trainer's log."""
  starts, dones = collections.Counter(), collections.Counter()
  for line in open(log).read().splitlines():
    kind, trial = line.split()[:2]
    (starts if kind == "start" else dones)[trial] += 1
  return starts, dones


# --- The DSL -----------------------------------------------------------------------------


def test_product_zip_chain_counts():
  grid = h.product([h.fixed("config", "b"), h.sweep("config.lam", [1, 10, 100]),
                    h.sweep("config.seed", [0, 1])])
  assert len(grid) == 6
  assert {(t["config.lam"], t["config.seed"]) for t in grid} == {
      (l, s) for l in (1, 10, 100) for s in (0, 1)}
  assert all(t["config"] == "b" for t in grid)
  zipped = h.zipit([h.sweep("config.lam", [1, 2, 3]), h.sweep("config.z_dim", [4, 5, 6])])
  assert zipped == [{"config.lam": 1, "config.z_dim": 4}, {"config.lam": 2, "config.z_dim": 5},
                    {"config.lam": 3, "config.z_dim": 6}]
  assert len(h.chainit([grid, zipped, h.fixed("config", "c")])) == 10


def test_combinators_reject_conflicts():
  with pytest.raises(sweep_lib.SweepError, match="config.lam"):
    h.product([h.sweep("config.lam", [1, 2]), h.fixed("config.lam", 3)])
  with pytest.raises(sweep_lib.SweepError, match="different lengths"):
    h.zipit([h.sweep("config.lam", [1, 2]), h.sweep("config.seed", [1, 2, 3])])


def test_random_search_is_seeded_and_in_range():
  space = {"config.lr": h.loguniform(1e-4, 1e-2), "config.w": h.uniform(-1, 1),
           "config.arch": h.choice(["a", "b", "c"])}
  draws = h.random_search(500, space, seed=3)
  assert len(draws) == 500
  assert draws == h.random_search(500, space, seed=3)
  assert draws != h.random_search(500, space, seed=4)
  lrs = [d["config.lr"] for d in draws]
  assert 1e-4 <= min(lrs) < 2e-4 and 5e-3 < max(lrs) <= 1e-2
  # Log-uniform: about half the draws below the geometric middle 1e-3.
  assert 200 < sum(lr < 1e-3 for lr in lrs) < 300
  assert all(-1 <= d["config.w"] <= 1 for d in draws)
  assert collections.Counter(d["config.arch"] for d in draws).keys() == {"a", "b", "c"}
  # A new key leaves the draws of the others alone.
  more = h.random_search(500, {**space, "config.extra": h.uniform(0, 1)}, seed=3)
  assert [{k: d[k] for k in space} for d in more] == draws


def test_trial_id_is_a_canonical_hash():
  a = {"config": "mnist_vae", "config.lam": 1.0, "config.seed": 0}
  b = {"config.seed": 0, "config.lam": 1.0, "config": "mnist_vae"}
  assert sweep_lib.trial_id(a) == sweep_lib.trial_id(b)
  assert sweep_lib.trial_id(a) != sweep_lib.trial_id({**a, "config.seed": 1})
  # Pinned: ids name directories of running studies and must never change.
  assert sweep_lib.trial_id(a) == "539ffd163295"


def test_trial_ids_are_the_same_in_another_process():
  here = list(sweep_lib.load_sweep("sweeps/bigwae.py", check=False).trials)
  code = ("import json; from wae_jax import sweep; "
          "print(json.dumps(list(sweep.load_sweep('sweeps/bigwae.py', check=False).trials)))")
  there = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONHASHSEED": "123"}).stdout
  assert json.loads(there) == here


def test_flags_of():
  trial = {"config": "mnist_wae_mmd:debug", "config.mmd.scales": [0.5, 1.0], "config.lam": 1e-05,
           "config.mmd.kernel": "rbf", "config.gan.p_trick": True, "config.z_dim": 8}
  assert sweep_lib.flags_of(trial) == [
      "--config=mnist_wae_mmd:debug", "--config.gan.p_trick=True", "--config.lam=1e-05",
      "--config.mmd.kernel=rbf", "--config.mmd.scales=(0.5, 1.0)", "--config.z_dim=8"]


# --- The sweep files -----------------------------------------------------------------------


def test_bigwae_has_3000_trials_with_equal_budgets():
  s = sweep_lib.load_sweep("sweeps/bigwae.py")  # Also validates every trial's config.
  trials = list(s.trials.values())
  assert len(s.trials) >= 3000 and len(s.trials) == len(trials)
  per_base = collections.Counter(t["config"] for t in trials)
  assert set(per_base) == {"celeba_wae_gan", "celeba_wae_mmd", "celeba_vae", "celeba_wae_sw"}
  assert len(set(per_base.values())) == 1
  assert {t["config.num_steps"] for t in trials} == {100_000}
  for base in per_base:
    group = [t for t in trials if t["config"] == base]
    # 3 seeds of each sampled point.
    points = collections.Counter(
        json.dumps({k: v for k, v in t.items() if k != "config.seed"}, sort_keys=True)
        for t in group)
    assert set(points.values()) == {3}
    assert {t["config.model.arch"] for t in group} == {"dcgan", "resnet"}
    assert len({t["config.optim.lr"] for t in group}) > 100
  own = {"celeba_wae_gan": {"config.lam", "config.gan.lr"}, "celeba_wae_mmd": {"config.lam"},
         "celeba_vae": {"config.recon.scale"},
         "celeba_wae_sw": {"config.lam", "config.sw.num_projections"}}
  shared = {"config", "config.num_steps", "config.ckpt_every", "config.seed", "config.z_dim",
            "config.batch_size", "config.optim.lr", "config.model.arch"}
  assert all(set(t) == shared | own[t["config"]] for t in trials)


@pytest.mark.parametrize("spec,count", [
    ("sweeps/bigwae.py:debug", 8), ("sweeps/table1.py", 6), ("sweeps/table1.py:mnist", 3),
    ("sweeps/kernel_ablation.py", 36), ("sweeps/kernel_ablation.py:debug", 12)])
def test_sweep_files(spec, count):
  assert len(sweep_lib.load_sweep(spec).trials) == count


def test_check_divides_each_batch_over_the_target_devices():
  """The paper's batch of 100 cannot shard over a v2-8's 8 cores: said before launch."""
  assert len(sweep_lib.load_sweep("sweeps/table1.py:mnist", num_devices=4).trials) == 3
  assert len(sweep_lib.load_sweep("sweeps/bigwae.py:debug", num_devices=8).trials) == 8
  with pytest.raises(sweep_lib.SweepError, match=r"batch_size.*100 does not divide over 8"):
    sweep_lib.load_sweep("sweeps/table1.py:mnist", num_devices=8)
  with pytest.raises(SystemExit) as e:
    sweep_lib.main(["list", "sweeps/table1.py", "--devices=0"])
  assert e.value.code == 2


def test_bad_sweeps_fail_with_one_line(tmp_path, capsys):
  no_base = _sweep_file(tmp_path, "def get_hyper(h):\n  return h.sweep('config.lam', [1])\n")
  with pytest.raises(sweep_lib.SweepError, match="no base config"):
    sweep_lib.load_sweep(no_base)
  typo = _sweep_file(tmp_path, "def get_hyper(h):\n"
                     "  return h.product([h.fixed('config', 'mnist_vae'),"
                     " h.fixed('config.optim.lrr', 1e-3)])\n", "typo.py")
  with pytest.raises(sweep_lib.SweepError, match="optim.lrr"):
    sweep_lib.load_sweep(typo)
  with pytest.raises(sweep_lib.SweepError, match="unknown argument"):
    sweep_lib.load_sweep("sweeps/bigwae.py:huge")
  with pytest.raises(SystemExit) as e:
    sweep_lib.main(["run", typo])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("wae-sweep: error:") and err.count("\n") == 1


# --- The runner ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
  """One local Ray for the in-process runner tests: it takes seconds to start."""
  ray = pytest.importorskip("ray")
  ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
           logging_level="ERROR")
  yield
  ray.shutdown()


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


def test_run_records_every_outcome_and_relaunch_skips_them(tmp_path, local_ray, capsys):
  s = sweep_lib.load_sweep(_sweep_file(tmp_path, FAKE_SWEEP), check=False)
  log, workdir = str(tmp_path / "log"), tmp_path / "w"
  trainer = [sys.executable, FAKE_TRAINER, f"--log={log}"]
  counts = sweep_lib.run_sweep(s, workdir, parallel=2, trainer=trainer)
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
  starts, dones = _log_counts(log)
  kill_id = next(t for t, tr in s.trials.items() if tr.get("config.kill_worker") == 1)
  assert starts[kill_id] == 2
  assert set(dones.values()) == {1} and len(dones) == 3
  out = capsys.readouterr().out
  assert "6 to run" in out and "eta" in out and "diverged 1" in out
  ledger = json.loads((workdir / "sweep.json").read_text())
  assert set(ledger["trials"]) == set(s.trials)

  # A relaunch finds every trial final and starts nothing.
  assert sweep_lib.run_sweep(s, workdir, parallel=2, trainer=trainer) == counts
  assert _log_counts(log)[0] == starts
  assert "0 to run" in capsys.readouterr().out
  sweep_lib.sweep_status(s, workdir)
  out = capsys.readouterr().out
  assert "done 3  diverged 1  failed 2" in out and "6/6 final" in out


def test_interrupted_trials_resume(tmp_path, local_ray):
  """A trial left `running` (its sweep was killed) resumes from its checkpoint on relaunch."""
  s = sweep_lib.load_sweep(_sweep_file(
      tmp_path, "def get_hyper(h):\n  return h.sweep('config', ['a', 'b'])\n"), check=False)
  log, workdir = str(tmp_path / "log"), tmp_path / "w"
  a, b = s.trials
  (workdir / a).mkdir(parents=True)
  (workdir / a / "checkpoint").write_text("7")
  (workdir / a / "metrics.json").write_text(json.dumps({"status": "running", "step": 7}))
  (workdir / b).mkdir()
  (workdir / b / "metrics.json").write_text("{not json")
  sweep_lib.run_sweep(s, workdir, trainer=[sys.executable, FAKE_TRAINER, f"--log={log}"])
  starts = [line.split()[:3] for line in open(log) if line.startswith("start")]
  assert sorted(starts) == sorted([["start", a, "7"], ["start", b, "0"]])
  assert results_lib.read_state(workdir / a).status == "done"


@pytest.mark.slow
def test_kill_and_relaunch_runs_each_trial_once(tmp_path):
  """Kills the whole sweep process twice mid-way; the relaunches finish every trial once."""
  spec = _sweep_file(tmp_path, """
      def get_hyper(h):
        return h.product([h.fixed("config", "fake"), h.fixed("config.step_s", 0.1),
                          h.sweep("config.seed", list(range(8)))])
      """)
  log, workdir = tmp_path / "log", tmp_path / "w"
  log.touch()
  command = [sys.executable, "-m", "wae_jax.sweep", "run", spec, f"--workdir={workdir}",
             "--parallel=2", "--nocheck", f"--trainer={sys.executable} {FAKE_TRAINER} --log={log}"]
  for kill_after in (2, 5):
    sweep = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while sum(_log_counts(log)[1].values()) < kill_after:
      assert sweep.poll() is None and time.time() < deadline
      time.sleep(0.1)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    # Ray takes the orphaned trainers down with their workers.
    pids = {int(l.split()[3]) for l in log.read_text().splitlines() if l.startswith("start")}
    deadline = time.time() + 60
    while any(_alive(p) for p in pids):
      assert time.time() < deadline, "trainers outlived the killed sweep"
      time.sleep(0.2)
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  starts, dones = _log_counts(log)
  assert len(dones) == 8 and set(dones.values()) == {1}
  assert {st.status for st in sweep_lib.read_states(workdir, dones).values()} == {"done"}
  print(json.dumps({"kills": 2, "trials": 8, "completions": sum(dones.values()),
                    "restarted": sum(n > 1 for n in starts.values())}))


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  try:
    with open(f"/proc/{pid}/stat") as f:  # A zombie is dead but not yet reaped.
      return f.read().split(")")[-1].split()[0] != "Z"
  except FileNotFoundError:
    return False


@pytest.mark.slow
def test_real_trainer_sweep(tmp_path, local_ray):
  """Two 20-step trials of the real trainer; the one with lambda = 1e39 (inf) diverges."""
  spec = _sweep_file(tmp_path, """
      def get_hyper(h):
        return h.product([
            h.fixed("config", "mnist_wae_mmd:debug"), h.fixed("config.num_steps", 20),
            h.fixed("config.log_every", 10),
            h.sweep("config.lam", [10.0, 1e39]),
        ])
      """)
  workdir = tmp_path / "w"
  counts = sweep_lib.run_sweep(sweep_lib.load_sweep(spec), workdir, parallel=2)
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
  trials = {sweep_lib.trial_id(t): t for t in same + other}
  ids = list(trials)
  resumed = ids[-1]  # Shaped like `same`, but resumes from a checkpoint.
  packs = sweep_lib.pack_trials(trials, {resumed: 100}, size=4)
  # The 5 trials that differ only in per-trial fields: 2 packs of as equal sizes as possible.
  assert packs[:2] == [ids[0:2], ids[2:5]]
  assert packs[2:] == [ids[5:7], [ids[7]], [ids[8]], [ids[9]], [resumed]]
  assert sweep_lib.pack_trials(trials, {resumed: 100}, size=8)[0] == ids[0:5]
  assert sweep_lib.pack_trials(trials, {}, size=8)[0] == ids[0:5] + [resumed]
  assert all(len(p) == 1 for p in sweep_lib.pack_trials(trials, {}, size=1))


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
  trainer = [sys.executable, _sweep_file(tmp_path, FAKE_PACK_TRAINER, "trainer.py"),
             str(tmp_path / "log")]
  member = lambda name, behaviour: ({"config": "x", "config.behaviour": behaviour},
                                    str(tmp_path / name))
  pack = [member("ok", "done"), member("nan", "diverged"), member("crash", "crash"),
          member("final", "crash")]
  os.makedirs(tmp_path / "final")
  (tmp_path / "final" / "metrics.json").write_text(json.dumps({"status": "done", "step": 3}))
  records = sweep_lib.run_pack(pack, trainer)
  # A finished member is not trained again; the crash fails each member it left unfinished.
  assert (tmp_path / "log").read_text() == "ok nan crash\n"
  assert [r["status"] for r in records] == ["done", "diverged", "failed", "done"]
  assert records[2]["error"] == "RuntimeError: crashed on purpose"
  assert json.loads((tmp_path / "crash" / "metrics.json").read_text())["status"] == "failed"
  for name in ("ok", "nan", "crash"):
    assert "training 3 trials" in (tmp_path / name / "train.log").read_text()

  # Killed by a signal: Ray's retry resumes it.
  with pytest.raises(sweep_lib.TrialInterrupted, match="code -15"):
    sweep_lib.run_pack([member("a", "done"), member("b", "signal")], trainer)

  # Members a kill left at different checkpoint steps train as one pack per step.
  for name, step in (("c", 2), ("d", 4), ("e", 2)):
    os.makedirs(tmp_path / name / "checkpoints" / str(step))
  sweep_lib.run_pack([member(n, "done") for n in "cde"], trainer)
  assert (tmp_path / "log").read_text().splitlines()[-2:] == ["c e", "d"]


@pytest.mark.slow
def test_packed_sweep_through_the_cli(tmp_path):
  """4 trials of the real trainer as one pack; each ends done with its own metrics.json."""
  spec = _sweep_file(tmp_path, """
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
  command = [sys.executable, "-m", "wae_jax.sweep", "run", spec, f"--workdir={workdir}",
             "--pack=4"]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "4 to run as 1 pack of <= 4" in done.stdout and "done 4" in done.stdout
  trials = sweep_lib.load_sweep(spec).trials
  records = {tid: json.loads((workdir / tid / "metrics.json").read_text()) for tid in trials}
  for tid, record in records.items():
    assert (record["status"], record["step"]) == ("done", 20)
    assert {k: record["config"][k] for k in ("lam", "optim.lr", "seed")} == {
        k: trials[tid][f"config.{k}"] for k in ("lam", "optim.lr", "seed")}
    assert (workdir / tid / "checkpoints" / "20").is_dir()
  assert len({r["metrics"]["mmd_heldout"] for r in records.values()}) == 4
  [log] = {(workdir / tid / "train.log").read_text() for tid in trials}  # One program's log.
  assert all(f"Done: metrics in {workdir / tid}" in log for tid in trials)
