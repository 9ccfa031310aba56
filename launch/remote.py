"""Shell text that runs on the TPU VMs (the `--command` of `gcloud ... tpu-vm ssh`).

The fixed text is written here; every value that comes from the user goes through shlex, so a
path or override with spaces or quotes reaches the remote program as one argument.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence

# Both live in the remote home directory, where ssh commands start and scp puts relative paths.
ENV_FILE = ".wae-env"  # sourced by every command below; written by `wae-launch setup`
LOG_FILE = "wae.log"  # stdout and stderr of the detached train or sweep job
RAY_PORT = 6379
# Installed next to wae-jax on every worker: setup.py's `tf` extra (TensorFlow reads tfds
# sources and the gs:// paths every TPU run uses; google-cloud-storage locks gs:// dirs).
PIP_PACKAGES = ("jax[tpu]", "ray", "tensorflow-cpu", "google-cloud-storage")
# Every Ray node (one a TPU host) offers one unit; every trial asks for one: a trial per host.
HOST_RESOURCES = json.dumps({"tpu_host": 1}, separators=(",", ":"))

_SOURCE_ENV = f". ~/{ENV_FILE}"


def env_file(variables: Mapping[str, str]) -> str:
  """The workers' environment: pip's user bin directory on PATH, then `variables`."""
  lines = ['export PATH="$HOME/.local/bin:$PATH"']
  lines += [f"export {key}={shlex.quote(value)}" for key, value in variables.items()]
  return "\n".join(lines) + "\n"


def install(package: str) -> str:
  return shlex.join(["python3", "-m", "pip", "install", "--upgrade", *PIP_PACKAGES, package])


def ray_head() -> str:
  """(Re)starts the Ray head; the workers and trials it starts inherit the env file."""
  return _ray_start(["--head", f"--port={RAY_PORT}"])


def ray_join(head_ip: str) -> str:
  return _ray_start([f"--address={head_ip}:{RAY_PORT}"])


def _ray_start(flags: list[str]) -> str:
  start = shlex.join(["ray", "start", *flags, f"--resources={HOST_RESOURCES}"])
  return f"{_SOURCE_ENV} && ray stop --force && {start}"


def detached(argv: Sequence[str]) -> str:
  """Starts argv in its own session with all streams redirected, so it outlives the ssh."""
  job = f"setsid nohup {shlex.join(argv)} > ~/{LOG_FILE} 2>&1 < /dev/null &"
  return f"{_SOURCE_ENV} && {{ {job} }}"


def tail(follow: bool) -> str:
  return f"tail -n 100 {'-F ' if follow else ''}~/{LOG_FILE}"
