"""Parts chosen by name: a built-in part's module is imported on first use; a part outside
wae_jax is a module on the Python path that registers itself under its own module name, so
naming it (in a sweep file, a flag, a saved ledger) imports it."""

from __future__ import annotations

import difflib
import importlib
from typing import Mapping, TypeVar

T = TypeVar("T")


def load(registry: Mapping[str, T], builtin: Mapping[str, str], package: str, name: str,
         kind: str, error: type[Exception]) -> T:
  """`registry[name]`, importing `package.builtin[name]` or the outside module `name` first;
  `error` (one line, naming what is known) if neither registers it."""
  if name not in registry:
    module = f"{package}.{builtin[name]}" if name in builtin else name
    try:
      importlib.import_module(module)
    except ImportError as e:
      if name in builtin or getattr(e, "name", None) != name:
        raise  # A broken module's own import: its traceback is the useful part.
  if name not in registry:
    known = sorted(set(builtin) | set(registry))
    close = difflib.get_close_matches(name, known, 1)
    raise error(f"unknown {kind} {name!r}{f'; did you mean {close[0]!r}?' if close else ''} "
                f"(known: {', '.join(known)}; one outside wae_jax is a module on the Python "
                "path that registers itself under its module name)")
  return registry[name]
