"""The train state: the schedule, injected learning rates, and checkpoints of every layout."""
import os
import shutil

import jax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from wae_jax import config as config_lib
from wae_jax import loop
from wae_jax import state as state_lib
from loop_test import tiny

# Written by wae-jax before the state had layers (mnist_wae_gan:debug, tiny, step 10 of 10).
LEGACY = os.path.join(os.path.dirname(__file__), "testdata", "legacy_v0_wae_gan")


def test_learning_rate_schedule_divides_at_the_paper_epochs_one_factor_after_the_other():
  c = config_lib.load("mnist_wae_mmd")
  schedule = state_lib.learning_rate(1e-3, c, steps_per_epoch=600)
  got = [float(schedule(600 * e)) for e in (0, 29, 30, 49, 50, 99, 100)]
  np.testing.assert_allclose(got, [1e-3, 1e-3, 5e-4, 5e-4, 1e-4, 1e-4, 1e-5], rtol=1e-6)
  celeba = state_lib.learning_rate(1e-3, config_lib.load("celeba_wae_mmd"), steps_per_epoch=10)
  np.testing.assert_allclose([float(celeba(10 * e)) for e in (29, 30, 50, 54)],
                             [1e-3, 5e-4, 1e-4, 1e-4], rtol=1e-6)


def test_one_transformation_serves_trials_with_different_learning_rates():
  c = config_lib.load("mnist_wae_mmd")
  params = {"w": jnp.ones(3)}
  grads = {"w": jnp.full(3, 0.5)}
  tx = state_lib.optimizer(c, 600, lr=1.0)  # Its own rate is only the initial state's.
  steps = [tx.update(grads, state_lib.optimizer(c, 600, lr).init(params), params)[0]["w"]
           for lr in (1e-3, 3e-3)]
  np.testing.assert_allclose(steps[1], 3 * steps[0], rtol=1e-6)
  assert np.all(np.asarray(steps[0]) < 0)  # Descent.


def test_a_checkpoint_of_the_first_layout_resumes(tmp_path):
  """Base rates among the hyperparameters and the adversary in its own fields, as the first
  trainer saved them: read, converted, and trained on to the numbers that trainer reached."""
  shutil.copytree(LEGACY, tmp_path / "trial")
  c = tiny("mnist_wae_gan:debug", num_steps=20, log_every=5, ckpt_every=10, eval_every=10,
           lam=1.0, **{"model.conv_impl": "xla"})  # Its lambda (the config's then).
  result = loop.train(c, str(tmp_path / "trial"))
  assert result.status == "done" and sorted(result.history) == [15, 20]
  # What the pre-layering trainer logged resuming this checkpoint to step 20.
  np.testing.assert_allclose(result.history[20]["loss"], 5.874789237976074, rtol=1e-6)
  np.testing.assert_allclose(result.history[20]["adv_loss"], 1.38629150390625, rtol=1e-6)
  s = result.state
  assert int(s.step) == 20 and set(s.hparams) == set(state_lib.HPARAMS)
  assert float(s.opt_state.hyperparams["learning_rate"]) == np.float32(c.optim.lr)
  assert float(s.penalty_state["opt_state"].hyperparams["learning_rate"]) == np.float32(c.gan.lr)


def test_saving_small_replicated_arrays_compiles_nothing(tmp_path):
  """Orbax would slice each replicated array over the replicas, one compiled program per
  slice shape, at every trainer's first save."""
  mesh = Mesh(np.array(jax.devices()), ("d",))
  tree = {f"w{i}": jax.device_put(jnp.ones((8, i + 1)), NamedSharding(mesh, P()))
          for i in range(3)}
  compiles = []

  def count(event, duration, **kwargs):
    del duration, kwargs
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(event)

  manager = state_lib.checkpoint_manager(tmp_path, config_lib.load("mnist_wae_mmd"),
                                         create=True)
  jax.monitoring.register_event_duration_secs_listener(count)
  try:
    manager.save(1, args=ocp.args.StandardSave(tree))
    manager.wait_until_finished()
  finally:
    jax.monitoring.unregister_event_duration_listener(count)
  assert len(jax.devices()) > 1 and compiles == []
  restored = manager.restore(1, args=ocp.args.StandardRestore(tree))
  assert all(np.array_equal(restored[k], tree[k]) for k in tree)
