"""Errors that end a command with one line naming what to fix (exit code 2)."""


class ConfigError(ValueError):
  """A config field has a bad value; the message names the field."""
