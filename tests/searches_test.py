"""Searches and executors by name: one registered from outside the package (a toy search
that proposes new points, a toy executor of threads) runs through `wae-sweep run` and
`wae-results --replay` unchanged."""
import json
import os
import subprocess
import sys

from conftest import FAKE_TRAINER, REPO, kill_and_relaunch, log_counts, sweep_file
import pytest

from wae_jax import executors
from wae_jax import hyper
from wae_jax import searches
from wae_jax import workdir as workdir_lib

FIXTURES = os.path.join(REPO, "tests", "fixtures")
TOY = """
def get_hyper(h):
  return h.product([h.sweep("config", ["fa", "fb"]), h.fixed("config.num_steps", 8),
                    h.zipit([h.sweep("config.quality", [3, 1, 2]), h.sweep("config.seed", [0, 1, 2])])])

def get_search(arg=None):
  return {"name": "toy_search", "first": 2, "max_steps": 8, "metric": "domain_fid",
          "propose": True}
"""


def _run(*argv, **kwargs):
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([FIXTURES, REPO])}
  return subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300, **kwargs)


def test_unknown_parts_are_one_line():
  with pytest.raises(hyper.SweepError, match="unknown search 'no_such_search' .*known: asha"):
    searches.parse({"name": "no_such_search"})
  with pytest.raises(hyper.SweepError, match="unknown executor 'slurm'"):
    executors.get("slurm")
  with pytest.raises(hyper.SweepError, match="unknown executor 'locl'; did you mean 'local'"):
    executors.get("locl")
  with pytest.raises(hyper.SweepError, match="--ray_address: the local executor does not take"):
    executors.get("local")({"ray_address": "auto"})


@pytest.mark.slow
def test_an_outside_search_and_executor_run_through_the_clis(tmp_path):
  spec, workdir, log = sweep_file(tmp_path, TOY), tmp_path / "w", tmp_path / "log"
  run = _run("-m", "wae_jax.cli.sweep", "run", spec, f"--workdir={workdir}", "--nocheck",
             "--executor=toy_executor", "--parallel=2", "--optuna=",
             f"--trainer={sys.executable} {FAKE_TRAINER} --log={log}")
  assert run.returncode == 0, run.stderr
  ledger = json.loads((workdir / workdir_lib.LEDGER).read_text())
  assert ledger["search"]["name"] == "toy_search"
  proposed = ledger["proposed"][spec]
  assert len(proposed) == 2  # One a bracket, from each bracket's best (quality 1, seed 1).
  for tid in proposed:
    trial = ledger["trials"][tid]
    assert trial["config.seed"] == 1001 and trial["config.quality"] == 1
    note = json.loads((workdir / tid / workdir_lib.SEARCH).read_text())
    assert workdir_lib.read_record(workdir / tid)["status"] == "done" and note["from"]
  assert "toy " in run.stdout and "done 8" in run.stdout
  # Each bracket: 3 trials to 2 steps, the best on to 8, its offspring to 8.
  starts = [l.split() for l in log.read_text().splitlines() if l.startswith("start")]
  assert len(starts) == 2 * (3 + 1 + 1)
  again = _run("-m", "wae_jax.cli.sweep", "run", spec, f"--workdir={workdir}", "--nocheck",
               "--executor=toy_executor", "--optuna=",
               f"--trainer={sys.executable} {FAKE_TRAINER} --log={log}")
  # The relaunch finds every decision taken and every trial final: 10 starts, 10 dones.
  assert again.returncode == 0 and len(log.read_text().splitlines()) == 20


def test_an_outside_search_replays(tmp_path):
  """The toy search (without proposals) replayed on a finished full-budget study."""
  from wae_jax import events  # pylint: disable=g-import-not-at-top
  ledger = {"sweeps": {"s.py": []}, "trials": {}, "search": {"name": "random"}}
  for i, (base, quality) in enumerate([("a", 3), ("a", 1), ("b", 2), ("b", 5)]):
    trial = {"config": base, "config.seed": i}
    tid = f"{base}{i}"
    ledger["trials"][tid] = trial
    (tmp_path / tid).mkdir()
    writer = events.Writer(tmp_path / tid)
    for step in (2, 4, 8):
      writer.write_scalars(step, {"eval/domain_fid": quality + 10 / step})
    writer.close()
    workdir_lib.write_metrics(tmp_path / tid, status="done", step=8, num_steps=8, wall_s=1.0,
                              metrics={"domain_fid": quality + 10 / 8}, config={"algo": base})
  (tmp_path / workdir_lib.LEDGER).write_text(json.dumps(ledger))
  out = _run("-m", "wae_jax.cli.results", str(tmp_path), "--replay=toy_search",
             "--grid", "first=2,4", "--grid=propose=false")
  assert out.returncode == 0, out.stderr
  assert "toy_search replayed on 4 trials by domain_fid" in out.stdout
  # Each bracket: two trials to `first`, the best to 8: 2 * (2 first + 8 - first) steps.
  rows = [l for l in out.stdout.splitlines() if l.startswith("| 2 ") or l.startswith("| 4 ")]
  assert [r.split("|")[3].strip() for r in rows] == ["20", "24"]
  assert all("| yes |" in r for r in rows)


# Two brackets of two points each; tpe grows each to 4 points from its space.
PROPOSING = """
def get_hyper(h):
  space = {"config.quality": h.uniform(0, 10)}
  return h.chainit([h.product([h.fixed("config", b), h.fixed("config.num_steps", 8),
                               h.fixed("config.step_s", 0.03),
                               h.chainit([h.random_search(2, space, seed=i), h.space(space)])])
                    for i, b in enumerate(["fa", "fb"])])

def get_search(arg=None):
  return {"name": "%s", "min_steps": 2, "eta": 2, "max_steps": 8, "metric": "domain_fid",
          **%r}
"""


@pytest.mark.slow
@pytest.mark.parametrize("name, options", [
    ("curve", {}), ("tpe", {"trials": 4, "startup": 2}),
    ("tpe", {"trials": 4, "startup": 2, "pool": True})])
def test_a_killed_sweep_relaunched_keeps_every_decision_and_proposal(tmp_path, name, options):
  """Three SIGKILLs of the driver; the end is the uninterrupted run's: the same points
  proposed (none lost, none twice), the same decisions, each climb trained once."""
  body = PROPOSING % (name, options)
  if name == "curve":  # It proposes nothing: the file's points alone.
    body = body.replace("h.chainit([h.random_search(2, space, seed=i), h.space(space)])",
                        "h.random_search(4, space, seed=i)")
  spec = sweep_file(tmp_path, body)
  ends = []
  for kills in ((), (2, 5, 8)):
    log, workdir = tmp_path / f"log{len(kills)}", tmp_path / f"w{len(kills)}"
    log.touch()
    command = ["-m", "wae_jax.cli.sweep", "run", spec, f"--workdir={workdir}", "--parallel=1",
               "--nocheck", "--executor=local", "--optuna=",
               f"--trainer={sys.executable} {FAKE_TRAINER} --log={log}"]
    if kills:
      done = kill_and_relaunch([sys.executable, *command], log, kills)
    else:
      done = _run(*command)
    assert done.returncode == 0, done.stderr
    ledger = workdir_lib.read_ledger(workdir)
    trials = list(ledger["trials"])  # The proposals among them.
    notes = {t: workdir_lib.read_json(workdir / t / workdir_lib.SEARCH) for t in trials}
    _, dones = log_counts(log)
    ends.append((ledger.get("proposed"), notes, dones))
  assert ends[1] == ends[0]
  proposed, notes, dones = ends[0]
  assert sum(map(len, (proposed or {}).values())) == (4 if name == "tpe" else 0)
  # Each climb completed once: a done line per rung a trial reached.
  assert dones == {t: len(n["results"]) for t, n in notes.items()}
