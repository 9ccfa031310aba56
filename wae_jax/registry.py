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


class Registry:
  """Classes of one kind of part by name: `register(name)` decorates a class (and sets its
  `name`), `get(name)` loads it as `load` does, `names()` lists the known ones."""

  def __init__(self, package: str, builtin: Mapping[str, str], kind: str,
               error: type[Exception]):
    self.package, self.builtin, self.kind, self.error = package, builtin, kind, error
    self.parts: dict[str, type] = {}

  def register(self, name: str):
    def wrap(cls):
      cls.name = name
      self.parts[name] = cls
      return cls
    return wrap

  def get(self, name: str):
    return load(self.parts, self.builtin, self.package, name, self.kind, self.error)

  def names(self) -> list[str]:
    return sorted(set(self.builtin) | set(self.parts))
