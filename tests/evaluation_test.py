"""wae-eval: domain FID, FID and sharpness of a trial's latest checkpoint, and the same
evaluation at the end of training (`eval.final_fid`); the prior draws every evaluation
decodes, and the held-out MMD against a float64 reference."""
import functools
import json
import types

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from wae_jax import classifier
from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import evaluation
from wae_jax import evaluators
from wae_jax import events
from wae_jax import fid
from wae_jax import inception
from wae_jax import inception_weights
from wae_jax import loop
from wae_jax import models
from wae_jax import results as results_lib
from wae_jax import trained
from wae_jax.cli import evaluate as evaluate_cli
from wae_jax.evaluators import common
from wae_jax.samplers import gmm
from wae_jax import workdir as workdir_lib
from loop_test import tiny

CLASSIFIER_STEPS = 50  # The real classifier takes 2,000 steps: minutes on a laptop CPU.
NUM_SAMPLES = 256
FID_KEYS = {"domain_fid", "domain_fid_classifier_acc", "domain_fid_data", "eval_num_samples"}


@pytest.fixture(autouse=True)
def no_inception_weights(monkeypatch, tmp_path):
  monkeypatch.delenv(inception_weights.ENV, raising=False)
  monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # No weights in torch's cache.


def _trained(root):
  """A tiny trial trained with eval.final_fid (and the domain FID among the periodic
  evaluators, as an ASHA search ranks by it), and the cache its evaluation filled."""
  cache_dir = str(root / "cache")
  c = tiny(num_steps=10, eval_every=5, ckpt_every=10, **{
      "eval.final_fid": True, "eval.fid_num_samples": NUM_SAMPLES, "eval.cache_dir": cache_dir,
      "eval.evaluators": ("heldout", "domain_fid")})
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(evaluation, "final_metrics",
               functools.partial(evaluation.final_metrics, classifier_steps=CLASSIFIER_STEPS))
    mp.setattr(classifier, "STEPS", CLASSIFIER_STEPS)  # The periodic evaluators' classifier.
    result = loop.train(c, str(root / "trial"))
  return root / "trial", cache_dir, result


@pytest.mark.slow
def test_final_fid_at_the_end_of_training_and_the_same_from_wae_eval(tmp_path, capsys,
                                                                      monkeypatch):
  """One trained trial (its set-up is most of the time) through three checks, in order: the
  final metrics training wrote, wae-eval refusing bad weights without touching them, and
  wae-eval recomputing the same metrics."""
  workdir, cache_dir, result = _trained(tmp_path)
  _final_metrics_of_training(workdir, result)
  _wae_eval_rejects_wrong_inception_weights(workdir, tmp_path, capsys, monkeypatch)
  _wae_eval_merges_the_same_metrics_into_metrics_json(workdir, cache_dir, result, monkeypatch)


def _final_metrics_of_training(workdir, result):
  m = workdir_lib.read_metrics(workdir)
  assert m["status"] == "done" and m["step"] == 10
  assert m["metrics"] == pytest.approx(result.metrics)
  assert FID_KEYS <= set(m["metrics"]) and m["metrics"]["eval_num_samples"] == NUM_SAMPLES
  assert "fid" not in m["metrics"] and "fid_protocol" not in m  # No weights: no FID.
  assert all(np.isfinite(v) for v in m["metrics"].values())
  assert m["metrics"]["domain_fid"] > 0 and 0.1 < m["metrics"]["domain_fid_classifier_acc"] <= 1
  # Held-out images against the same statistics: the real-data row, far below a 10-step model.
  assert 0 < m["metrics"]["domain_fid_data"] < m["metrics"]["domain_fid"] / 2
  assert m["domain_fid_protocol"]["samples"] == NUM_SAMPLES
  periodic = events.read_scalars(workdir)  # On the trial's 64 eval.num_samples.
  assert periodic[(5, "eval/domain_fid")] > 0 and (5, "eval/mmd_heldout") in periodic


def _wae_eval_merges_the_same_metrics_into_metrics_json(workdir, cache_dir, result, monkeypatch):
  before = workdir_lib.read_metrics(workdir)
  # As if trained without eval.final_fid.
  workdir_lib.write_json(workdir / workdir_lib.METRICS, {
      **before, "metrics": {k: v for k, v in before["metrics"].items() if k not in FID_KEYS}})
  got = evaluation.evaluate(workdir, num_samples=NUM_SAMPLES, cache_dir=cache_dir,
                            classifier_steps=CLASSIFIER_STEPS)
  after = workdir_lib.read_metrics(workdir)
  assert {k: v for k, v in after.items() if k != "metrics"} == {
      k: v for k, v in before.items() if k != "metrics"}  # Status, step, config, ... stay.
  assert after["metrics"] == pytest.approx(got)
  assert got == pytest.approx(result.metrics, rel=1e-5)  # Same samples as in training.
  assert "fid" not in after["metrics"]

  # With Inception weights: FID beside its weights' hash. (Stubbed: real Inception features
  # of the 4,000 training images take too long on a CPU.)
  calls = []
  monkeypatch.setattr(inception, "load_params", lambda path: ({"w": path}, "ab" * 32))
  monkeypatch.setattr(fid, "inception_fid", lambda images, **kw: calls.append(
      (images, kw["variables"], kw["weights_sha256"])) or (12.5 + len(calls), {"n": len(calls)}))
  got = evaluation.evaluate(workdir, num_samples=NUM_SAMPLES, cache_dir=cache_dir,
                            weights="w.pth", classifier_steps=CLASSIFIER_STEPS)
  (samples, variables, sha), (real, _, _) = calls
  assert samples.shape == (NUM_SAMPLES, 28, 28, 1) and 0 <= samples.min() <= samples.max() <= 1
  assert real.shape == samples.shape and (variables, sha) == ({"w": "w.pth"}, "ab" * 32)
  m = workdir_lib.read_metrics(workdir)
  assert m["metrics"]["fid"] == got["fid"] == 13.5 and m["metrics"]["fid_data"] == 14.5
  assert m["fid_protocol"] == {"n": 1, "sampler": "prior"}
  assert m["metrics"]["domain_fid"] == pytest.approx(result.metrics["domain_fid"], rel=1e-5)
  _wae_eval_per_sampler(workdir, cache_dir, monkeypatch, m)


def _wae_eval_per_sampler(workdir, cache_dir, monkeypatch, before):
  """`wae-eval --sampler=gmm`: its metrics and protocols beside the prior's, a grid of its
  samples, and a results table that ranks by them."""
  monkeypatch.setattr(inception, "load_params", lambda path: None)  # No FID this time.
  monkeypatch.setattr(gmm.GMM, "settings", {**gmm.GMM.settings, "components": [1, 2]})
  evaluation.evaluate(workdir, num_samples=NUM_SAMPLES, cache_dir=cache_dir,
                      classifier_steps=CLASSIFIER_STEPS, sampler_names=("gmm",))
  m = workdir_lib.read_metrics(workdir)
  assert {k: v for k, v in m["metrics"].items() if "/" not in k} == before["metrics"]
  assert {k for k in m["metrics"] if "/" in k} == {
      "domain_fid/gmm", "sharpness_mean/gmm", "sharpness_min/gmm", "eval_num_samples/gmm"}
  assert m["metrics"]["domain_fid/gmm"] > 0
  protocol = m["domain_fid_protocol/gmm"]
  assert protocol["sampler"] == "gmm" and protocol["sampler_fit"]["codes_step"] == 10
  assert protocol["sampler_fit"]["components"] in (1, 2)
  assert (workdir / "samples_gmm.png").exists()
  assert (workdir / "samplers" / "10" / "gmm" / "sampler.json").exists()
  trials = results_lib.read_results(workdir.parent).trials
  assert results_lib.table_metric(trials, "domain_fid/gmm") == "domain_fid/gmm"


def _cli_error(argv, capsys) -> str:
  with pytest.raises(SystemExit) as e:
    evaluate_cli.main(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("wae-eval: error:") and err.count("\n") == 1, err
  return err


def test_cli_errors_are_one_line(tmp_path, capsys):
  assert "no trial directory" in _cli_error([f"--workdir={tmp_path / 'nowhere'}"], capsys)
  assert "unknown sampler 'gm'; did you mean 'gmm'?" in _cli_error(
      [f"--workdir={tmp_path}", "--sampler=prior,gm"], capsys)
  assert "config.json" in _cli_error([f"--workdir={tmp_path}"], capsys)
  (tmp_path / workdir_lib.CONFIG).write_text(json.dumps(tiny().to_dict()))
  assert "no checkpoint" in _cli_error([f"--workdir={tmp_path}"], capsys)


def _wae_eval_rejects_wrong_inception_weights(workdir, tmp_path, capsys, monkeypatch):
  wrong = tmp_path / inception_weights.FILE
  wrong.write_bytes(b"not the weights")
  before = (workdir / workdir_lib.METRICS).read_text()
  assert "has sha256" in _cli_error([f"--workdir={workdir}", f"--inception_weights={wrong}"],
                                    capsys)
  assert "not found" in _cli_error(
      [f"--workdir={workdir}", f"--inception_weights={tmp_path / 'none.pth'}"], capsys)
  with monkeypatch.context() as mp:
    mp.setenv(inception_weights.ENV, str(wrong))
    assert "has sha256" in _cli_error([f"--workdir={workdir}"], capsys)
  assert (workdir / workdir_lib.METRICS).read_text() == before


# --- The evaluation's draws from the prior, and the held-out MMD ----------------------------


def _context(prior_var, num_samples=64):
  """An evaluation context of mnist_wae_mmd:debug (d_z 8) with the prior N(0, prior_var I)."""
  c = config_lib.load("mnist_wae_mmd:debug")
  c.prior_var = prior_var
  mesh = Mesh(np.array(jax.devices()), ("data",))
  model = models.build(c, (28, 28, 1), symmetric=False)
  inference = common.Inference(c, model, mesh, data.Pixels(symmetric=False))
  return common.Context(inference, None, None, jax.random.key(0), c, num_samples)


def _imq_u_statistic(x, y, c):
  """Algorithm 2 in float64 NumPy: the within-sample means over l != j, minus 2 times the
  cross mean over all n^2 pairs, the IMQ kernel summed over the widths s * C."""
  def k(a, b):
    d2 = np.sum((a[:, None] - b[None]) ** 2, -1)
    return sum(s * c / (s * c + d2) for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0))
  n, m = len(x), len(y)
  kxx, kyy = k(x, x), k(y, y)
  return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
          - 2.0 * k(x, y).mean())


def test_heldout_mmd_is_the_u_statistic_with_c_2_dz_prior_var_against_prior_draws():
  """The held-out MMD of known codes: the estimator sees the codes divided by sqrt(C), C =
  2 d_z sigma_z^2 = 32, against as many draws of N(0, 2 I); its value is the float64 formula
  on those codes and draws (the factor 2 of C and of the cross term both show)."""
  context = _context(prior_var=2.0)
  rng = np.random.default_rng(0)
  codes = (1.5 * rng.normal(size=(800, 8)) + 0.5).astype(np.float32)
  context.__dict__["heldout"] = (codes, np.zeros(800), np.zeros(800), None)
  calls, estimate = [], context.inference.mmd
  context.inference.mmd = lambda x, y: calls.append((np.asarray(x), np.asarray(y))) or estimate(x, y)
  value, se = context.heldout_mmd()
  (x, y), = [(x, y) for x, y in calls if len(x) == len(codes)]  # The full sample; the rest folds.
  np.testing.assert_allclose(x * np.sqrt(32.0), codes, rtol=1e-6)
  prior = y.astype(np.float64) * np.sqrt(32.0)
  assert abs(prior.mean()) < 0.05 and 1.9 < prior.var() < 2.1  # 6,400 draws of N(0, 2).
  np.testing.assert_allclose(value, _imq_u_statistic(codes.astype(np.float64), prior, 32.0),
                             rtol=1e-4)
  assert value > 5 * se > 0  # These codes are far from the prior.
  metrics = evaluators.get("heldout").fn(context)
  assert metrics["mmd_heldout"] == value and metrics["mmd_heldout_se"] == se


def test_heldout_mmd_of_codes_from_the_prior_is_zero_within_its_error():
  """Codes drawn from N(0, 4 I) itself: the unbiased estimate is 0 up to noise (a cross term
  weighted 1 instead of 2, or prior draws of another variance, would put it far off)."""
  context = _context(prior_var=4.0)
  codes = (2.0 * np.random.default_rng(1).normal(size=(1000, 8))).astype(np.float32)
  context.__dict__["heldout"] = (codes, np.zeros(1000), np.zeros(1000), None)
  value, se = context.heldout_mmd()
  assert abs(value) < 4 * se < 0.02


@pytest.mark.parametrize("prior_var", [0.5, 4.0])
def test_samples_decode_draws_of_the_prior_n_0_prior_var(prior_var):
  """What the evaluators (sharpness, FIDs) and `wae_jax.load(...).sample` decode: draws of
  N(0, prior_var I), not N(0, I)."""
  seen = []
  fake = types.SimpleNamespace(pixels=data.Pixels(symmetric=False), decode="decode",
                               map=lambda fn, variables, z: seen.append(z) or z)
  c = config_lib.load("mnist_wae_mmd:debug")
  c.prior_var = prior_var
  context = common.Context(fake, None, None, jax.random.key(0), c, num_samples=4000)
  model = trained.TrainedModel(c, 0, None, fake)
  for z in (context.samples, model.sample(4000, seed=0)):
    assert z.shape == (4000, c.z_dim)
    # 32,000 draws: the second moment's relative sd is 0.8%.
    assert abs(z.mean()) < 0.05 * np.sqrt(prior_var)
    assert z.var() == pytest.approx(prior_var, rel=0.04)
  assert len(seen) == 2


def test_wae_eval_of_a_sweep_directory_evaluates_each_trial_then_ranks_by_a_sampler(
    tmp_path, capsys, monkeypatch):
  """`wae-eval --workdir=SWEEP`: a line per trial in the ledger's order (skipped ones named),
  a failing trial's error in one line while the others go on, exit 1 at the end; then
  `wae-results SWEEP --metric domain_fid/gmm` ranks by what it recorded. (The evaluation
  itself is stubbed: the slow test above runs the real one.)"""
  from wae_jax.cli import results as results_cli  # pylint: disable=g-import-not-at-top
  sweep = tmp_path / "sweep"
  fids = {"a": 80.0, "b": 40.0, "bad": None, "c": 60.0}
  ids = ["a", "unstarted", "bad", "b", "nockpt", "c"]
  for tid in ids[:1] + ids[2:]:
    (sweep / tid).mkdir(parents=True)
    c = tiny(**{"seed": len(tid)})
    (sweep / tid / workdir_lib.CONFIG).write_text(json.dumps(c.to_dict()))
    workdir_lib.write_metrics(sweep / tid, status="done", step=10, num_steps=10, wall_s=1.0,
                              metrics={"recon": 1.0}, config=c.to_dict())
    if tid != "nockpt":
      (sweep / tid / "checkpoints" / "10").mkdir(parents=True)
  workdir_lib.write_json(sweep / workdir_lib.LEDGER, {
      "sweeps": {"s.py": ids}, "trials": {t: {"config": "mnist_wae_mmd"} for t in ids}})

  def fake_evaluate(workdir, **options):
    assert options["sampler_names"] == ("gmm",)
    if fids[workdir.name] is None:
      raise RuntimeError("decoder blew up\nsecond line of a long story")
    metrics = {"domain_fid/gmm": fids[workdir.name], "sharpness_mean/gmm": 0.05}
    workdir_lib.update_metrics(workdir, metrics, {})
    return metrics

  monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
  with pytest.raises(SystemExit) as e:
    evaluate_cli.main([f"--workdir={sweep}", "--sampler=gmm"])
  assert e.value.code == 1
  out, err = capsys.readouterr()
  lines = [line for line in out.splitlines() if line.startswith("[")]
  assert [line.split(":")[0] for line in lines] == [f"[{i}/6] {t}" for i, t in
                                                   enumerate(ids, 1)]
  assert "domain_fid/gmm=80" in lines[0] and "sharpness" not in lines[0]
  assert lines[1].endswith("skipped: no config.json (not started)")
  assert lines[2].endswith("error: RuntimeError: decoder blew up")
  assert lines[4].endswith("skipped: no checkpoint") and "domain_fid/gmm=60" in lines[5]
  assert "Traceback" not in out + err
  assert err.strip().splitlines()[-1] == "wae-eval: error: 1 of 6 trials failed: bad"

  results_cli.main([str(sweep), "--metric", "domain_fid/gmm"])
  table = capsys.readouterr().out
  order = [t for t in sorted(fids, key=lambda t: table.find(f"| {t} ")) if f"| {t} " in table]
  assert order[:3] == ["b", "c", "a"], table
