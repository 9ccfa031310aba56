r"""wae-train: trains one trial (or a pack of trials) into its directory.

  wae-train --config=mnist_wae_mmd:debug --workdir=/tmp/wae [--config.lam=5 ...]
  wae-train --pack='[{"trial": {...}, "workdir": "..."}, ...]'   (what `wae-sweep --pack` runs)

A regulariser or evaluator outside wae_jax is a module on the Python path that registers
itself under its own module name: `--config.algo=my_rff` (or `--config.eval.evaluators=`)
imports it before the config file loads, so its section is there for
`--config.<section>.<field>=` to set.

Exit codes (workdir.EXIT_*): 0 finished; 2 a refused flag or config, one line, nothing
written; 143 stopped by a signal with a checkpoint saved (run it again to resume); 75 a
trial directory owned by another live trainer (nothing done); 65 a trial directory to look
at (its config.json unreadable, nothing to rebuild it from; nothing done); 1 a
crash, recorded as `failed` in each unfinished trial's metrics.json, the error the last line.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF is only here for TensorBoard files.

import json  # pylint: disable=g-import-not-at-top,wrong-import-position
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
from ml_collections.config_flags import tuple_parser

from wae_jax import configs
from wae_jax import errors
from wae_jax import workdir as workdir_lib
from wae_jax.cli import common

# JAX and the training code load after the flags parse, so that --help and a refused flag
# answer at once.
# pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config: name[:arg] or path.py[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Trial directory (local or gs://).")
_RESTART = flags.DEFINE_bool("restart", False, "Start over a trial directory that holds a trial "
                             "of another config (its files are moved to aside/).")
_PACK = flags.DEFINE_string("pack", None, "JSON [{trial, workdir}, ...]: trials that share "
                            "their shapes, trained as one program (instead of --config).")


def _usage() -> str:
  return (f"{__doc__.strip()}\n\nflags:{flags.FLAGS.module_help(__name__).split(':', 1)[1]}\n"
          "  --config.<field>=value: overrides one config field (any in config.json), e.g.\n"
          "    --config.lam=5 --config.model.arch=resnet\n\n"
          f"bundled configs (each also takes :debug): {', '.join(configs.names())}\n"
          "absl's own flags: --helpfull")


def _parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with bundled config names and one-line errors (exit 2)."""
  if {"-h", "--help", "--helpshort"} & set(argv[1:]):
    print(_usage())
    sys.exit(0)
  from wae_jax import config as config_lib
  try:
    argv = [argv[0]] + [_resolve_config_flag(a) for a in argv[1:]]
    for names in _part_flags(argv[1:]):  # Before the config file makes the config.
      config_lib.load_parts(names)
    rest = flags.FLAGS(argv)
    if _PACK.value is None and (_WORKDIR.value is None or _CONFIG.value is None):
      raise flags.Error("--config and --workdir are required")
  except (flags.Error, config_lib.ConfigError) as e:
    common.fail("wae-train", str(e).splitlines()[0])
  except (AttributeError, KeyError) as e:  # ml_collections' answer to --config.<unknown field>.
    if "get_config" in str(e.args[0]):
      common.fail("wae-train", "--config: the file defines no get_config(arg=None)")
    while e.args and isinstance(e.args[0], BaseException):  # A KeyError inside AttributeError.
      e = e.args[0]
    field, *hint = str(e.args[0] if e.args else "").split("\n")
    common.fail("wae-train", f"--config: no field {field.strip(chr(39))!r}. "
                f"{' '.join(hint)}".strip())
  except Exception as e:  # pylint: disable=broad-except  # The config file's own code failed.
    common.fail("wae-train", f"--config: {type(e).__name__}: {errors.first_line(e)}")
  return rest


def _part_flags(args: list[str]) -> list[dict[str, tuple]]:
  """`{field: names}` of each `--config.<field>=` flag that names parts (`algo`,
  `eval.evaluators`, ...), its value parsed as a tuple, as ml_collections parses them."""
  from wae_jax import config as config_lib
  fields = [a[len("--config."):].partition("=") for a in args if a.startswith("--config.")]
  return [{field: tuple_parser.TupleParser().parse(value)}
          for field, eq, value in fields if eq and field in config_lib.PART_FIELDS]


def _resolve_config_flag(arg: str) -> str:
  from wae_jax import config as config_lib
  if arg.startswith("--config="):
    return "--config=" + config_lib.resolve(arg[len("--config="):])
  return arg


def _members() -> tuple[list, list[str], list[list[str] | None]]:
  """The configs and trial directories to train: --pack's, or --config's and --workdir's;
  and the fields each sets beyond its config file (what TensorBoard shows as HParams)."""
  def fields(names):
    return [n.split("=")[0][len("config."):] for n in names if n.startswith("config.")] or None

  if _PACK.value is None:
    return [_CONFIG.value], [_WORKDIR.value], [fields(a[2:] for a in sys.argv[1:])]
  from wae_jax import config as config_lib
  from wae_jax import study
  members, bases = json.loads(_PACK.value), {}
  for m in members:  # The outside parts they name, before their configs are made.
    config_lib.load_parts({k[len("config."):]: v for k, v in m["trial"].items()})
  return ([study.trial_config(m["trial"], bases) for m in members],
          [m["workdir"] for m in members], [fields(m["trial"]) for m in members])


def _join_hosts() -> None:
  """Joins the other processes of a multi-host run before JAX touches a device.

  On Cloud TPU VMs everything is auto-detected. Elsewhere (or to test on one machine) set
  JAX_COORDINATOR_ADDRESS=host:port, WAE_NUM_PROCESSES and WAE_PROCESS_ID.
  """
  import jax
  n, i = os.environ.get("WAE_NUM_PROCESSES"), os.environ.get("WAE_PROCESS_ID")
  jax.distributed.initialize(num_processes=int(n) if n else None,
                             process_id=int(i) if i else None)


def _run(argv: list[str]) -> None:
  del argv
  import jax
  from wae_jax import config as config_lib
  from wae_jax import hyper
  from wae_jax import lock
  from wae_jax import loop
  from wae_jax import trial as trial_lib
  common.use_compilation_cache()
  try:
    configs, workdirs, hparams = _members()
  except (hyper.SweepError, ValueError, KeyError) as e:
    common.fail("wae-train", f"--pack: {str(e).strip().splitlines()[0]}")
  if configs[0].multihost:
    _join_hosts()
    if jax.process_index() != 0:  # One console: the other hosts report only problems.
      logging.set_verbosity(logging.WARNING)
  try:
    results = loop.train_pack(configs, workdirs, _RESTART.value, hparams)
  except trial_lib.Damaged as e:
    common.fail("wae-train", str(e), workdir_lib.EXIT_DAMAGED)
  except (config_lib.ConfigError, errors.TrialError) as e:
    common.fail("wae-train", str(e).strip().splitlines()[0])
  except lock.Busy as e:
    common.fail("wae-train", str(e), workdir_lib.EXIT_BUSY)
  except Exception as e:  # pylint: disable=broad-except  # Recorded, then summed up.
    error = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[-1]}"
    if jax.process_index() == 0:
      for c, workdir in zip(configs, workdirs):
        if workdir_lib.read_record(workdir).get("status") not in workdir_lib.FINAL:
          workdir_lib.record_failure(workdir, error, config=config_lib.flatten(c),
                                     num_steps=c.num_steps)
    traceback.print_exc()
    common.fail(None, error, workdir_lib.EXIT_CRASHED)
  if any(r.status == workdir_lib.RUNNING for r in results):
    sys.exit(workdir_lib.EXIT_STOPPED)


def main() -> None:
  common.use_console()
  app.run(_run, flags_parser=_parse_flags)


if __name__ == "__main__":
  main()
