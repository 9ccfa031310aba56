"""Ownership: one live holder per directory; a dead holder's lock is taken over."""
import json
import os
import subprocess
import sys
import time

import pytest

from wae_jax import lock as lock_lib


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


def test_a_half_written_lock_belongs_to_nobody(tmp_path):
  (tmp_path / lock_lib.NAME).write_text('{"role": "tr')
  with lock_lib.Lock(tmp_path, "trainer"):
    pass
