"""Evaluators chosen by name, and the metrics they declare.

An evaluator is a module that registers itself with `register`: a name (what
`config.eval.evaluators` lists), the metrics it returns, each declared once with its
direction, and a function of the shared evaluation context (`common.Context`) returning
those metrics by name. metrics.json, the console, TensorBoard and `wae-results` take names
and directions from here. The built-in evaluators are modules of this package, imported on
first use by name; one outside the package is a module on the Python path that registers
itself under its own module name (`@evaluators.register(__name__, ...)`), and naming it
imports it.

An evaluator with settings of its own registers its config section with them: `section`,
`defaults` (the section's fields) and `validate` (ConfigError naming
`config.<section>.<field>`). The settings every evaluator shares stay in `config.eval`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import ml_collections

from wae_jax import registry
from wae_jax import samplers
from wae_jax.errors import ConfigError

# Built-in evaluators (name: module of this package), imported when first asked for by name.
_BUILTIN = {name: name for name in ("heldout", "sharpness", "domain_fid", "fid")}


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
  # Measured on samples: under a sampler other than the prior it is recorded as
  # `<name>/<sampler>` (domain_fid/gmm), declared for every sampler.
  per_sampler: bool = False


@dataclasses.dataclass(frozen=True)
class Evaluator:
  name: str
  metrics: tuple[Metric, ...]
  fn: Callable[..., Mapping[str, Any]]  # (context) -> {metric name: value, ...}
  # Top-level metrics.json fields it may also return (not floats), e.g. a weights hash.
  fields: tuple[str, ...] = ()
  section: str | None = None  # `config.<section>` holds its settings; None: it has none.
  defaults: Callable[[], ml_collections.ConfigDict] = ml_collections.ConfigDict
  validate: Callable[[ml_collections.ConfigDict], None] = lambda c: None  # (config) checks.

  @property
  def on_samples(self) -> bool:
    """Whether it measures samples: then its fields (protocols) are per sampler too."""
    return any(m.per_sampler for m in self.metrics)


_REGISTRY: dict[str, Evaluator] = {}
# Metrics declared outside an evaluator: the training step's, by the regularisers.
_DECLARED: dict[str, Metric] = {}


def register(name: str, metrics: tuple[Metric, ...], fields: tuple[str, ...] = (),
             **config: Any):
  """Decorator: `fn(context) -> {metric: value}` becomes the evaluator `name`; `config`
  (`section=`, `defaults=`, `validate=`) declares its config section, if it has settings."""
  def wrap(fn):
    _REGISTRY[name] = Evaluator(name, tuple(metrics), fn, tuple(fields), **config)
    return fn
  return wrap


def declare(*metrics: Metric) -> None:
  """Declares metrics that no evaluator returns (training-step metrics)."""
  for m in metrics:
    _DECLARED[m.name] = m


def get(name: str) -> Evaluator:
  """The evaluator `name`, imported first if it is built in or an outside module;
  ConfigError (one line, listing the known ones) if none registers under it."""
  return registry.load(_REGISTRY, _BUILTIN, __name__, name, "evaluator", ConfigError)


def names() -> list[str]:
  return sorted(set(_BUILTIN) | set(_REGISTRY))


def loaded() -> list[Evaluator]:
  """The built-in evaluators, then those registered from outside so far: the parts whose
  sections a config gets."""
  builtin = [get(name) for name in _BUILTIN]
  return builtin + [e for name, e in _REGISTRY.items() if name not in _BUILTIN]


def suffixed(name: str, sampler: str) -> str:
  """What a metric or field measured on samples is called under `sampler`."""
  return name if sampler == samplers.PRIOR else f"{name}/{sampler}"


def metrics() -> dict[str, Metric]:
  """Every declared metric by name (loads the built-in evaluators), with the per-sampler
  names of those measured on samples (ranked only when asked for by name)."""
  out = dict(_DECLARED)
  for evaluator in loaded():
    for m in evaluator.metrics:
      out[m.name] = m
      if m.per_sampler:
        out.update({suffixed(m.name, s): dataclasses.replace(m, name=suffixed(m.name, s),
                                                             table_rank=None)
                    for s in samplers.names() if s != samplers.PRIOR})
  return out


def ranking() -> list[str]:
  """Metric names the results table may rank by, most preferred first."""
  ranked = [m for m in metrics().values() if m.table_rank is not None]
  return [m.name for m in sorted(ranked, key=lambda m: m.table_rank)]


def fields() -> tuple[str, ...]:
  """Top-level metrics.json fields that evaluators write beside their metrics, their
  per-sampler names included."""
  return tuple(f for e in loaded() for f in e.fields) + tuple(
      suffixed(f, s) for e in loaded() if e.on_samples for f in e.fields
      for s in samplers.names() if s != samplers.PRIOR)
