"""What the commands share: one-line errors and a console kept to their own progress."""

import argparse
import difflib
import logging as std_logging
import os
import re
import sys
from typing import NoReturn

from absl import flags
from absl import logging

from wae_jax import workdir as workdir_lib

_OURS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(prog: str | None, message: str, code: int = workdir_lib.EXIT_USAGE) -> NoReturn:
  """Exits with `message` as the output's last line (`prog: error: message` if prog)."""
  sys.stdout.flush()
  print(f"{prog}: error: {message}" if prog else message, file=sys.stderr, flush=True)
  sys.exit(code)


class ArgumentParser(argparse.ArgumentParser):
  """argparse, with the errors every command gives: one line, no usage dump, and a "did you
  mean" for a mistyped flag or choice (absl gives wae-train's)."""

  def parse_known_args(self, args=None, namespace=None):
    self._argv = list(sys.argv[1:] if args is None else args)  # For the suggestions.
    return super().parse_known_args(args, namespace)

  def error(self, message: str) -> NoReturn:
    fail(self.prog, f"{message}{self._suggestion(message)} (see --help)")

  def _suggestion(self, message: str) -> str:
    """'; did you mean X?' for a given flag or choice close to a known one."""
    known = list(self._option_string_actions)
    given = [a.split("=", 1)[0] for a in getattr(self, "_argv", [])
             if a.startswith("--") and a.split("=", 1)[0] not in known]
    if match := re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message):
      given, known = [match.group(1)], re.findall(r"'([^']*)'", match.group(2))
    elif message.startswith("the following arguments are required:"):  # Mistyped, perhaps.
      known = re.findall(r"--\w+", message)
    for g in given:
      if close := difflib.get_close_matches(g, known, 1):
        return f"; did you mean {close[0]} (not {g})?"
    return ""


class _Console(std_logging.Formatter):
  """`12:03:04 message`, and `12:03:04 warning: message` from WARNING up."""

  def __init__(self):
    super().__init__("%(asctime)s %(message)s", "%H:%M:%S")

  def formatMessage(self, record):  # pylint: disable=invalid-name
    if record.levelno >= std_logging.WARNING:
      record.message = f"{record.levelname.lower()}: {record.message}"
    return super().formatMessage(record)


def _ours_or_a_warning(record) -> bool:
  """Library INFO lines (a TPU probe, orbax's saves) are
  not the user's business; their warnings are."""
  return record.levelno >= std_logging.WARNING or record.pathname.startswith(_OURS)


def use_console() -> None:
  """Sets absl's log output to what a person reads: this package's progress, anyone's
  warnings, a time and no other prefix."""
  logging.use_absl_handler()  # What absl's app.run does; a Python session has not.
  logging.set_verbosity(logging.INFO)
  handler = logging.get_absl_handler().python_handler
  handler.setFormatter(_Console())
  handler.addFilter(_ours_or_a_warning)


def log_to_console() -> None:
  """`use_console` for a Python session (`wae_jax.log_to_console()`), where no command
  parsed absl's flags: at their defaults, without absl's note about it."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  use_console()


def use_compilation_cache() -> None:
  """JAX's persistent compilation cache, in ~/.cache/wae_jax/jax unless
  JAX_COMPILATION_CACHE_DIR names another: a trainer started again on the same shapes (a
  resumed trial, an ASHA climb, a sweep's next trial) loads its programs, not compiles them."""
  import jax  # pylint: disable=g-import-not-at-top
  from wae_jax import evaluation  # pylint: disable=g-import-not-at-top
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir",
                      os.path.join(evaluation.default_cache_dir(), "jax"))
