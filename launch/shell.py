"""Runs, or for --dry_run prints, the commands a launch is made of.

A subcommand is plain code against a `Shell`; `DryShell` swaps execution for printing, so the
dry run and the real run walk exactly the same path and print the same commands in the same order.
Everything shown passes through `Shell.show`, which redacts forwarded secrets and URL credentials.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence

REDACTED = "<redacted>"
_URL_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")
# Characters that bash expands inside double quotes (and that shlex would read differently).
_EXPANDS_IN_DOUBLE_QUOTES = re.compile(r"[$`!]")


def quote(arg: str) -> str:
  """shlex.quote, but double quotes for text holding single quotes and no $, ` or !.

  Remote commands hold quoted arguments ('jax[tpu]'); double quotes keep the printed line
  readable, and bash and `shlex.split` both read it back as exactly the argv that runs.
  """
  if "'" in arg and not _EXPANDS_IN_DOUBLE_QUOTES.search(arg):
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
  return shlex.quote(arg)


def join(argv: Sequence[str]) -> str:
  return " ".join(quote(arg) for arg in argv)


class LaunchError(Exception):
  """A one-line, user-facing error; the CLI prints it and exits with `code`."""

  def __init__(self, message: str, code: int = 2):
    super().__init__(message)
    self.code = code


class Shell:
  """Runs argv lists (never through a shell) and echoes each one to stderr, like `set -x`."""

  def __init__(self):
    self._secrets: list[str] = []

  def hide(self, *values: str) -> None:
    """Never show these values (e.g. forwarded tokens) in anything printed from now on."""
    self._secrets += [v for v in values if v]

  def redact(self, text: str) -> str:
    for secret in self._secrets:
      text = text.replace(secret, REDACTED)
    return _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text)

  def show(self, argv: Sequence[str]) -> str:
    """The command line to print: redacted argument by argument, before quoting."""
    return join([self.redact(arg) for arg in argv])

  def _echo(self, line: str) -> None:
    print(f"+ {line}", file=sys.stderr, flush=True)

  def run(self, argv: Sequence[str], check: bool = True) -> int:
    """Runs argv with the terminal attached; a failure is a LaunchError unless check=False."""
    self._echo(self.show(argv))
    code = subprocess.run(list(argv)).returncode
    if check and code:
      raise LaunchError(f"command failed (exit {code}): {self.show(argv)}", code=1)
    return code

  def query(self, argv: Sequence[str], placeholder: str) -> str:
    """Runs argv and returns its stdout; `placeholder` stands in for it in a dry run."""
    self._echo(self.show(argv))
    out = subprocess.run(list(argv), stdout=subprocess.PIPE, text=True)
    if out.returncode or not out.stdout.strip():
      raise LaunchError(f"command failed or printed nothing (exit {out.returncode}): "
                        f"{self.show(argv)}", code=1)
    return out.stdout.strip()

  @contextlib.contextmanager
  def local_file(self, text: str, shown: str, placeholder: str) -> Iterator[str]:
    """A private (0600) temporary file holding `text`, e.g. an env file to upload with scp.

    Uploading a file keeps secrets out of every argv (gcloud logs its arguments); `shown`
    is the same text with its secrets already replaced, for printing.
    """
    self._show_file(shown, placeholder)
    with tempfile.NamedTemporaryFile("w", prefix="wae-launch-") as f:
      f.write(text)
      f.flush()
      yield f.name

  def _show_file(self, shown: str, placeholder: str) -> None:
    self._echo(f"# {placeholder} holds:")
    for line in shown.splitlines():
      self._echo(f"#   {self.redact(line)}")


class DryShell(Shell):
  """Prints every command to stdout, one shell-quoted line each, and runs none."""

  def _echo(self, line: str) -> None:
    print(line, flush=True)

  def run(self, argv: Sequence[str], check: bool = True) -> int:
    self._echo(self.show(argv))
    return 0

  def query(self, argv: Sequence[str], placeholder: str) -> str:
    self._echo(self.show(argv))
    return placeholder

  @contextlib.contextmanager
  def local_file(self, text: str, shown: str, placeholder: str) -> Iterator[str]:
    self._show_file(shown, placeholder)
    yield placeholder
