"""Library noise kept off the console: what a damaged checkpoint makes TensorStore print.

Orbax reads a checkpoint in an event loop of its own and closes it when the read fails; the
TensorStore reads still in flight finish afterwards, each printing a traceback ending in
"RuntimeError: Event loop is closed" (dozens for one damaged checkpoint, on any thread and
at any later moment). They say nothing the one-line warning about the checkpoint does not.
`quiet()`, called where a restore fails, keeps them off stderr for the rest of the process;
absl's DEBUG verbosity (`wae-train --verbosity=1`, `logging.set_verbosity("debug")`)
shows them.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from absl import logging

HEADER = "Traceback (most recent call last):"
NOISE = ("RuntimeError: Event loop is closed",)


class _Filter:
  """A stream that holds each thread's traceback until its last line, then drops it if that
  line is noise and writes it otherwise; all other text passes at once."""

  def __init__(self, stream: TextIO):
    self.stream = stream
    self._held: dict[int, str] = {}
    self._lock = threading.Lock()

  def write(self, text: str) -> int:
    me = threading.get_ident()
    with self._lock:
      if me not in self._held and not text.lstrip("\n").startswith(HEADER):
        return self.stream.write(text)
      held = self._held[me] = self._held.get(me, "") + text
      lines = held.splitlines()
      last = next((l for l in lines[1:] if l and not l[0].isspace()), None)
      if last is None or not held.endswith("\n"):
        return len(text)  # The traceback goes on.
      del self._held[me]
      if last.strip() in NOISE and not logging.level_debug():
        return len(text)
      self.stream.write(held)
      return len(text)

  def flush(self) -> None:
    self.stream.flush()

  def __getattr__(self, name: str):  # fileno, isatty, encoding, ...: the stream's.
    return getattr(self.stream, name)


def quiet() -> None:
  """Filters this process's stderr from now on (once; a no-op when it already is)."""
  if not isinstance(sys.stderr, _Filter):
    sys.stderr = _Filter(sys.stderr)
