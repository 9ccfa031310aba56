"""What the commands share: one-line errors and a console kept to their own progress."""

import sys
from typing import NoReturn

from absl import logging

from wae_jax import workdir as workdir_lib


def fail(prog: str | None, message: str, code: int = workdir_lib.EXIT_USAGE) -> NoReturn:
  """Exits with `message` as the output's last line (`prog: error: message` if prog)."""
  sys.stdout.flush()
  print(f"{prog}: error: {message}" if prog else message, file=sys.stderr, flush=True)
  sys.exit(code)


def quiet_libraries(record) -> bool:
  """A logging filter: orbax logs every save at INFO."""
  return record.levelno >= logging.converter.STANDARD_WARNING or "/orbax/" not in record.pathname
