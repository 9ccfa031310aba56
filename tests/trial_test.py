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


@pytest.mark.parametrize("content,match", [
    ('{"lam": 1', r"config.json: unreadable"),
    ('[1, 2]', r"config.json: unreadable"),
])
def test_an_unreadable_config_json_is_one_line(tmp_path, content, match):
  (tmp_path / workdir_lib.CONFIG).write_text(content)
  with pytest.raises(config_lib.ConfigError, match=match):
    trial_lib.check_directory(config_lib.load("mnist_wae_mmd:debug"), tmp_path)


def test_a_file_is_not_a_trial_directory(tmp_path):
  (tmp_path / "f").write_text("")
  with pytest.raises(config_lib.ConfigError, match="is a file, not a directory"):
    trial_lib.check_path(tmp_path / "f")
