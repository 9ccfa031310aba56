"""Packing: K trials as one vmapped program equal the same trials run alone."""
import jax
import numpy as np
import pytest

from wae_jax import config as config_lib
from wae_jax import loop
from wae_jax import workdir as workdir_lib
from loop_test import tiny



PACK = [dict(seed=0, lam=10.0), dict(seed=1, lam=1.0, **{"optim.lr": 2e-3}),
        dict(seed=2, lam=30.0, prior_var=2.0), dict(seed=3, lam=3.0, **{"recon.scale": 0.1})]


# Six steps: Adam turns rounding in a near-zero gradient into a full step of a near-zero
# weight, and a trial alone (unvmapped) and in a pack (vmapped) round their convolutions
# differently; measured here, one of these trials drifts from 3e-6 at step 7 to 4e-2 at
# step 20 while up to step 6 every logged loss agrees to 1e-6. A wrong batch, rng or
# hyperparameter moves the loss of step 1 or 2 far beyond 1e-5.
STEPS = 6


def packable(num_steps=STEPS, **overrides):
  """A tiny trial for the pack tests, every step logged, on the XLA transposed convolution:
  the CPU default's matmul is batched for K > 1 and plain for K = 1, which round differently
  enough to reach 2e-4 by the end."""
  return tiny(num_steps=num_steps, eval_every=num_steps, log_every=1, ckpt_every=num_steps,
              **{"model.conv_impl": "xla"}, **overrides)


def _assert_same_run(a, b, rtol=1e-5):
  assert sorted(a.history) == sorted(b.history) == list(range(1, STEPS + 1))
  for step in a.history:
    for key, value in a.history[step].items():
      # atol: the MMD penalty is a difference of kernel means; its rounding is absolute.
      np.testing.assert_allclose(b.history[step][key], value, rtol=rtol, atol=rtol,
                                 err_msg=f"{key}@{step}")
  # The parameters as one vector, by norm: a sign flip of a near-zero gradient moves its
  # weight by a whole Adam step, well inside the losses' 1e-5.
  flat = lambda r: np.concatenate([np.ravel(v) for v in jax.tree.leaves(
      (r.state.params, r.state.batch_stats))]).astype(np.float64)
  x, y = flat(a), flat(b)
  assert np.linalg.norm(y - x) <= 1e-4 * np.linalg.norm(x)


ALONE_WORKER = pytest.mark.xdist_group("pack_alone")


@pytest.fixture(scope="session")
def alone(tmp_path_factory):
  """The PACK trials, each trained on its own (the reference for packed training); once: the
  tests that use it run on one xdist worker (ALONE_WORKER)."""
  root = tmp_path_factory.mktemp("alone")
  return [loop.train(packable(**o), str(root / str(k)))
          for k, o in enumerate(PACK)]


@ALONE_WORKER
def test_a_pack_equals_its_trials_run_alone(alone, tmp_path):
  dirs = [str(tmp_path / str(k)) for k in range(len(PACK))]
  packed = loop.train_pack([packable(**o) for o in PACK], dirs)
  for a, p, d in zip(alone, packed, dirs):
    _assert_same_run(a, p)
    assert workdir_lib.read_metrics(d)["status"] == "done"
    for key, value in a.metrics.items():
      np.testing.assert_allclose(p.metrics[key], value, rtol=1e-4, err_msg=key)


# The packs below have PACK's size and shapes: the same program, compiled once a CI run.


@ALONE_WORKER
def test_a_packed_checkpoint_resumes_as_a_single_trial(alone, tmp_path):
  dirs = [str(tmp_path / str(k)) for k in range(len(PACK))]
  loop.train_pack([packable(STEPS // 2, **o) for o in PACK], dirs)
  resumed = loop.train(packable(**PACK[1]), dirs[1])
  assert sorted(resumed.history) == list(range(STEPS // 2 + 1, STEPS + 1))
  for step, metrics in resumed.history.items():
    np.testing.assert_allclose(metrics["loss"], alone[1].history[step]["loss"], rtol=1e-5)


@ALONE_WORKER
def test_a_diverging_member_is_recorded_and_the_others_go_on(alone, tmp_path):
  members = [PACK[0], dict(seed=9, **{"recon.scale": 1e38}), *PACK[2:]]
  dirs = [str(tmp_path / str(k)) for k in range(len(members))]
  packed = loop.train_pack([packable(**o) for o in members], dirs)
  assert [r.status for r in packed] == ["done", "diverged", "done", "done"]
  assert workdir_lib.read_metrics(dirs[1])["step"] == 1
  for k in (0, 2, 3):
    _assert_same_run(alone[k], packed[k])


def test_trials_that_differ_in_shape_cannot_share_a_pack(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="config.z_dim: trials in one pack must agree"):
    loop.train_pack([tiny(), tiny(z_dim=4)], [str(tmp_path / "a"), str(tmp_path / "b")])
