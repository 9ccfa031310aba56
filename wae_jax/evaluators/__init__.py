"""Evaluators chosen by name, and the metrics they declare.

An evaluator is a module that registers itself with `register`: a name (what
`config.eval.evaluators` lists), the metrics it returns, each declared once with its
direction, and a function of the shared evaluation context (`common.Context`) returning
those metrics by name. metrics.json, the console, TensorBoard and `wae-results` take names
and directions from here. The built-in evaluators are modules of this package, imported on
first use by name; another registers itself the same way from any module.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

# Built-in evaluators, imported when first asked for by name.
_BUILTIN = {name: f"wae_jax.evaluators.{name}"
            for name in ("heldout", "sharpness", "domain_fid", "fid")}


@dataclasses.dataclass(frozen=True)
class Metric:
  name: str
  higher_is_better: bool | None = False  # None: a description, not a score (a sample count).
  # A sample-quality metric the results table ranks by unless told otherwise: the lowest
  # table_rank any finished trial has is the table's metric. None: only by --metric.
  table_rank: int | None = None
  # The metric of the same measurement on held-out real images: the results table's data
  # row, the value a perfect model would reach (sharpness_mean -> sharpness_data).
  data: str | None = None


@dataclasses.dataclass(frozen=True)
class Evaluator:
  name: str
  metrics: tuple[Metric, ...]
  fn: Callable[..., Mapping[str, Any]]  # (context) -> {metric name: value, ...}
  # Top-level metrics.json fields it may also return (not floats), e.g. a weights hash.
  fields: tuple[str, ...] = ()


_REGISTRY: dict[str, Evaluator] = {}
# Metrics declared outside an evaluator: the training step's, by the regularisers.
_DECLARED: dict[str, Metric] = {}


def register(name: str, metrics: tuple[Metric, ...], fields: tuple[str, ...] = ()):
  """Decorator: `fn(context) -> {metric: value}` becomes the evaluator `name`."""
  def wrap(fn):
    _REGISTRY[name] = Evaluator(name, tuple(metrics), fn, tuple(fields))
    return fn
  return wrap


def declare(*metrics: Metric) -> None:
  """Declares metrics that no evaluator returns (training-step metrics)."""
  for m in metrics:
    _DECLARED[m.name] = m


def get(name: str) -> Evaluator:
  if name not in _REGISTRY and name in _BUILTIN:
    importlib.import_module(_BUILTIN[name])
  if name not in _REGISTRY:
    raise KeyError(f"unknown evaluator {name!r} (known: {', '.join(names())})")
  return _REGISTRY[name]


def names() -> list[str]:
  return sorted(set(_BUILTIN) | set(_REGISTRY))


def metrics() -> dict[str, Metric]:
  """Every declared metric by name (loads the built-in evaluators)."""
  for name in _BUILTIN:
    get(name)
  out = dict(_DECLARED)
  for evaluator in _REGISTRY.values():
    out.update({m.name: m for m in evaluator.metrics})
  return out


def ranking() -> list[str]:
  """Metric names the results table may rank by, most preferred first."""
  ranked = [m for m in metrics().values() if m.table_rank is not None]
  return [m.name for m in sorted(ranked, key=lambda m: m.table_rank)]


def fields() -> tuple[str, ...]:
  """Top-level metrics.json fields that evaluators write beside their metrics."""
  for name in _BUILTIN:
    get(name)
  return tuple(f for e in _REGISTRY.values() for f in e.fields)
