"""Feeds: a dispatch's batches, gathered on the device or streamed, are the loop's batches."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import feed


@pytest.fixture
def setting():
  mesh = Mesh(np.array(jax.devices()), ("data",))
  images = np.random.default_rng(0).integers(0, 256, (100, 4, 4, 1), np.uint8)
  configs = []
  for seed in (3, 5):
    c = config_lib.mnist()
    c.seed, c.batch_size = seed, 16
    configs.append(c)
  return mesh, images, configs


@pytest.mark.parametrize("device_max_mb", [3072, 0])
def test_each_step_gets_its_batch_from_seed_and_step(setting, device_max_mb):
  mesh, images, configs = setting
  for c in configs:
    c.data.device_max_mb = device_max_mb
  feeder = feed.Feeder(configs, images, mesh, steps_per_dispatch=4)
  assert feeder.resident == (device_max_mb > 0)
  f = feeder(10, 3)  # Steps 11..13; 6 batches to an epoch, so 12 starts the third.
  assert type(f) is (feed.Resident if feeder.resident else feed.Streamed)
  assert f.steps == 4
  for i in range(3):
    got = np.asarray(jax.jit(f.batches)(jnp.int32(i)))
    assert got.shape == (2, 16, 4, 4, 1)
    for k, c in enumerate(configs):
      want = images[data.batch_indices(len(images), 16, c.seed, 10 + i)]
      np.testing.assert_array_equal(got[k], want)
  pad = np.asarray(jax.jit(f.batches)(jnp.int32(3)))  # Padding: never trained on.
  np.testing.assert_array_equal(pad, np.asarray(jax.jit(f.batches)(jnp.int32(2))))


def test_batches_are_sharded_over_the_devices(setting):
  mesh, images, configs = setting
  f = feed.Feeder(configs, images, mesh, steps_per_dispatch=2)(0, 2)
  sharded = f.indices if isinstance(f, feed.Resident) else f.images
  assert sharded.sharding.spec[2] == "data"
  assert sharded.addressable_shards[0].data.shape[2] == 16 // jax.device_count()


@pytest.mark.parametrize("device_max_mb", [3072, 0])
def test_a_prefetched_feed_is_the_one_asked_for_and_a_wrong_guess_is_dropped(setting,
                                                                             device_max_mb):
  mesh, images, configs = setting
  for c in configs:
    c.data.device_max_mb = device_max_mb
  feeder = feed.Feeder(configs, images, mesh, steps_per_dispatch=4)
  fresh = feed.Feeder(configs, images, mesh, steps_per_dispatch=4)
  leaves = lambda f: [np.asarray(a) for a in jax.tree.leaves(f)]
  feeder.prefetch(8, 4)
  for got, want in zip(leaves(feeder(8, 4)), leaves(fresh(8, 4))):
    np.testing.assert_array_equal(got, want)
  feeder.prefetch(12, 4)  # The loop guessed 4 steps; a trial's end made it 2.
  for got, want in zip(leaves(feeder(12, 2)), leaves(fresh(12, 2))):
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("field,value,message", [
    ("steps_per_dispatch", 0, "must be an integer >= 1"),
    ("data.device_max_mb", -1, "must be an integer >= 0"),
])
def test_bad_values_are_refused_by_name(field, value, message):
  c = config_lib.load("mnist_wae_mmd:debug")
  c.update_from_flattened_dict({field: value})
  with pytest.raises(config_lib.ConfigError, match=f"config.{field}: {message}"):
    config_lib.validate(c, 8)
