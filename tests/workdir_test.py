"""The trial-directory contract: records a reader can trust, durable writes, things set aside."""
import json

import pytest

from wae_jax import workdir as workdir_lib

GOOD = {"status": "done", "step": 20, "num_steps": 20, "wall_s": 3.5, "error": None,
        "metrics": {"recon": 1.5, "fid": None}, "config": {"lam": 10.0}}


def test_a_well_formed_record_reads_back(tmp_path):
  workdir_lib.write_json(tmp_path / workdir_lib.METRICS, GOOD)
  assert workdir_lib.load_record(tmp_path) == (GOOD, None)
  assert workdir_lib.read_state(tmp_path).status == "done"
  assert not list(tmp_path.glob(".*.tmp"))  # The temporary sibling was renamed into place.


@pytest.mark.parametrize("change,field", [
    ({"step": "20"}, "step"), ({"step": -1}, "step"), ({"step": True}, "step"),
    ({"metrics": {"recon": "1.5"}}, "metrics"), ({"metrics": [1.5]}, "metrics"),
    ({"config": "lam=10"}, "config"), ({"error": 3}, "error"), ({"status": "finished"}, "status"),
])
def test_a_malformed_record_is_corrupt_naming_its_field(tmp_path, change, field):
  workdir_lib.write_json(tmp_path / workdir_lib.METRICS, {**GOOD, **change})
  record, error = workdir_lib.load_record(tmp_path)
  assert record is None and field in error
  state = workdir_lib.read_state(tmp_path)
  assert state.status == workdir_lib.CORRUPT and field in state.error


@pytest.mark.parametrize("text", ['{"status": "do', "[]", "null", "\xff"])
def test_an_unreadable_record_is_corrupt(tmp_path, text):
  (tmp_path / workdir_lib.METRICS).write_text(text, encoding="latin-1")
  assert workdir_lib.read_state(tmp_path).status == workdir_lib.CORRUPT
  assert workdir_lib.read_record(tmp_path) == {}


def test_move_aside_keeps_what_it_moves(tmp_path):
  (tmp_path / "checkpoints" / "7").mkdir(parents=True)
  (tmp_path / "checkpoints" / "7" / "f").write_text("x")
  (tmp_path / "metrics.json").write_text("{}")
  target = workdir_lib.move_aside(tmp_path, "checkpoint-7", ["checkpoints/7"])
  assert (target / "7" / "f").read_text() == "x"
  assert not (tmp_path / "checkpoints" / "7").exists() and (tmp_path / "metrics.json").exists()
  assert target.parent == tmp_path / workdir_lib.ASIDE


def test_write_json_replaces_the_whole_file(tmp_path):
  path = tmp_path / "a" / "x.json"
  workdir_lib.write_json(path, {"long": "x" * 1000})
  workdir_lib.write_json(path, {"short": 1})
  assert json.loads(path.read_text()) == {"short": 1}


def test_a_workdir_under_a_file_is_refused_in_one_line(tmp_path):
  (tmp_path / "f").write_text("")
  assert workdir_lib.not_a_directory(tmp_path / "f") == (
      f"--workdir: {tmp_path / 'f'} is a file, not a directory")
  assert workdir_lib.not_a_directory(tmp_path / "f" / "a" / "b") == (
      f"--workdir: {tmp_path / 'f'} is a file, so {tmp_path / 'f' / 'a' / 'b'} cannot be a directory")
  assert workdir_lib.not_a_directory(tmp_path / "new" / "trial") is None


@pytest.mark.parametrize("text", ['{"sweeps": 3, "trials": {}}', '{"sweeps": {}, "trials": []}',
                                  '{"sweeps": {}}', '[]', '{"sweeps": {}, "trials": {"a": 1}}'])
def test_a_ledger_of_the_wrong_shape_is_refused_where_it_is_read_and_set_aside_by_a_run(
    tmp_path, text):
  (tmp_path / workdir_lib.LEDGER).write_text(text)
  with pytest.raises(ValueError, match="sweep.json"):
    workdir_lib.read_ledger(tmp_path)
  aside = workdir_lib.add_to_ledger(tmp_path, "s.py", {"t": {"config": "c"}})
  assert aside.read_text() == text
  assert workdir_lib.read_ledger(tmp_path)["trials"] == {"t": {"config": "c"}}


@pytest.mark.parametrize("name", [workdir_lib.CONFIG, workdir_lib.METRICS, workdir_lib.SEARCH,
                                  workdir_lib.LEDGER])
def test_a_directory_where_a_json_file_goes_reads_as_one_line_and_is_set_aside(tmp_path, name):
  (tmp_path / name).mkdir()
  (tmp_path / name / "x").write_text("a person's")
  with pytest.raises(ValueError, match="^Is a directory$"):
    workdir_lib.read_json(tmp_path / name)
  workdir_lib.write_json(tmp_path / name, {"a": 1})
  assert workdir_lib.read_json(tmp_path / name) == {"a": 1}
  [aside] = tmp_path.glob(f"{name}.directory-*")
  assert (aside / "x").read_text() == "a person's"


def test_an_unreadable_json_file_is_one_line_where_it_is_read(tmp_path, monkeypatch):
  from etils import epath  # pylint: disable=g-import-not-at-top
  workdir_lib.write_json(tmp_path / workdir_lib.METRICS, GOOD)
  workdir_lib.write_json(tmp_path / workdir_lib.LEDGER, {"sweeps": {}, "trials": {}})
  def denied(self, *args, **kwargs):
    raise PermissionError(13, "Permission denied", str(self))
  monkeypatch.setattr(type(epath.Path(tmp_path)), "read_text", denied)
  assert workdir_lib.load_record(tmp_path) == (None, "metrics.json unreadable: Permission denied")
  assert workdir_lib.read_state(tmp_path).status == workdir_lib.CORRUPT
  assert workdir_lib.read_record(tmp_path) == {}
  with pytest.raises(ValueError, match="^Permission denied$"):
    workdir_lib.read_ledger(tmp_path)
