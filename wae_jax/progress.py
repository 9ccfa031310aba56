"""How much work is left, as a person reads it: a bar and a duration."""

import math


def bar(fraction: float, width: int = 30) -> str:
  filled = int(round(fraction * width))
  return "[" + "#" * filled + "-" * (width - filled) + f"] {100 * fraction:5.1f}%"


def duration(seconds: float) -> str:
  """`h:mm:ss`, or `--` for an unknown (infinite) time."""
  if not math.isfinite(seconds):
    return "--"
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h}:{m:02d}:{s:02d}"
