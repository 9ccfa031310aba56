"""A process pool on this machine, without Ray: a laptop's executor.

Each task runs in a fresh worker process (spawned, so the driver's state is not copied),
which dies with the driver and takes its trainer with it. A worker that dies without an
answer, or whose task raised `TrialInterrupted`, has its task retried up to `max_retries`
times, as Ray does on a cluster.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
from typing import Any, Callable

from wae_jax import errors
from wae_jax import executors
from wae_jax import supervise


def _work(conn, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
  supervise.die_with_parent()
  try:
    conn.send(("ok", fn(*args)))
  except supervise.TrialInterrupted as e:
    conn.send(("retry", str(e)))
  except Exception as e:  # pylint: disable=broad-except  # Reported as the task's error.
    conn.send(("error", f"{type(e).__name__}: {errors.first_line(e)}"))


@executors.register("local")
class Local(executors.Executor):

  def start(self) -> None:
    self.context = multiprocessing.get_context("spawn")
    self.running: dict[int, tuple[Any, Any, Callable, tuple, int]] = {}
    self.keys = 0

  def submit(self, fn: Callable[..., Any], *args: Any) -> int:
    key, self.keys = self.keys, self.keys + 1
    self._spawn(key, fn, args, tries=0)
    return key

  def _spawn(self, key: int, fn, args, tries: int) -> None:
    receive, send = self.context.Pipe(duplex=False)
    process = self.context.Process(target=_work, args=(send, fn, args), daemon=True)
    process.start()
    send.close()
    self.running[key] = (process, receive, fn, args, tries)

  def wait(self, timeout: float) -> list[executors.Done]:
    sentinels = {p.sentinel: k for k, (p, *_) in self.running.items()}
    ready = multiprocessing.connection.wait(list(sentinels), timeout) if sentinels else []
    done = []
    for sentinel in ready:
      key = sentinels[sentinel]
      process, receive, fn, args, tries = self.running.pop(key)
      try:
        kind, value = receive.recv() if receive.poll() else ("retry", None)
      except (EOFError, OSError):
        kind, value = "retry", None
      process.join()
      receive.close()
      why = value or f"worker exited with code {process.exitcode}"
      if kind == "retry" and tries < self.max_retries:
        self._spawn(key, fn, args, tries + 1)
      elif kind == "ok":
        done.append(executors.Done(key, value))
      else:
        done.append(executors.Done(key, error=why))
    return done

  def shutdown(self) -> None:
    for process, receive, *_ in self.running.values():
      process.terminate()  # SIGTERM: its trainer checkpoints on its way out.
      process.join()
      receive.close()
    self.running.clear()
