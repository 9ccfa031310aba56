"""Latent samplers by name: where a trained model's samples start.

    prior  N(0, prior_var I), what the objective pulls the codes towards (no fit)
    gmm    a Gaussian mixture fitted on the training split's codes (samplers/gmm.py)
    flow   a RealNVP normalising flow fitted on them (samplers/flow.py)
    two_stage  a second-stage VAE fitted on them, Dai & Wipf's (samplers/two_stage.py)

A trial whose aggregate posterior misses the prior is judged on codes it never learned to
decode when its samples come from the prior; an ex-post density of its own codes (Ghosh et
al., ICLR 2020) samples where the decoder was trained. A fitted sampler belongs to one
checkpoint: `fitted` fits it on that checkpoint's codes once, saves it in the trial
directory under `samplers/<step>/<name>/` with its settings and the codes' step, and
reuses it after; refitting is asked for (`refit=True`). Each sampler is a module that
registers its class with `register`, as regularisers and evaluators do.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from typing import Any, Callable

from absl import logging
from etils import epath
from flax import traverse_util
import jax
import numpy as np

from wae_jax import registry
from wae_jax.errors import ConfigError

DIR = "samplers"  # Under a trial directory: <step>/<name>/{sampler.json, arrays.npz}.
PRIOR = "prior"
_BUILTIN = {PRIOR: "prior", "gmm": "gmm", "flow": "flow", "two_stage": "two_stage"}
_REGISTRY = registry.Registry(__name__, _BUILTIN, "sampler", ConfigError)
register, get, names = _REGISTRY.register, _REGISTRY.get, _REGISTRY.names
# The share of the training codes a sampler holds out to choose its settings (a mixture's
# components, a flow's stopping step) by their likelihood.
HOLDOUT = 0.1


class Sampler:
  """Base class: a density over codes. `fit` it on training codes (or, with `needs_codes`
  False, not at all), `sample` it, and save it as JSON `summary` plus numpy `arrays`."""
  name: str  # Set by `register`.
  needs_codes = True
  settings: dict[str, Any] = {}  # What the fit depends on besides the codes; saved with it.
  step: int | None = None  # The checkpoint step of the codes it was fitted on.

  def __init__(self, z_dim: int, prior_var: float, arrays: dict[str, np.ndarray] | None = None,
               summary: dict[str, Any] | None = None):
    self.z_dim, self.prior_var = z_dim, prior_var
    self.arrays, self.summary = arrays or {}, summary or {}

  @property
  def protocol(self) -> dict[str, Any]:
    """What a metric of its samples records of it: its name, and what its fit chose."""
    fit = ({"sampler_fit": {**self.summary, "settings": self.settings, "codes_step": self.step}}
           if self.needs_codes else {})
    return {"sampler": self.name, **fit}

  def fit(self, codes: np.ndarray, rng: np.random.Generator) -> None:
    """Sets `arrays` (and `summary`: what was chosen, and its held-out log-likelihood)."""
    raise NotImplementedError

  def sample(self, n: int, key: jax.Array) -> np.ndarray:
    """(n, z_dim) float32 codes."""
    raise NotImplementedError


def split(codes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(fit, held-out) codes: a random HOLDOUT share held out."""
  order = rng.permutation(len(codes))
  cut = len(codes) - max(1, int(HOLDOUT * len(codes)))
  return codes[order[:cut]], codes[order[cut:]]


def standardised(codes: np.ndarray, rng: np.random.Generator):
  """(mean, std, fit, held-out): the split of `split`, each side standardised by the codes'
  mean and std, as a network sampler trains on them."""
  mean, std = codes.mean(0), codes.std(0) + 1e-6
  fit, heldout = (jax.numpy.asarray((z - mean) / std) for z in split(codes, rng))
  return mean, std, fit, heldout


def network_arrays(mean: np.ndarray, std: np.ndarray, params) -> dict[str, np.ndarray]:
  """A network sampler's arrays: the standardisation and its flattened parameters."""
  return {"mean": mean, "std": std, **{
      k: np.asarray(v) for k, v in traverse_util.flatten_dict(params, sep="/").items()}}


def network_params(arrays: dict[str, np.ndarray]):
  """The parameters `network_arrays` saved."""
  return traverse_util.unflatten_dict(
      {k: v for k, v in arrays.items() if k not in ("mean", "std")}, sep="/")


def seed_of(key: jax.Array) -> int:
  """A numpy seed from a JAX key, for samplers that draw with numpy."""
  return int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))


def path(workdir: epath.PathLike, step: int, name: str) -> epath.Path:
  return epath.Path(workdir) / DIR / str(step) / name


def _read(where: epath.Path) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
  try:
    record = json.loads((where / "sampler.json").read_text())
    with (where / "arrays.npz").open("rb") as f:
      arrays = dict(np.load(f))
    return record, arrays
  except (OSError, ValueError, KeyError):
    return None


def fitted(name: str, *, z_dim: int, prior_var: float, workdir: epath.PathLike | None = None,
           step: int | None = None, codes: Callable[[], np.ndarray] | None = None,
           refit: bool = False, seed: int = 0) -> Sampler:
  """The sampler `name` of one checkpoint: read from `workdir` where it was fitted at `step`
  with today's settings (unless `refit`), else fitted on `codes()` (the training split's
  codes at `step`) and saved there. Without a workdir it is fitted and not saved."""
  cls = get(name)
  if not cls.needs_codes:
    return cls(z_dim, prior_var)
  where = None if workdir is None else path(workdir, step, name)
  saved = None if (where is None or refit) else _read(where)
  if saved and saved[0].get("settings") == cls.settings and saved[0].get("step") == step:
    sampler = cls(z_dim, prior_var, saved[1], saved[0]["summary"])
    sampler.step = step
    return sampler
  z = np.asarray(codes(), np.float32)
  start = time.time()
  sampler = cls(z_dim, prior_var)
  sampler.fit(z, np.random.default_rng(seed))
  sampler.step = step
  seconds = time.time() - start
  logging.info("Fitted the %s sampler on %d codes of step %s in %.1f s: %s", name, len(z), step,
               seconds, sampler.summary)
  if where is not None:
    _write(where, {"sampler": name, "step": step, "settings": cls.settings, "codes": len(z),
                   "fit_seconds": seconds, "summary": sampler.summary}, sampler.arrays)
  return sampler


def _write(where: epath.Path, record: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
  """Into a sibling, then renamed into place: a reader sees a whole sampler or none."""
  tmp = where.parent / f".{where.name}.{uuid.uuid4().hex[:8]}.tmp"
  tmp.mkdir(parents=True)
  with (tmp / "arrays.npz").open("wb") as f:
    np.savez(f, **arrays)
  (tmp / "sampler.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
  if where.exists():
    shutil.rmtree(where)
  tmp.rename(where)
