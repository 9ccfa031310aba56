"""Ownership: one live holder per directory; a dead holder's lock is taken over."""
import json
import os
import subprocess
import sys
import threading
import time
import types

import pytest

from wae_jax import lock as lock_lib

try:
  from google.api_core import exceptions as api_exceptions
except ImportError:  # Without the `tf` extra: the gs:// tests skip (the `gcs` fixture).
  api_exceptions = None


def test_a_live_holder_keeps_its_directory_and_is_named(tmp_path):
  with lock_lib.Lock(tmp_path, "trainer"):
    with pytest.raises(lock_lib.Busy, match=f"owned by trainer pid {os.getpid()} on "):
      lock_lib.Lock(tmp_path, "trainer").acquire()
  with lock_lib.Lock(tmp_path, "trainer"):  # Released: free again.
    pass
  assert not (tmp_path / lock_lib.NAME).exists()


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path):
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True).stdout.strip()
  (tmp_path / lock_lib.NAME).write_text(json.dumps({
      "role": "trainer", "host": os.uname().nodename, "pid": int(dead), "since": 0,
      "heartbeat": time.time()}))
  with lock_lib.Lock(tmp_path, "trainer") as lock:
    assert json.loads((tmp_path / lock_lib.NAME).read_text())["token"] == lock.token


def test_another_hosts_lock_is_taken_over_only_when_its_heartbeat_is_stale(tmp_path):
  record = {"role": "trainer", "host": "elsewhere", "pid": 1, "since": 0}
  (tmp_path / lock_lib.NAME).write_text(json.dumps({**record, "heartbeat": time.time()}))
  with pytest.raises(lock_lib.Busy, match="on elsewhere"):
    lock_lib.Lock(tmp_path, "trainer").acquire()
  (tmp_path / lock_lib.NAME).write_text(json.dumps(
      {**record, "heartbeat": time.time() - lock_lib.STALE_S - 1}))
  with lock_lib.Lock(tmp_path, "trainer"):
    pass


def test_a_live_pid_with_a_stale_heartbeat_on_this_host_is_taken_over(tmp_path):
  """A reused pid, or a VM recreated under the same hostname: the pid alone does not keep a
  lock whose holder stopped beating."""
  record = {"role": "trainer", "host": os.uname().nodename, "pid": os.getppid(), "since": 0}
  (tmp_path / lock_lib.NAME).write_text(json.dumps({**record, "heartbeat": time.time()}))
  with pytest.raises(lock_lib.Busy, match=f"pid {os.getppid()}"):
    lock_lib.Lock(tmp_path, "trainer").acquire()
  (tmp_path / lock_lib.NAME).write_text(json.dumps(
      {**record, "heartbeat": time.time() - lock_lib.STALE_S - 1}))
  with lock_lib.Lock(tmp_path, "trainer"):
    pass


def test_a_lock_that_is_a_directory_is_one_line_and_left_alone(tmp_path):
  from wae_jax.errors import TrialError  # pylint: disable=g-import-not-at-top
  (tmp_path / lock_lib.NAME).mkdir()
  with pytest.raises(TrialError, match="is a directory, not a lock file; move it aside"):
    lock_lib.Lock(tmp_path, "trainer").acquire()
  assert (tmp_path / lock_lib.NAME).is_dir()


def test_a_half_written_lock_belongs_to_nobody(tmp_path):
  (tmp_path / lock_lib.NAME).write_text('{"role": "tr')
  with lock_lib.Lock(tmp_path, "trainer"):
    pass


@pytest.mark.parametrize("record", [
    {"pid": "abc", "heartbeat": "now"}, {"pid": [1], "heartbeat": 1e12}, [1, 2], "x",
    {"pid": -1}, {"pid": 0}])  # os.kill(-1 or 0, 0) succeeds: no pid says "alive".
def test_a_lock_file_of_another_shape_belongs_to_nobody(tmp_path, record):
  import socket  # pylint: disable=g-import-not-at-top
  if isinstance(record, dict):
    record.update(host=socket.gethostname(), heartbeat=record.get("heartbeat", time.time()))
  (tmp_path / lock_lib.NAME).write_text(json.dumps(record))
  with lock_lib.Lock(tmp_path, "trainer"):
    pass


# --- gs://: the same protocol on Cloud Storage's generation preconditions ----------------


class FakeCloudStorage:
  """Objects with generations, and the service's preconditions: a write or delete with
  `if_generation_match=g` fails unless the object is at generation g (0: absent; None:
  unconditional)."""

  def __init__(self):
    self.objects, self.next_generation, self.mutex = {}, 1, threading.Lock()

  def bucket(self, bucket):
    return types.SimpleNamespace(blob=lambda name: FakeBlob(self, f"{bucket}/{name}"))


class FakeBlob:

  def __init__(self, gcs, key):
    self.gcs, self.key, self.generation = gcs, key, None

  def _check(self, generation):
    if generation is not None and self.gcs.objects.get(self.key, (None, 0))[1] != generation:
      raise api_exceptions.PreconditionFailed("generation mismatch")

  def reload(self):
    if self.key not in self.gcs.objects:
      raise api_exceptions.NotFound(self.key)
    self.generation = self.gcs.objects[self.key][1]

  def download_as_text(self, if_generation_match):
    with self.gcs.mutex:
      self._check(if_generation_match)
      return self.gcs.objects[self.key][0]

  def upload_from_string(self, text, if_generation_match):
    with self.gcs.mutex:
      self._check(if_generation_match)
      self.generation, self.gcs.next_generation = (self.gcs.next_generation,
                                                   self.gcs.next_generation + 1)
      self.gcs.objects[self.key] = (text, self.generation)

  def delete(self, if_generation_match):
    with self.gcs.mutex:
      self._check(if_generation_match)
      del self.gcs.objects[self.key]


@pytest.fixture
def gcs(monkeypatch):
  storage = pytest.importorskip("google.cloud.storage")
  fake = FakeCloudStorage()
  monkeypatch.setattr(storage, "Client", lambda: fake)
  return fake


def _stale_record(**extra):
  return json.dumps({"role": "trainer", "host": "preempted-vm", "pid": 1, "since": 0,
                     "heartbeat": time.time() - lock_lib.STALE_S - 1, **extra})


def test_on_gcs_a_live_holder_keeps_its_directory_and_a_release_frees_it(gcs):
  with lock_lib.Lock("gs://b/sweep", "sweep driver"):
    with pytest.raises(lock_lib.Busy, match="owned by sweep driver pid"):
      lock_lib.Lock("gs://b/sweep", "sweep driver").acquire()
  assert gcs.objects == {}
  with lock_lib.Lock("gs://b/sweep", "sweep driver"):
    assert list(gcs.objects) == ["b/sweep/.lock"]


def test_on_gcs_a_stale_lock_is_taken_over_and_its_old_holder_cannot_undo_that(gcs):
  old = lock_lib.Lock("gs://b/trial", "trainer")
  old.acquire()
  old._stop.set()  # Its heartbeats stop, as on a preempted VM.
  FakeBlob(gcs, "b/trial/.lock").upload_from_string(_stale_record(), gcs.objects[
      "b/trial/.lock"][1])
  with lock_lib.Lock("gs://b/trial", "trainer") as new:
    assert old._store.replace("{}", old._version) is None  # Its next heartbeat is refused,
    old.release()  # and its release leaves the new holder's lock alone.
    assert json.loads(gcs.objects["b/trial/.lock"][0])["token"] == new.token


def test_on_gcs_one_of_many_racing_for_a_stale_lock_wins(gcs):
  gcs.objects["b/trial/.lock"] = (_stale_record(), 99)
  barrier, outcomes = threading.Barrier(8), []

  def contend():
    lock = lock_lib.Lock("gs://b/trial", "trainer")
    barrier.wait()
    try:
      lock.acquire()
      outcomes.append(lock)
    except lock_lib.Busy:
      outcomes.append(None)

  threads = [threading.Thread(target=contend) for _ in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  winners = [lock for lock in outcomes if lock is not None]
  assert len(outcomes) == 8 and len(winners) == 1
  assert json.loads(gcs.objects["b/trial/.lock"][0])["token"] == winners[0].token
  winners[0].release()
