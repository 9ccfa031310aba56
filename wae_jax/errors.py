"""Errors that end a command with one line naming what to fix (exit code 2)."""


def first_line(e: BaseException) -> str:
  """An exception's message cut to its first line (its type's name if it has none)."""
  return (str(e).strip().splitlines() or [type(e).__name__])[0]


class ConfigError(ValueError):
  """A config field has a bad value; the message names the field."""


class TrialError(ValueError):
  """A directory lacks what is asked of a trial (its config, a checkpoint); the message says
  which."""
