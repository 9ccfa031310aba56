"""Tests of trial ids, their flags, the sweep files and the up-front config checks."""
import collections
import json
import os
import subprocess
import sys

from conftest import REPO, sweep_file
import pytest

from wae_jax import hyper
from wae_jax import searches
from wae_jax import study
from wae_jax.cli import sweep as sweep_cli


def test_trial_id_is_a_canonical_hash():
  a = {"config": "mnist_vae", "config.lam": 1.0, "config.seed": 0}
  b = {"config.seed": 0, "config.lam": 1.0, "config": "mnist_vae"}
  assert study.trial_id(a) == study.trial_id(b)
  assert study.trial_id(a) != study.trial_id({**a, "config.seed": 1})
  # Pinned: ids name directories of running studies and must never change.
  assert study.trial_id(a) == "539ffd163295"


def test_trial_ids_are_the_same_in_another_process():
  here = list(study.load_sweep("sweeps/bigwae.py", check=False).trials)
  code = ("import json; from wae_jax import study; "
          "print(json.dumps(list(study.load_sweep('sweeps/bigwae.py', check=False).trials)))")
  there = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONHASHSEED": "123"}).stdout
  assert json.loads(there) == here


def test_flags_of():
  trial = {"config": "mnist_wae_mmd:debug", "config.mmd.scales": [0.5, 1.0], "config.lam": 1e-05,
           "config.mmd.kernel": "rbf", "config.gan.p_trick": True, "config.z_dim": 8,
           "config.eval.evaluators": ["heldout"]}
  assert study.flags_of(trial) == [
      "--config=mnist_wae_mmd:debug", '--config.eval.evaluators=("heldout",)',
      "--config.gan.p_trick=True", "--config.lam=1e-05", "--config.mmd.kernel=rbf",
      "--config.mmd.scales=(0.5, 1.0)", "--config.z_dim=8"]


# --- The sweep files -----------------------------------------------------------------------


def test_bigwae_has_3000_trials_with_equal_budgets():
  s = study.load_sweep("sweeps/bigwae.py")  # Also validates every trial's config.
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
         "celeba_vae": {"config.recon.cost", "config.recon.scale"},
         "celeba_wae_sw": {"config.lam", "config.sw.num_projections"}}
  shared = {"config", "config.num_steps", "config.ckpt_every", "config.seed", "config.z_dim",
            "config.batch_size", "config.optim.lr", "config.model.arch"}
  assert all(set(t) == shared | own[t["config"]] for t in trials)
  # The study searches the VAE's decoder variance: a fixed one, not celeba_vae's learned one.
  assert {t["config.recon.cost"] for t in trials if t["config"] == "celeba_vae"} == {"l2sq"}


@pytest.mark.parametrize("spec,count", [
    ("sweeps/bigwae.py:debug", 8), ("sweeps/table1.py", 6), ("sweeps/table1.py:mnist", 3),
    ("sweeps/kernel_ablation.py", 36), ("sweeps/kernel_ablation.py:debug", 12),
    ("sweeps/kernel_ablation.py:fashion", 24), ("sweeps/comparison.py:mnist", 12),
    ("sweeps/bigwae_asha.py:pilot", 48), ("sweeps/bigwae_asha.py:debug", 48)])
def test_sweep_files(spec, count):
  assert len(study.load_sweep(spec).trials) == count


def test_the_asha_benchmark_shares_no_trial_with_the_pilot_that_chose_its_rungs():
  pilot, debug = (study.load_sweep(f"sweeps/bigwae_asha.py:{a}", check=False)
                  for a in ("pilot", "debug"))
  assert searches.spec_of(pilot.search) == searches.spec_of(debug.search)
  assert not set(pilot.trials) & set(debug.trials)


def test_check_divides_each_batch_over_the_target_devices():
  """The paper's batch of 100 cannot shard over a v2-8's 8 cores: said before launch."""
  assert len(study.load_sweep("sweeps/table1.py:mnist", num_devices=4).trials) == 3
  assert len(study.load_sweep("sweeps/bigwae.py:debug", num_devices=8).trials) == 8
  with pytest.raises(hyper.SweepError, match=r"batch_size.*100 does not divide over 8"):
    study.load_sweep("sweeps/table1.py:mnist", num_devices=8)
  with pytest.raises(SystemExit) as e:
    sweep_cli.main(["list", "sweeps/table1.py", "--devices=0"])
  assert e.value.code == 2


def test_bad_sweeps_fail_with_one_line(tmp_path, capsys):
  no_base = sweep_file(tmp_path, "def get_hyper(h):\n  return h.sweep('config.lam', [1])\n")
  with pytest.raises(hyper.SweepError, match="no base config"):
    study.load_sweep(no_base)
  typo = sweep_file(tmp_path, "def get_hyper(h):\n"
                     "  return h.product([h.fixed('config', 'mnist_vae'),"
                     " h.fixed('config.optim.lrr', 1e-3)])\n", "typo.py")
  with pytest.raises(hyper.SweepError, match="optim.lrr"):
    study.load_sweep(typo)
  with pytest.raises(hyper.SweepError, match="unknown argument"):
    study.load_sweep("sweeps/bigwae.py:huge")
  with pytest.raises(SystemExit) as e:
    sweep_cli.main(["run", typo])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("wae-sweep: error:") and err.count("\n") == 1


@pytest.mark.parametrize("body,match", [
    ("def get_hyper(h:\n", r"SyntaxError: '\(' was never closed"),
    ("def get_hyper(h):\n  return 5\n", "get_hyper must return a list of dicts.*got int"),
    ("def get_hyper(h):\n  return [1, 2]\n", "get_hyper must return a list of dicts"),
    ("def get_hyper(h):\n  return undefined\n", "NameError: name 'undefined'"),
])
def test_a_broken_sweep_file_is_one_line(tmp_path, body, match):
  path = tmp_path / "s.py"
  path.write_text(body)
  with pytest.raises(hyper.SweepError, match=match):
    study.load_sweep(str(path))


def test_a_sweep_that_names_an_outside_part_imports_it(tmp_path, monkeypatch):
  """`config.algo` naming a regulariser module outside the package imports it, so its own
  section's fields can be swept and are checked like any other."""
  from conftest import REPO, sweep_file  # pylint: disable=g-import-not-at-top
  from wae_jax import regularisers  # pylint: disable=g-import-not-at-top
  monkeypatch.syspath_prepend(os.path.join(REPO, "tests", "fixtures"))
  # Later configs of this worker get no `rff` section.
  monkeypatch.setattr(regularisers, "_REGISTRY", dict(regularisers._REGISTRY))
  body = """
      def get_hyper(h):
        return h.product([h.fixed("config", "mnist_wae_mmd:debug"), h.fixed("config.algo", "rff_mmd"),
                          h.sweep("config.rff.num_features", %s)])
      """
  try:
    s = study.load_sweep(sweep_file(tmp_path, body % "[16, 64]"))
    assert [study.trial_config(t).rff.num_features for t in s.trials.values()] == [16, 64]
    with pytest.raises(hyper.SweepError, match="config.rff.num_features"):
      study.load_sweep(sweep_file(tmp_path, body % "[0]"))
  finally:
    sys.modules.pop("rff_mmd", None)  # Imported again, and registered, where next named.


@pytest.mark.parametrize("overrides, message", [
    ('h.fixed("config.batch_size", 4096)', "config.batch_size: 4096 exceeds the 4000 training"),
    ('h.fixed("config.data.heldout", 5000)', "config.data.heldout: 5000 must be between 1 and"),
])
def test_a_sweep_checks_its_trials_sizes_against_the_source_before_any_starts(
    tmp_path, overrides, message):
  spec = tmp_path / "s.py"
  spec.write_text("def get_hyper(h):\n  return h.product([h.fixed('config', "
                  f"'mnist_wae_mmd:debug'), {overrides}])\n")
  with pytest.raises(hyper.SweepError, match=message):
    study.load_sweep(str(spec))


def test_a_sweep_checks_every_trials_memory_before_any_starts(tmp_path):
  spec = tmp_path / "s.py"
  spec.write_text("def get_hyper(h):\n  return h.product([h.fixed('config', "
                  "'mnist_wae_mmd:debug'), h.fixed('config.model.width', 1 / 64), "
                  "h.sweep('config.eval.batch_size', [500, 50_000_000])])\n")
  s = study.load_sweep(str(spec))
  big = next(t for t, trial in s.trials.items() if trial["config.eval.batch_size"] > 500)
  with pytest.raises(hyper.SweepError, match=f"trial {big}: config.eval.batch_size=50000000: "
                     "needs ~.* GiB per device"):
    study.check_memory(s)
  study.check_memory(study.Sweep(s.spec, {t: v for t, v in s.trials.items() if t != big},
                                 s.search))
