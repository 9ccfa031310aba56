"""Latent regularisers chosen by name: the penalty D_Z(Q_Z, P_Z) of the WAE objective.

    loss = reconstruction + lambda * regulariser.penalty(codes, prior draws, rng, hparams)

`config.algo` names the regulariser. Each lives in its own module and registers its class
with `register`; a new one is a new module (or a class anywhere, registered before the run)
and nothing else. The built-in ones are modules of this package, imported on first use; one
outside the package is a module on the Python path that registers itself under its own
module name (`@regularisers.register(__name__)`), and naming it imports it.

A regulariser with settings of its own declares them beside its code: `section` names its
config section (`config.<section>`), `defaults` fills it and `validate` checks it, so
`config.py` assembles and checks every config from the parts without knowing their fields.
A regulariser with state of its own (WAE-GAN's adversary) keeps it in
`TrainState.penalty_state`: `init` makes it and `update` takes its step after the
auto-encoder's, on the same batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import ml_collections
import optax
from jax.sharding import Mesh

from wae_jax import registry
from wae_jax.errors import ConfigError

# Built-in regularisers by `config.algo`, imported when first asked for.
_BUILTIN = {"wae_mmd": "mmd", "wae_sw": "sliced", "wae_gan": "adversarial", "vae": "kl",
            "cwae": "cramer_wold", "wae_rf": "random_features"}
_REGISTRY: dict[str, type[Regulariser]] = {}


@dataclasses.dataclass(frozen=True)
class Codes:
  """The encoder's output for a batch: codes z ~ Q(Z|X), and Q(Z|X)'s mean and log-variance
  (gaussian encoders; a deterministic encoder's z is its mean and log_var is None)."""
  z: jax.Array
  mean: jax.Array
  log_var: jax.Array | None


class Regulariser:
  """Base class. Subclasses set `metric` (the penalty's name in the training metrics) and
  implement `penalty`; `encoder` names the encoder kind they need, if any; `per_trial` the
  config fields it reads only at `init` (into its state), which trials of a pack may vary;
  `section` its config section, if it has settings of its own."""
  metric: str = "penalty"
  title: str = "regulariser"  # How messages name it.
  encoder: str | None = None
  per_trial: tuple[str, ...] = ()  # Its config fields that may differ within a pack.
  section: str | None = None  # `config.<section>` holds its settings; None: it has none.

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    """Its section at its defaults (the MNIST setting): what every config starts from."""
    return ml_collections.ConfigDict()

  @classmethod
  def validate(cls, c: ml_collections.ConfigDict) -> None:
    """Checks its section of the config `c`; ConfigError naming `config.<section>.<field>`."""

  def __init__(self, c: ml_collections.ConfigDict, mesh: Mesh,
               optimizer: Callable[[float], optax.GradientTransformation]):
    """`c` fixes what shapes the program; per-trial numbers come from `hparams`. `optimizer`
    makes the trial's optimizer from a base learning rate, for regularisers with a state."""
    self.c, self.mesh, self.optimizer = c, mesh, optimizer

  def penalty(self, codes: Codes, prior: jax.Array, rng: jax.Array,
              hparams: dict[str, jax.Array], state: Any) -> jax.Array:
    """The scalar penalty: codes of a batch against as many draws of the prior P_Z."""
    raise NotImplementedError

  def init(self, rng: jax.Array, values: dict[str, jax.Array]) -> Any:
    """The regulariser's own state (None: it has none); `values` holds the trial's numbers
    by config field, `per_trial` among them."""
    del rng, values
    return None

  def update(self, state: Any, z: jax.Array, prior: jax.Array,
             hparams: dict[str, jax.Array]) -> tuple[Any, dict[str, jax.Array]]:
    """Its own step after the auto-encoder's (on the codes before that step); new state and
    metrics."""
    del z, prior, hparams
    return state, {}


def register(name: str):
  """Class decorator: makes the regulariser available as `config.algo = name`."""
  def wrap(cls: type[Regulariser]) -> type[Regulariser]:
    _REGISTRY[name] = cls
    return cls
  return wrap


def get(name: str) -> type[Regulariser]:
  """The regulariser `name`, imported first if it is built in or an outside module;
  ConfigError (one line, listing the known ones) if none registers under it."""
  return registry.load(_REGISTRY, _BUILTIN, __name__, name, "regulariser", ConfigError)


def names() -> list[str]:
  return sorted(set(_BUILTIN) | set(_REGISTRY))


def loaded() -> list[type[Regulariser]]:
  """The built-in regularisers, then those registered from outside so far: the parts whose
  sections a config gets."""
  builtin = [get(name) for name in _BUILTIN]
  return builtin + [cls for cls in _REGISTRY.values() if cls not in builtin]


def build(c: ml_collections.ConfigDict, mesh: Mesh,
          optimizer: Callable[[float], optax.GradientTransformation]) -> Regulariser:
  return get(c.algo)(c, mesh, optimizer)
