"""Ray: a task a trial (or a pack) on a local Ray or a cluster (`--ray_address`).

Without an address a new local Ray starts with `--parallel` CPUs, one task each. A worker
that dies takes its trainer with it (Ray kills the worker's process group) and has its task
retried, as does a task that raised `TrialInterrupted`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from wae_jax import executors
from wae_jax import supervise
from wae_jax.hyper import SweepError


# A dead worker's trainer is left to the parent-death signal (`supervise.die_with_parent`):
# its SIGTERM lets the trainer save its stop checkpoint, where Ray's own clean-up of a dead
# worker's children is a SIGKILL. A Ray this executor starts takes it as its system config;
# a cluster's nodes as this variable in their environment (`wae-launch setup` sets it).
SYSTEM_CONFIG = {"kill_child_processes_on_worker_exit": False}
RAY_ENV = {"RAY_kill_child_processes_on_worker_exit": "0"}


@executors.register("ray")
class Ray(executors.Executor):
  takes = ("parallel", "max_retries", "ray_address", "resources")

  def __init__(self, options: Mapping[str, Any]):
    super().__init__(options)
    self.address = options.get("ray_address")
    self.default_parallel = math.inf if self.address else 1  # A cluster: all it can take.
    resources = options.get("resources") or {"CPU": 1}
    if not isinstance(resources, dict) or not all(
        isinstance(v, (int, float)) and v >= 0 for v in resources.values()):
      raise SweepError(f"--resources: a JSON object of Ray resources per task, e.g. "
                       f"'{{\"TPU\": 4}}', got {json.dumps(resources)}")
    self.resources = dict(resources)
    self.tasks: dict[Any, int] = {}  # Object refs in flight, to their keys.
    self.submitted = 0
    self.started_ray = False

  def start(self) -> None:
    import ray  # pylint: disable=g-import-not-at-top  # Seconds to import: only when running.
    self.ray = ray
    resources = dict(self.resources)
    self.remote = ray.remote(supervise.run).options(
        num_cpus=resources.pop("CPU", 0), num_gpus=resources.pop("GPU", 0),
        resources=resources, max_retries=self.max_retries,
        retry_exceptions=[supervise.TrialInterrupted])
    if ray.is_initialized():  # A test's (or a notebook's) own Ray.
      return
    try:
      ray.init(address=self.address or "local",  # "local": a new instance, never a stale one.
               num_cpus=None if self.address else (self.parallel or 1),
               include_dashboard=False, log_to_driver=False, logging_level="ERROR",
               _system_config=None if self.address else SYSTEM_CONFIG)
    except ConnectionError as e:
      raise SweepError(f"--ray_address: {str(e).strip().splitlines()[-1]}") from None
    self.started_ray = True

  def submit(self, task: supervise.Task) -> int:
    key, self.submitted = self.submitted, self.submitted + 1
    self.tasks[self.remote.remote(task)] = key
    return key

  def wait(self, timeout: float) -> list[executors.Done]:
    if not self.tasks:
      return []
    ready, _ = self.ray.wait(list(self.tasks), num_returns=1, timeout=timeout)
    done = []
    for ref in ready:
      key = self.tasks.pop(ref)
      try:
        done.append(executors.Done(key, self.ray.get(ref)))
      except self.ray.exceptions.RayError as e:  # Out of retries.
        done.append(executors.Done(key, error=str(e).strip().splitlines()[-1]))
    return done

  def shutdown(self) -> None:
    if self.started_ray:
      self.ray.shutdown()
