"""Warm workers: the local pool, each worker training its tasks in its own process.

A trainer subprocess pays, on every climb of a multi-fidelity search, a Python start, the
imports of JAX and the trainer, and loading its programs from the compilation cache: for the
short climbs of a debug sweep, most of the climb. A warm worker imports once and keeps its
compiled programs between trials of the same shapes (`pack.setup`), so a climb costs its
steps, evaluations and checkpoints. The guarantees stay the local pool's: a trial's crash is
recorded and the worker goes on; a worker that dies (out of memory, a kill) has its task
retried on a fresh one; SIGTERM, as from a dying driver, checkpoints the trial and ends the
worker. `--trainer` does not apply: the trainer is wae_jax's.
"""

from wae_jax import executors
from wae_jax import supervise
from wae_jax.executors import local


def _warm_up() -> None:
  """A worker's start: the trainer's imports, console and compilation cache, once."""
  # pylint: disable=g-import-not-at-top,unused-import
  from wae_jax import loop
  from wae_jax.cli import common
  common.log_to_console()
  common.use_compilation_cache()


@executors.register("warm")
class Warm(local.Local):
  body = staticmethod(supervise.run_here)
  setup = staticmethod(_warm_up)
