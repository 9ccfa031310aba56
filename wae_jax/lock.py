"""Ownership of a directory: one trainer per trial directory, one driver per sweep directory.

A lock is a file naming its holder (host, pid, start time) that the holder refreshes every
`HEARTBEAT_S`. Another process takes it over only when the holder is gone: on the same host
when its pid no longer runs, elsewhere when the heartbeat is older than `STALE_S` (a
preempted TPU VM leaves its lock behind and never refreshes it). Local files are created
exclusively (O_EXCL); on an object store (gs://), which has no exclusive create through
this API, a writer reads its own token back after a pause, which leaves a narrow race
between two processes that start within that pause.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from etils import epath

from wae_jax import workdir as workdir_lib

NAME = ".lock"
HEARTBEAT_S = 30.0
STALE_S = 120.0


class Busy(Exception):
  """The directory is owned by a live process; the message names it."""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Someone else's process: alive.
    return True
  return True


class Lock:
  """`with Lock(directory, "trainer"):` owns `directory/.lock` for the block, or raises Busy."""

  def __init__(self, directory: epath.PathLike, role: str):
    self.path = epath.Path(directory) / NAME
    self.role = role
    self.token = uuid.uuid4().hex
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def _record(self) -> dict[str, Any]:
    return {"role": self.role, "host": socket.gethostname(), "pid": os.getpid(),
            "token": self.token, "since": self._since, "heartbeat": time.time()}

  def holder(self) -> dict[str, Any] | None:
    """The current holder's record, or None when nobody (alive) holds it."""
    try:
      record = json.loads(self.path.read_text())
    except FileNotFoundError:
      return None
    except (ValueError, OSError):  # Half written by a holder that died: nobody.
      return None
    if not isinstance(record, dict):
      return None
    if record.get("host") == socket.gethostname():
      return record if _alive(int(record.get("pid", -1))) else None
    return record if time.time() - float(record.get("heartbeat", 0)) < STALE_S else None

  def _create(self) -> bool:
    text = json.dumps(self._record())
    if workdir_lib.is_local(self.path):
      try:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
      except FileExistsError:
        return False
      with os.fdopen(fd, "w") as f:
        f.write(text)
      return True
    if self.path.exists():
      return False
    self.path.write_text(text)
    time.sleep(1.0)
    return json.loads(self.path.read_text()).get("token") == self.token

  def acquire(self) -> None:
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._since = time.time()
    for _ in range(3):
      if self._create():
        break
      holder = self.holder()
      if holder is not None:
        raise Busy(f"{self.path.parent} is owned by {holder.get('role', 'a process')} pid "
                   f"{holder.get('pid')} on {holder.get('host')} since "
                   f"{time.strftime('%H:%M:%S', time.localtime(holder.get('since', 0)))}")
      self.path.unlink(missing_ok=True)  # Its holder is gone: take it over.
    else:
      raise Busy(f"{self.path} keeps changing hands; try again")
    self._thread = threading.Thread(target=self._beat, daemon=True)
    self._thread.start()

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_S):
      try:
        tmp = self.path.parent / f"{NAME}.{self.token}.tmp"
        tmp.write_text(json.dumps(self._record()))
        tmp.replace(self.path)
      except OSError:
        pass  # The next beat tries again; a lock that goes stale is only taken over.

  def release(self) -> None:
    self._stop.set()
    if self._thread:
      self._thread.join()
    try:
      if json.loads(self.path.read_text()).get("token") == self.token:
        self.path.unlink()
    except (FileNotFoundError, ValueError, OSError):
      pass

  def __enter__(self) -> Lock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
