"""A trial's memory need: a net or an evaluation batch too large for the devices is refused
in one line, naming the field and what fits, before anything is written."""
import re

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from wae_jax import config as config_lib
from wae_jax import data
from wae_jax import loop
from wae_jax import memory

MIB = 1 << 20


def tiny(**overrides):
  c = config_lib.load("mnist_wae_mmd:debug")
  c.update_from_flattened_dict({"model.width": 1 / 64, "batch_size": 32, "num_steps": 2,
                                "eval.num_samples": 64, **overrides})
  return c


@pytest.fixture(name="setting", scope="module")
def _setting():
  c = tiny()
  return data.load(c.data.source, c.data.heldout), Mesh(np.array(jax.devices()), ("data",))


def refusal(c, setting, free):
  ds, mesh = setting
  with pytest.raises(config_lib.ConfigError) as e:
    memory.check([c], ds, mesh, free=free)
  return str(e.value)


def test_an_evaluation_batch_too_large_names_the_largest_that_fits(setting):
  ds, mesh = setting
  message = refusal(tiny(**{"eval.batch_size": 10_000_000}), setting, 64 * MIB)
  match = re.fullmatch(r"config\.eval\.batch_size=10000000: needs ~(\S+) GiB per device, "
                       r"devices have 0\.0625 GiB; at most (\d+) fits", message)
  assert match, message
  assert float(match[1]) > 1  # 1.25M examples a device, ~100 KB each.
  fits = int(match[2])
  memory.check([tiny(**{"eval.batch_size": fits})], ds, mesh, free=64 * MIB)
  assert "eval.batch_size" in refusal(tiny(**{"eval.batch_size": fits + mesh.size}), setting,
                                      64 * MIB)


def test_a_training_batch_too_large_names_a_multiple_of_the_devices_that_fits(setting):
  ds, mesh = setting
  message = refusal(tiny(batch_size=80_000), setting, 64 * MIB)
  fits = int(re.fullmatch(r"config\.batch_size=80000: needs .*; at most (\d+) fits", message)[1])
  assert fits % mesh.size == 0
  memory.check([tiny(batch_size=fits)], ds, mesh, free=64 * MIB)
  refusal(tiny(batch_size=fits + mesh.size), setting, 64 * MIB)


def test_a_net_too_wide_names_the_widest_that_fits(setting):
  ds, mesh = setting
  message = refusal(tiny(**{"model.width": 4.0}), setting, 64 * MIB)
  match = re.fullmatch(r"config\.model\.width=4\.0: needs ~\S+ GiB per device, devices have "
                       r"0\.0625 GiB \(the parameters and optimizer state alone ~(\S+) GiB\); "
                       r"at most model\.width=(\S+) fits", message)
  assert match and float(match[1]) > 0.0625, message
  width = float(match[2])
  assert 0.1 < width < 4
  memory.check([tiny(**{"model.width": width})], ds, mesh, free=64 * MIB)
  refusal(tiny(**{"model.width": 1.2 * width}), setting, 64 * MIB)


def test_the_state_is_counted_whole_per_trial_of_a_pack(setting):
  """Replicated: each device holds every parameter, once per packed trial, with Adam's two
  moments and the gradients (4x the parameters, and a little)."""
  ds, mesh = setting
  c = tiny()
  params = sum(a.size * 4 for a in jax.tree.leaves(
      memory.state_lib.abstract_state(c, ds, mesh).params))
  one, three = memory.need(c, ds, mesh), memory.need(c, ds, mesh, k=3)
  assert 4 * params <= one.state < 4.1 * params
  assert three.state == 3 * one.state and three.train_example == 3 * one.train_example


def test_the_trainer_refuses_before_writing_anything(tmp_path, monkeypatch):
  monkeypatch.setattr(memory, "device_bytes", lambda: 64 * MIB)
  with pytest.raises(config_lib.ConfigError, match=r"^config\.eval\.batch_size=10000000: "):
    loop.train(tiny(**{"eval.batch_size": 10_000_000}), str(tmp_path / "t"))
  assert not (tmp_path / "t").exists()
