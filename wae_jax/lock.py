"""Ownership of a directory: one trainer per trial directory, one driver per sweep directory.

A lock is a file naming its holder (host, pid, start time) that the holder refreshes every
`HEARTBEAT_S`. Another process takes it over only when the holder is gone: on the same host
when its pid no longer runs, elsewhere when the heartbeat is older than `STALE_S` (a
preempted TPU VM leaves its lock behind and never refreshes it).

Every change to the file is conditional on the version last read. On Cloud Storage the
service checks it (the object's generation as `if_generation_match`, 0 for "absent"; this
is why google-cloud-storage is used here and not `tf.io.gfile`, epath's gs:// backend, which
cannot express it), so two processes never both win. Locally the create is exclusive
(O_EXCL) and a takeover compares then unlinks: two processes taking over the same dead
holder's lock within microseconds could both win.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from absl import logging
from etils import epath

from wae_jax.errors import TrialError

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


class _LocalFile:
  """The lock file on this machine's disk; a version is the file's text."""

  def __init__(self, path: epath.Path):
    self.path = path

  def create(self, text: str) -> Any:
    try:
      fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
      return None
    with os.fdopen(fd, "w") as f:
      f.write(text)
    return text

  def read(self) -> tuple[str | None, Any]:
    try:
      text = self.path.read_text()
    except FileNotFoundError:
      return None, None
    return text, text

  def replace(self, text: str, version: Any) -> Any:
    if self.read()[1] != version:
      return None
    tmp = self.path.parent / f"{NAME}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(text)
    tmp.replace(self.path)
    return text

  def delete(self, version: Any) -> None:
    if version is not None and self.read()[1] == version:
      self.path.unlink(missing_ok=True)


class _GcsObject:
  """The lock object on Cloud Storage; a version is its generation, and every write and
  delete is conditional on it (exact: the service checks it)."""

  def __init__(self, path: epath.Path):
    from google.cloud import storage  # pylint: disable=g-import-not-at-top
    from google.api_core import exceptions  # pylint: disable=g-import-not-at-top
    bucket, name = os.fspath(path)[len("gs://"):].split("/", 1)
    self.blob = storage.Client().bucket(bucket).blob(name)
    self.lost = (exceptions.PreconditionFailed, exceptions.NotFound)

  def create(self, text: str) -> Any:
    return self.replace(text, 0)

  def read(self) -> tuple[str | None, Any]:
    try:
      self.blob.reload()
      generation = self.blob.generation
      return self.blob.download_as_text(if_generation_match=generation), generation
    except self.lost:
      return None, None

  def replace(self, text: str, version: Any) -> Any:
    try:
      self.blob.upload_from_string(text, if_generation_match=version)
    except self.lost:
      return None
    return self.blob.generation

  def delete(self, version: Any) -> None:
    if version is None:
      return
    try:
      self.blob.delete(if_generation_match=version)
    except self.lost:
      pass


def _store(path: epath.Path) -> _LocalFile | _GcsObject:
  if workdir_lib.is_local(path):
    return _LocalFile(path)
  if os.fspath(path).startswith("gs://"):
    return _GcsObject(path)
  raise ValueError(f"{path}: a lock needs a local path or gs://")


class Lock:
  """`with Lock(directory, "trainer"):` owns `directory/.lock` for the block, or raises Busy."""

  def __init__(self, directory: epath.PathLike, role: str):
    self.path = epath.Path(directory) / NAME
    self.role = role
    self.token = uuid.uuid4().hex
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None
    self._version: Any = None
    self._made = False

  def _record(self) -> dict[str, Any]:
    return {"role": self.role, "host": socket.gethostname(), "pid": os.getpid(),
            "token": self.token, "since": self._since, "heartbeat": time.time()}

  @staticmethod
  def _holder(text: str | None) -> dict[str, Any] | None:
    """The holder a lock file's text names, or None when nobody (alive) holds it."""
    try:
      record = json.loads(text) if text is not None else None
    except ValueError:  # Half written by a holder that died: nobody.
      return None
    if not isinstance(record, dict):
      return None
    try:
      fresh = time.time() - float(record.get("heartbeat", 0)) < STALE_S
      pid = int(record.get("pid", -1))
    except (TypeError, ValueError):  # Not a lock's record (a person's edit): nobody.
      return None
    if record.get("host") == socket.gethostname():  # A reused pid, or a recreated VM: stale.
      return record if fresh and pid > 0 and _alive(pid) else None
    return record if fresh else None

  def acquire(self) -> None:
    if self.path.is_dir():  # Not ours to remove: a person put it there.
      raise TrialError(f"{self.path} is a directory, not a lock file; move it aside")
    self._store = _store(self.path)
    # An object store has no directories. One made here goes again if the holder leaves it
    # empty (a config refused once its data were seen): a refusal writes nothing.
    self._made = isinstance(self._store, _LocalFile) and not self.path.parent.exists()
    if isinstance(self._store, _LocalFile):
      self.path.parent.mkdir(parents=True, exist_ok=True)
    self._since = time.time()
    for _ in range(3):
      self._version = self._store.create(json.dumps(self._record()))
      if self._version is not None:
        break
      text, version = self._store.read()
      holder = self._holder(text)
      if holder is not None:
        raise Busy(f"{self.path.parent} is owned by {holder.get('role', 'a process')} pid "
                   f"{holder.get('pid')} on {holder.get('host')} since "
                   f"{time.strftime('%H:%M:%S', time.localtime(holder.get('since', 0)))}")
      if version is not None:  # Its holder is gone: take it over, unless another did first.
        self._store.delete(version)
    else:
      raise Busy(f"{self.path} keeps changing hands; try again")
    self._thread = threading.Thread(target=self._beat, daemon=True)
    self._thread.start()

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_S):
      try:
        version = self._store.replace(json.dumps(self._record()), self._version)
      except OSError:
        continue  # The next beat tries again; a lock that goes stale is only taken over.
      if version is None:
        logging.warning("%s was taken over (no heartbeat for %d s?): no longer refreshed.",
                        self.path, STALE_S)
        return
      self._version = version

  def release(self) -> None:
    self._stop.set()
    if self._thread:
      self._thread.join()
    try:
      self._store.delete(self._version)
      if self._made and not any(self.path.parent.iterdir()):
        self.path.parent.rmdir()
    except OSError:
      pass

  def __enter__(self) -> Lock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
