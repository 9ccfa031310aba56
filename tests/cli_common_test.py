"""What the commands share: one-line argument errors with a "did you mean", and the console
(this package's INFO lines and anyone's warnings, a time prefix)."""
import logging
import os

import pytest

from wae_jax import loop
from wae_jax.cli import common


def _record(pathname, level, message):
  return logging.LogRecord("absl", level, pathname, 1, message, None, None)


def test_library_info_lines_are_dropped_and_warnings_kept():
  ours = _record(loop.__file__, logging.INFO, "step 20/80")
  library = _record(os.path.join("site-packages", "jax", "_src", "xla_bridge.py"), logging.INFO,
                    "Unable to initialize backend 'tpu'")
  warning = _record(library.pathname, logging.WARNING, "something to know")
  keep = common._ours_or_a_warning  # pylint: disable=protected-access
  assert keep(ours) and not keep(library) and keep(warning)
  console = common._Console()  # pylint: disable=protected-access
  assert console.format(ours)[8:] == " step 20/80"
  assert console.format(warning)[8:] == " warning: something to know"
  assert console.format(ours)[2] == console.format(ours)[5] == ":"  # HH:MM:SS


def _error(parser, argv, capsys) -> str:
  with pytest.raises(SystemExit) as e:
    parser.parse_args(argv)
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count("\n") == 1, err  # One line, no usage dump.
  return err.strip()


@pytest.mark.parametrize("argv,message", [
    (["run", "--workdir=/w", "--paralel=2"], "wae-x: error: unrecognized arguments: --paralel=2; did you mean "
                             "--parallel (not --paralel)? (see --help)"),
    (["lst"], "wae-x: error: argument command: invalid choice: 'lst' (choose from 'list', 'run'); "
              "did you mean list (not lst)? (see --help)"),
    (["run", "--workdr", "/w"], "wae-x: error: the following arguments are required: --workdir; "
                                "did you mean --workdir (not --workdr)? (see --help)"),
    (["run", "--parallel=2", "--paralel=3"], "wae-x: error: the following arguments are "
                                             "required: --workdir (see --help)"),
])
def test_argument_errors_are_one_line_with_a_suggestion(argv, message, capsys):
  parser = common.ArgumentParser(prog="wae-x")
  parser.add_argument("command", choices=("list", "run"))
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--parallel", type=int)
  assert _error(parser, argv, capsys) == message


def test_the_compilation_cache_is_on_unless_the_environment_names_one(monkeypatch, tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("HOME", str(tmp_path))
  before = jax.config.jax_compilation_cache_dir  # conftest's, from JAX_COMPILATION_CACHE_DIR
  try:
    common.use_compilation_cache()
    assert jax.config.jax_compilation_cache_dir == before  # The environment's wins.
    jax.config.update("jax_compilation_cache_dir", None)
    common.use_compilation_cache()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / ".cache" / "wae_jax" / "jax")
  finally:
    jax.config.update("jax_compilation_cache_dir", before)
