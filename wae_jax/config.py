"""Experiment configs: the defaults every config shares, and their validation.

Configs are data (`ml_collections.ConfigDict`). The files in `wae_jax/configs/` start from
`mnist()` or `celeba()` below, set what their algorithm needs, and accept the argument
`debug` for a small preset that trains on a laptop CPU in a couple of minutes. `validate`
runs once at start-up, before anything is compiled, and stops with one line that names the
bad field.

Each part chosen by name (a regulariser, `config.algo`; an evaluator, `config.eval.*`)
owns its section: it declares the fields' defaults and checks beside its code, and this
module assembles a config from the sections of every part loaded (the built-in ones, and
each outside part once imported) and runs each part's checks. An outside part is a module
on the Python path that registers itself under its own module name; naming it imports it.
Its section exists only in configs made after that import, which is why `wae-train` imports
the parts its `--config.algo=` and `--config.eval.*evaluators=` flags name before it loads
the config file (so `--config.<section>.<field>=` can set their fields), and why a config
file or sweep file that uses an outside part imports it. `from_dict` imports the parts a
saved config names; a section of one that cannot be imported is kept as saved.

Values are the paper's; where it is silent they are the public code's (tolstikhin/wae,
`configs.py` and `wae.py`), and a comment says so, as it does for every deviation.
"""

from __future__ import annotations

import importlib
import math
import os
from typing import Any, Iterator, Mapping

from etils import epath
import ml_collections

from wae_jax import configs
from wae_jax import data
from wae_jax import evaluators
from wae_jax import regularisers
from wae_jax import workdir as workdir_lib
from wae_jax.errors import ConfigError
from wae_jax.errors import first_line

ARCHS = ("dcgan", "resnet")
ENCODERS = ("deterministic", "gaussian")
CONV_IMPLS = ("auto", "xla", "matmul")
# Fields renamed since trials were first saved: old name -> new name.
RENAMED = {"model.conv_transpose": "model.conv_impl"}
RECON_COSTS = ("l2sq", "l2", "l1", "bernoulli", "gaussian")
# Weights of the reconstruction costs: the public WAE code's for its three; 1 for the
# decoder likelihoods (Bernoulli, Gaussian with a learned variance), whose loss is then the
# VAE's negative ELBO. (l2sq with scale s is a Gaussian of the fixed variance 1 / (2 s).)
RECON_SCALES = {"l2sq": 0.05, "l2": 0.2, "l1": 0.02, "bernoulli": 1.0, "gaussian": 1.0}
# The fields that name parts, and the registry each name is looked up in.
PART_FIELDS = {"algo": regularisers, "eval.evaluators": evaluators,
               "eval.final_evaluators": evaluators}


def mnist() -> ml_collections.ConfigDict:
  """The paper's MNIST setting (Tolstikhin et al. 2018, Sec. 4), shared by its algorithms."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.algo = "wae_mmd"
  c.z_dim = 8
  c.prior_var = 1.0
  c.lam = 10.0
  c.batch_size = 100
  c.num_steps = 100 * 600  # 100 epochs of the 60k training images.
  c.multihost = False  # True on a multi-host TPU slice: calls jax.distributed.initialize().

  c.data = ml_collections.ConfigDict()
  c.data.source = "tfds:mnist"
  c.data.heldout = 10_000  # The public code holds out the last 10k images.
  # A training set up to this size (MiB) lives on every device and batches are gathered
  # there; a larger one streams from the host (`feed.py`). 0: always stream.
  c.data.device_max_mb = 3072

  c.model = ml_collections.ConfigDict()
  c.model.arch = "dcgan"
  c.model.width = 1.0  # Multiplies every channel count (1024 at the widest layer).
  c.model.encoder = "deterministic"
  c.model.enc_layers = 4
  c.model.dec_layers = 3  # 7x7x1024 -> 14x14x512 -> 28x28x256 -> 28x28x1.
  c.model.kernel_size = 4
  c.model.input_noise = 0.01  # The public code's N(0, 0.01^2) on deterministic encoders' inputs.
  c.model.init_std = 0.01  # The public code's N(0, 0.01^2) weights (biases 0).
  # Strided and transposed convolutions: "matmul" (matmuls plus shifts, models.py; XLA:CPU's
  # own gradients of them are 10-30x slower), "xla" (lax's), or "auto" (matmul on CPU only).
  c.model.conv_impl = "auto"

  c.recon = ml_collections.ConfigDict()
  c.recon.cost = "l2sq"
  c.recon.scale = RECON_SCALES["l2sq"]

  # The parts' own sections (config.mmd, config.sw, config.gan, ...), each at its defaults.
  for part in parts():
    c[part.section] = part.defaults()

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1e-3
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999
  # After decay_epochs[i] epochs the rate is divided by decay_factors[i] once more, as the
  # public code does (lr/2, lr/10, lr/100; the paper's "/5 after 50" reads as either).
  c.optim.decay_epochs = (30, 50, 100)
  c.optim.decay_factors = (2.0, 5.0, 10.0)

  # Encoder pre-training: match mean and covariance of Q_Z to P_Z before the main loop. On,
  # as in the public code (`e_pretrain`: up to 200 steps on batches of 1,000); 0 turns it off.
  c.pretrain = ml_collections.ConfigDict()
  c.pretrain.max_steps = 200
  c.pretrain.batch_size = 1000
  c.pretrain.tol = 0.1

  # Training steps per dispatch, one compiled loop on the devices; logging, evaluation,
  # checkpoints and a preemption are handled between dispatches. It keeps an accelerator
  # busy, and on CPU it pays too once the convolutions are matmuls (model.conv_impl; XLA's
  # own run single-threaded inside a loop): the :debug main job 62 s -> 50 s.
  c.steps_per_dispatch = 10
  c.log_every = 100
  c.ckpt_every = 1000
  c.keep_ckpts = 3
  c.eval_every = 10_000  # Sample/reconstruction grids and held-out metrics; also at the end.
  c.eval = ml_collections.ConfigDict()
  # Evaluators by name (`wae_jax/evaluators/`): every eval_every steps and at the end...
  c.eval.evaluators = ("heldout", "sharpness")
  # ...and what `wae-eval` computes, also at the end of training with final_fid.
  c.eval.final_evaluators = ("heldout", "sharpness", "domain_fid", "fid")
  c.eval.num_samples = 1000  # Prior samples whose sharpness is reported.
  c.eval.batch_size = 500
  # At the end of training, also compute what `wae-eval` does (domain FID; FID when the
  # Inception weights are found) on fid_num_samples prior samples. Off: it takes minutes.
  c.eval.final_fid = False
  c.eval.fid_num_samples = 10_000
  c.eval.cache_dir = ""  # Domain classifier and reference statistics; "": ~/.cache/wae_jax.
  return c


def celeba() -> ml_collections.ConfigDict:
  """The paper's CelebA setting: 64x64x3 close crops, 5x5 kernels, d_z = 64."""
  c = mnist()
  c.z_dim = 64
  c.prior_var = 2.0  # The paper's value; the public code's config file uses 1.
  c.lam = 100.0
  c.num_steps = 55 * 1826  # 55 epochs of the 182,599 training images at batch 100.
  c.data.source = "tfds:celeb_a"
  c.data.heldout = 20_000
  c.model.dec_layers = 4  # 8x8x1024 -> 16x16x512 -> 32x32x256 -> 64x64x128 -> 64x64x3.
  c.model.kernel_size = 5
  c.gan.units = 1024
  c.pretrain.batch_size = 256  # The public code's CelebA pre-training sample.
  c.optim.decay_epochs = (30, 50)
  c.optim.decay_factors = (2.0, 5.0)
  return c


def debug(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config to run on a laptop CPU in about a minute, on the bundled MNIST."""
  c.data.source = "bundled:mnist"
  c.data.heldout = 1000
  c.model.width = 1 / 16  # 1024 -> 64 channels at the widest layer.
  c.model.dec_layers = 3  # 28x28 images: 7x7 at the decoder's first layer.
  c.gan.units = 64
  c.batch_size = 64  # Divides by 8 devices, so tests shard it over 8 simulated CPUs.
  c.num_steps = 1200
  c.optim.decay_epochs = (10, 15)
  c.optim.decay_factors = (2.0, 5.0)
  c.mmd.block_size = 256
  c.pretrain.max_steps = 0  # So a laptop run (and every test) starts training at once.
  c.log_every = 100
  c.ckpt_every = 400
  c.eval_every = 1200
  c.eval.num_samples = 256
  return c


def with_arg(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """Applies a config file's argument (`name:arg`); only `debug` (or nothing) is known."""
  if arg in (None, ""):
    return c
  if arg == "debug":
    return debug(c)
  raise ConfigError(f"config argument: unknown preset {arg!r} (known: debug)")


def resolve(spec: str) -> str:
  """Maps `name[:arg]` of a bundled config to `path[:arg]`; paths pass through unchanged."""
  path, sep, arg = spec.partition(":")
  if not path.endswith(".py") and os.sep not in path:
    bundled = os.path.join(configs.DIR, path + ".py")
    if not os.path.exists(bundled):
      raise ConfigError(f"--config: no config named {path!r} "
                        f"(known: {', '.join(configs.names())})")
    path = bundled
  elif not os.path.isfile(path):
    raise ConfigError(f"--config: no config file {path!r}")
  return path + sep + arg


def load(spec: str) -> ml_collections.ConfigDict:
  """Loads `name[:arg]` (e.g. `mnist_wae_mmd:debug`) without the command line."""
  name, _, arg = spec.partition(":")
  if name.endswith(".py") or os.sep in name:
    spec_ = importlib.util.spec_from_file_location("_wae_config", name)
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
  else:
    resolve(spec)  # Raises a ConfigError for unknown names.
    module = importlib.import_module(f"wae_jax.configs.{name}")
  return module.get_config(arg or None)


def parts() -> list[Any]:
  """The loaded parts (built-in, or imported from outside) that have a config section."""
  return [p for p in (*regularisers.loaded(), *evaluators.loaded()) if p.section]


def _named(fields: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
  """(field, name) of each part that `fields` (config field -> value) names."""
  for field, value in fields.items():
    if field in PART_FIELDS:
      yield from ((field, name) for name in ([value] if isinstance(value, str) else value))


def load_parts(fields: Mapping[str, Any]) -> list[Any]:
  """The parts that `fields` names (`{"algo": "my_rff"}`; other fields pass), imported where
  need be, so that configs made afterwards have their sections; ConfigError naming the field
  of a name that no module registers."""
  out = []
  for field, name in _named(fields):
    try:
      out.append(PART_FIELDS[field].get(name))
    except ConfigError as e:
      raise ConfigError(f"config.{field}: {e}") from None
  return out


def from_dict(d: dict[str, Any]) -> ml_collections.ConfigDict:
  """A config saved as JSON (a trial's config.json), with fields it predates at their
  defaults and renamed ones under their new names. The parts it names are imported where
  they can be; the section of a part that cannot be is kept as saved (`validate` then names
  the field that names the part)."""
  flat = {RENAMED.get(k, k): tuple(v) if isinstance(v, list) else v
          for k, v in flatten(ml_collections.ConfigDict(d)).items()}
  for field, name in _named(flat):
    try:
      PART_FIELDS[field].get(name)
    except ConfigError:
      pass  # Not importable here: its section is kept as saved, below.
  c = mnist()
  for key, value in d.items():
    if isinstance(value, dict) and key not in c:
      c[key] = value
  c.update_from_flattened_dict(flat)
  return c


def read(workdir) -> ml_collections.ConfigDict | None:
  """The config a trial directory was trained with (None if it has none); ConfigError, one
  line, if its config.json cannot be read."""
  path = epath.Path(workdir) / workdir_lib.CONFIG
  try:
    saved = workdir_lib.read_json(path)
    return None if saved is None else from_dict(saved)
  except (ValueError, TypeError, AttributeError, KeyError) as e:
    raise ConfigError(f"{path}: unreadable ({first_line(e)})") from None


def flatten(c: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  """`{'mmd.kernel': 'imq', ...}`: the form `metrics.json` and the results table use."""
  out = {}
  for key, value in c.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = list(value) if isinstance(value, tuple) else value
  return out


# Checks of one field, for `validate` and the parts' own: ConfigError naming config.<field>.


def check(ok: bool, field: str, message: str) -> None:
  if not ok:
    raise ConfigError(f"config.{field}: {message}")


def get(c: ml_collections.ConfigDict, field: str) -> Any:
  """`get(c, "mmd.kernel")` is `c.mmd.kernel`."""
  for part in field.split("."):
    c = c[part]
  return c


def one_of(c: ml_collections.ConfigDict, field: str, allowed: tuple[str, ...]) -> None:
  value = get(c, field)
  check(value in allowed, field, f"unknown value {value!r} (expected one of {', '.join(allowed)})")


def integer(c: ml_collections.ConfigDict, field: str, minimum: int) -> None:
  value = get(c, field)
  check(isinstance(value, int) and value >= minimum, field,
        f"must be an integer >= {minimum}, got {value!r}")


def number(c: ml_collections.ConfigDict, field: str, minimum: float, *,
           above: bool = False) -> None:
  """A finite real number at least (or, `above`, greater than) `minimum`: infinity and NaN
  would pass the comparison alone, then diverge at the first step."""
  value = get(c, field)
  ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value) and (value > minimum if above else value >= minimum))
  check(ok, field, f"must be a finite number {'>' if above else '>='} {minimum}, got {value!r}")


def validate(c: ml_collections.ConfigDict, num_devices: int) -> None:
  """Checks every field a run depends on; raises ConfigError naming the first bad one.

  Data sources are checked here only for their form; whether a directory holds usable
  data is found out by `data.load`, which raises the same error type.
  """
  named = load_parts({field: get(c, field) for field in PART_FIELDS})
  one_of(c, "model.arch", ARCHS)
  one_of(c, "model.encoder", ENCODERS)
  one_of(c, "model.conv_impl", CONV_IMPLS)
  one_of(c, "recon.cost", RECON_COSTS)
  check(c.z_dim >= 1, "z_dim", f"must be >= 1, got {c.z_dim}")
  integer(c, "seed", 0)
  for field in ("prior_var", "recon.scale", "model.width", "optim.lr"):
    number(c, field, 0, above=True)
  number(c, "lam", 0)
  for field in ("num_steps", "batch_size", "pretrain.batch_size", "steps_per_dispatch",
                "log_every", "ckpt_every", "eval_every", "keep_ckpts", "model.enc_layers",
                "model.dec_layers", "model.kernel_size", "eval.batch_size"):
    integer(c, field, 1)
  integer(c, "eval.num_samples", 1)
  integer(c, "eval.fid_num_samples", 2)
  check(len(c.optim.decay_epochs) == len(c.optim.decay_factors), "optim.decay_factors",
        "needs one factor per entry of optim.decay_epochs")
  check(list(c.optim.decay_epochs) == sorted(c.optim.decay_epochs), "optim.decay_epochs",
        f"must be increasing, got {c.optim.decay_epochs!r}")
  check(all(isinstance(f, (int, float)) and math.isfinite(f) and f > 0
            for f in c.optim.decay_factors), "optim.decay_factors",
        f"must be finite numbers > 0, got {c.optim.decay_factors!r}")
  for part in parts():  # Each section the config has; the parts it names need theirs.
    if part.section in c:
      part.validate(c)
    else:
      check(part not in named, part.section, "missing: the config was made before its part "
            "was imported (name the part on the command line, or import it in the config file)")
  regulariser = regularisers.get(c.algo)
  check(regulariser.encoder in (None, c.model.encoder), "model.encoder",
        f"the {regulariser.title} needs a {regulariser.encoder!r} encoder")
  check(c.data.heldout >= 1, "data.heldout", f"must be >= 1, got {c.data.heldout}")
  integer(c, "data.device_max_mb", 0)
  integer(c, "pretrain.max_steps", 0)
  for field in ["batch_size"] + ["pretrain.batch_size"] * (c.pretrain.max_steps > 0):
    n = get(c, field)
    check(n % num_devices == 0, field,
          f"{n} does not divide over {num_devices} devices; use a multiple of "
          f"{num_devices}, e.g. {max(num_devices, n // num_devices * num_devices)} "
          f"or {(n // num_devices + 1) * num_devices}")
  source = data.parse_source(c.data.source)
  check(c.recon.cost != "bernoulli" or not source.pixels.symmetric, "recon.cost",
        f"bernoulli needs pixels in [0, 1], but {c.data.source} has them in [-1, 1]; use "
        "l2sq (a Gaussian decoder)")
