"""gcloud argv builders for Cloud TPU VMs and queued resources, and where they point.

Builders return argv lists and run nothing, so a launch can be printed, tested offline and
executed without quoting bugs. Project and zone go explicitly into every command, so nothing
depends on whichever gcloud configuration happens to be active when a later command runs.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess

from .shell import LaunchError

GCLOUD = "gcloud"
_TPU_VM = (GCLOUD, "compute", "tpus", "tpu-vm")
_QUEUED = (GCLOUD, "compute", "tpus", "queued-resources")
# TPU node ids: lower-case letters, digits and hyphens, starting with a letter.
_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# v2-8, v3-32, v4-16, v5litepod-8, v5p-8, v6e-8, ...
_ACCELERATOR = re.compile(r"v\d[a-z0-9]*-\d+")

# field -> (gcloud property, environment variable gcloud itself reads, wae-launch flag)
_SETTINGS = {
    "project": ("project", "CLOUDSDK_CORE_PROJECT", "--project"),
    "zone": ("compute/zone", "CLOUDSDK_COMPUTE_ZONE", "--zone"),
}

VM_STATUS_FORMAT = "value(name.basename(),acceleratorType,state,health)"
QUEUED_STATUS_FORMAT = "value(name.basename(),state.state)"
INTERNAL_IP_FORMAT = "value(networkEndpoints[0].ipAddress)"


@dataclasses.dataclass(frozen=True)
class Cloud:
  """The project and zone every command goes to."""
  project: str
  zone: str

  @property
  def flags(self) -> list[str]:
    return [f"--project={self.project}", f"--zone={self.zone}"]


def require_gcloud() -> None:
  if shutil.which(GCLOUD) is None:
    raise LaunchError("gcloud not found on PATH: install the Google Cloud CLI "
                      "(https://cloud.google.com/sdk/docs/install) and put it on PATH")


def resolve_cloud(project: str | None, zone: str | None) -> Cloud:
  """Flags win, then the CLOUDSDK_* environment variables, then the active gcloud config."""
  values = {}
  for field, given in (("project", project), ("zone", zone)):
    prop, env, flag = _SETTINGS[field]
    value = given or os.environ.get(env) or _config_value(prop)
    if not value:
      raise LaunchError(f"no {field} set: pass {flag}, set {env}, "
                        f"or run `gcloud config set {prop} VALUE`")
    values[field] = value
  return Cloud(**values)


def _config_value(prop: str) -> str:
  """The active gcloud configuration's value of `prop`; '' when unset or gcloud is missing."""
  if shutil.which(GCLOUD) is None:
    return ""
  out = subprocess.run([GCLOUD, "config", "get-value", prop],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  value = out.stdout.strip()
  return "" if out.returncode or value == "(unset)" else value


def vm_names(name: str, count: int) -> list[str]:
  """NAME for one VM; NAME-0 ... NAME-{count-1} for several."""
  if not _NAME.fullmatch(name):
    raise LaunchError(f"--name {name!r} is not a valid TPU name: use lower-case letters, "
                      "digits and hyphens, starting with a letter")
  if count < 1:
    raise LaunchError(f"--count must be at least 1, got {count}")
  return [name] if count == 1 else [f"{name}-{i}" for i in range(count)]


def check_accelerator(accelerator_type: str) -> str:
  if not _ACCELERATOR.fullmatch(accelerator_type):
    raise LaunchError(f"--accelerator_type {accelerator_type!r} is not a TPU type such as "
                      "v2-8, v2-32, v4-8 or v5litepod-8")
  return accelerator_type


def create_vm(cloud: Cloud, name: str, *, accelerator_type: str, version: str,
              spot: bool = False, preemptible: bool = False) -> list[str]:
  argv = [*_TPU_VM, "create", name, *cloud.flags,
          f"--accelerator-type={accelerator_type}", f"--version={version}"]
  if spot:
    argv.append("--spot")
  if preemptible:
    argv.append("--preemptible")
  return argv


def create_queued(cloud: Cloud, name: str, *, accelerator_type: str, version: str,
                  spot: bool = False) -> list[str]:
  """A queued resource holding one node of the same name, so later commands can address it."""
  argv = [*_QUEUED, "create", name, *cloud.flags, f"--node-id={name}",
          f"--accelerator-type={accelerator_type}", f"--runtime-version={version}"]
  if spot:
    argv.append("--spot")
  return argv


def ssh(cloud: Cloud, name: str, command: str, worker: str = "all") -> list[str]:
  return [*_TPU_VM, "ssh", name, *cloud.flags, f"--worker={worker}", f"--command={command}"]


def scp(cloud: Cloud, src: str, name: str, dest: str, worker: str = "all") -> list[str]:
  """Copies the local file `src` to `dest` (relative to the remote home) on the VM's workers."""
  return [*_TPU_VM, "scp", src, f"{name}:{dest}", *cloud.flags, f"--worker={worker}"]


def describe(cloud: Cloud, name: str, fmt: str, queued: bool = False) -> list[str]:
  return [*(_QUEUED if queued else _TPU_VM), "describe", name, *cloud.flags, f"--format={fmt}"]


def delete(cloud: Cloud, name: str, queued: bool = False) -> list[str]:
  """Deletes without prompting; for a queued resource --force also deletes its node."""
  if queued:
    return [*_QUEUED, "delete", name, *cloud.flags, "--force", "--quiet"]
  return [*_TPU_VM, "delete", name, *cloud.flags, "--quiet"]
