"""A pool of worker processes on this machine, without Ray: a laptop's executor.

`--parallel` workers (spawned, so the driver's state is not copied) take one task at a time
and run its trainer as a subprocess (`supervise.run`). A worker dies with the driver and
takes its trainer with it, which checkpoints on its way out. A worker that dies without an
answer, or whose task raised `TrialInterrupted`, has its task retried up to `max_retries`
times on a fresh worker, as Ray does on a cluster.
"""

from __future__ import annotations

import collections
import multiprocessing
import multiprocessing.connection
from typing import Any

from wae_jax import errors
from wae_jax import executors
from wae_jax import supervise


def _serve(conn, body, setup) -> None:
  """A worker: `setup()` once, then tasks from `conn`, each run by `body`, answers back. It
  leaves after an interrupted task: a signal stopped it, or its trainer was lost."""
  supervise.die_with_parent()
  if setup:
    setup()
  while True:
    try:
      task = conn.recv()
    except EOFError:  # The driver is gone.
      return
    try:
      try:
        answer = ("ok", body(task))
      except supervise.TrialInterrupted as e:
        conn.send(("retry", str(e)))
        return
      except Exception as e:  # pylint: disable=broad-except  # The task's error, one line.
        answer = ("error", f"{type(e).__name__}: {errors.first_line(e)}")
      conn.send(answer)
    except (BrokenPipeError, ConnectionResetError):  # The driver died while it trained.
      return


@executors.register("local")
class Local(executors.Executor):
  body = staticmethod(supervise.run)  # What a worker runs each task with...
  setup = None  # ...after this, once.

  def start(self) -> None:
    self.context = multiprocessing.get_context("spawn")
    self.idle: list[tuple[Any, Any]] = []  # (process, connection) of workers free.
    self.busy: dict[Any, tuple[Any, int, supervise.Task, int]] = {}  # conn -> (process, ..)
    self.queue: collections.deque = collections.deque()  # (key, task, tries) to start.
    self.keys = 0

  def submit(self, task: supervise.Task) -> int:
    key, self.keys = self.keys, self.keys + 1
    self.queue.append((key, task, 0))
    self._dispatch()
    return key

  def _dispatch(self) -> None:
    """Hands queued tasks to free workers, starting workers up to `parallel`."""
    while self.queue:
      if not self.idle:
        if len(self.busy) >= (self.parallel or 1):
          return
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=_serve, args=(theirs, self.body, self.setup),
                                        daemon=True)
        process.start()
        theirs.close()
        self.idle.append((process, ours))
      process, conn = self.idle.pop()
      key, task, tries = self.queue.popleft()
      conn.send(task)
      self.busy[conn] = (process, key, task, tries)

  def wait(self, timeout: float) -> list[executors.Done]:
    ready = multiprocessing.connection.wait(list(self.busy), timeout) if self.busy else []
    done = []
    for conn in ready:
      process, key, task, tries = self.busy.pop(conn)
      try:
        kind, value = conn.recv()
      except (EOFError, OSError):  # The worker died without an answer.
        kind, value = "retry", None
      if kind == "retry" or not process.is_alive():
        process.join(timeout=60)
        conn.close()
      else:
        self.idle.append((process, conn))
      if kind == "ok":
        done.append(executors.Done(key, value))
      elif kind == "retry" and tries < self.max_retries:
        self.queue.append((key, task, tries + 1))
      else:
        done.append(executors.Done(key, error=value or f"worker exited with code "
                                                       f"{process.exitcode}"))
    self._dispatch()
    return done

  def shutdown(self) -> None:
    """Closes every worker's connection (an idle one leaves at once), sends SIGTERM to the
    busy ones (their trainers checkpoint on the way out), and waits for them."""
    workers = [p for p, _ in self.idle] + [p for p, *_ in self.busy.values()]
    for conn in [c for _, c in self.idle] + list(self.busy):
      conn.close()
    for process, *_ in self.busy.values():
      process.terminate()
    for process in workers:
      process.join(timeout=120)
      if process.is_alive():  # Past any checkpoint's time: its trial resumes from an older one.
        process.kill()
        process.join()
    self.idle.clear()
    self.busy.clear()
