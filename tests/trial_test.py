"""A trial directory remembers its config: a rerun with another one is refused or restarted."""
import json

import pytest

from wae_jax import config as config_lib
from wae_jax import trial as trial_lib
from wae_jax import workdir as workdir_lib


def _trained(tmp_path, **overrides):
  """A directory as a trainer leaves it (config.json, metrics.json, a checkpoint dir)."""
  c = config_lib.load("mnist_wae_mmd:debug")
  c.update_from_flattened_dict(overrides)
  workdir_lib.write_json(tmp_path / workdir_lib.CONFIG, c.to_dict())
  workdir_lib.write_json(tmp_path / workdir_lib.METRICS, {"status": "done", "step": 5})
  (tmp_path / workdir_lib.CHECKPOINTS / "5").mkdir(parents=True)
  return c


def _files(path):
  return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_another_config_is_refused_naming_the_fields_and_nothing_changes(tmp_path):
  c = _trained(tmp_path)
  before = _files(tmp_path)
  other = config_lib.load("mnist_wae_mmd:debug")
  other.update_from_flattened_dict({"lam": 3.0, "z_dim": 4})
  with pytest.raises(config_lib.ConfigError, match=r"lam 10\.0 -> 3\.0, z_dim 8 -> 4.*--restart"):
    trial_lib.check_directory(other, tmp_path)
  assert _files(tmp_path) == before
  saved = config_lib.from_dict(json.loads((tmp_path / workdir_lib.CONFIG).read_text()))
  assert config_lib.flatten(saved) == config_lib.flatten(c)


def test_how_long_and_how_often_may_change(tmp_path):
  c = _trained(tmp_path)
  c.update_from_flattened_dict({"num_steps": 10 * c.num_steps, "log_every": 7,
                                "eval.num_samples": 64, "keep_ckpts": 1})
  trial_lib.check_directory(c, tmp_path)


def test_restart_moves_the_old_trial_aside(tmp_path):
  _trained(tmp_path)
  before = _files(tmp_path)
  other = config_lib.load("mnist_wae_mmd:debug")
  other.lam = 3.0
  trial_lib.check_directory(other, tmp_path, restart=True)
  [aside] = (tmp_path / workdir_lib.ASIDE).iterdir()
  assert aside.name.endswith("-restart") and _files(aside) == before
  assert [p.name for p in tmp_path.iterdir()] == [workdir_lib.ASIDE]


@pytest.mark.parametrize("content", ['{"lam": 1', '[1, 2]'])
def test_an_unreadable_config_json_with_nothing_to_rebuild_it_is_damaged(tmp_path, content):
  """Not a bad config (a sweep would mark it failed): a trial a person must look at."""
  (tmp_path / workdir_lib.CONFIG).write_text(content)
  (tmp_path / workdir_lib.METRICS).write_text('{"status": "runn')
  with pytest.raises(trial_lib.Damaged, match=r"config.json: unreadable .*, and metrics.json "
                     r"has no config to rebuild it from \(metrics.json unreadable"):
    trial_lib.check_directory(config_lib.load("mnist_wae_mmd:debug"), tmp_path)


def test_an_unreadable_config_json_is_rebuilt_from_metrics_json(tmp_path):
  c = _trained(tmp_path, lam=3.0, **{"optim.decay_factors": (2.0, 4.0)})
  workdir_lib.write_json(tmp_path / workdir_lib.METRICS, {
      "status": "running", "step": 5, "config": config_lib.flatten(c)})
  (tmp_path / workdir_lib.CONFIG).write_text('{"lam": 3.')
  trial_lib.check_directory(c, tmp_path)  # The same config: it goes on.
  other = c.copy_and_resolve_references()
  other.optim.decay_factors = (2.0, 5.0)
  with pytest.raises(config_lib.ConfigError, match=r"optim.decay_factors \[2.0, 4.0\] -> "):
    trial_lib.check_directory(other, tmp_path)


def test_a_file_is_not_a_trial_directory(tmp_path):
  (tmp_path / "f").write_text("")
  with pytest.raises(config_lib.ConfigError, match="is a file, not a directory"):
    trial_lib.check_path(tmp_path / "f")
