"""The commands' console: this package's INFO lines and anyone's warnings, a time prefix."""
import logging
import os

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
