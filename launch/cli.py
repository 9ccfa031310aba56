"""wae-launch: run wae-jax on Cloud TPU VMs, from creating them to a running sweep.

  create   TPU VMs, or queued resources that wait for capacity (--queued)
  setup    install wae-jax, jax[tpu] and ray on every worker; write the workers' env file
  train    one wae-train run over a whole (multi-host) slice, every worker the same command
  sweep    a Ray cluster over the VMs (head on the first), then `wae-sweep run` on the head
  status   state of the VMs (or queued resources)
  logs     tail the train or sweep log on a VM
  delete   delete the VMs (or queued resources and their nodes)

Every command takes --project and --zone (default: CLOUDSDK_CORE_PROJECT / CLOUDSDK_COMPUTE_ZONE,
then the active gcloud config) and --dry_run, which prints every command in order and runs none.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence

from wae_jax.cli import common
from wae_jax.executors import ray as ray_executor

from . import gcloud
from . import remote
from .shell import REDACTED, DryShell, LaunchError, Shell

DEFAULT_RUNTIME = "tpu-ubuntu2204-base"  # TPU v2, v3 and v4 VM image


def create(args: argparse.Namespace, cloud: gcloud.Cloud, sh: Shell) -> None:
  accelerator_type = gcloud.check_accelerator(args.accelerator_type)
  if args.queued and args.preemptible:
    raise LaunchError("queued resources cannot be preemptible: use --spot")
  for name in gcloud.vm_names(args.name, args.count):
    if args.queued:
      argv = gcloud.create_queued(cloud, name, accelerator_type=accelerator_type,
                                  version=args.version, spot=args.spot)
    else:
      argv = gcloud.create_vm(cloud, name, accelerator_type=accelerator_type,
                              version=args.version, spot=args.spot,
                              preemptible=args.preemptible)
    sh.run(argv)


def setup(args: argparse.Namespace, cloud: gcloud.Cloud, sh: Shell) -> None:
  names = gcloud.vm_names(args.name, args.count)
  sdist = None
  if args.package.startswith("git+"):
    package = args.package
  elif args.package.endswith(".tar.gz"):
    sdist = _local_file(args.package, "--package")
    package = "./" + os.path.basename(sdist)  # pip's path to the copy in the remote home
  else:
    raise LaunchError(f"--package {args.package!r} is neither a git+ URL nor a .tar.gz sdist")
  variables, hidden = {}, {}
  if args.tfds_data_dir:
    variables["TFDS_DATA_DIR"] = _gcs(args.tfds_data_dir, "--tfds_data_dir")
  for key in args.env:
    if not (key.isidentifier() and key.isascii() and key in os.environ):
      raise LaunchError(f"--env {key!r}: no such variable in this environment")
    variables[key], hidden[key] = os.environ[key], REDACTED
    sh.hide(os.environ[key])
  # Ray (2.59+) authenticates every node and driver of a cluster that `ray start` makes; one
  # token in every VM's env file lets them join one another.
  variables.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
  hidden["RAY_AUTH_TOKEN"] = REDACTED
  variables.update(ray_executor.RAY_ENV)  # A dead worker's trainer saves its stop checkpoint.
  sh.hide(variables["RAY_AUTH_TOKEN"])
  env_text = remote.env_file(variables)
  shown = remote.env_file({**variables, **hidden})
  with sh.local_file(env_text, shown, placeholder="LOCAL_ENV_FILE") as env_path:
    for name in names:
      sh.run(gcloud.scp(cloud, env_path, name, remote.ENV_FILE))
      if sdist:
        sh.run(gcloud.scp(cloud, sdist, name, os.path.basename(sdist)))
      sh.run(gcloud.ssh(cloud, name, remote.install(package)))


def train(args: argparse.Namespace, cloud: gcloud.Cloud, sh: Shell) -> None:
  (name,) = gcloud.vm_names(args.name, 1)
  workdir = _gcs(args.workdir, "--workdir")
  for override in args.overrides:
    if not (override.startswith("--config.") and "=" in override):
      raise LaunchError(f"train passes only --config.FIELD=VALUE overrides to wae-train, "
                        f"got {override!r}")
  config = args.config
  file, arg = _split_spec(config)
  if file.endswith(".py"):
    config = _stage(sh, cloud, name, _local_file(file, "--config"), worker="all") + arg
  argv = ["wae-train", f"--config={config}", f"--workdir={workdir}", *args.overrides,
          "--config.multihost=True"]
  sh.run(gcloud.ssh(cloud, name, remote.detached(argv)))


def sweep(args: argparse.Namespace, cloud: gcloud.Cloud, sh: Shell) -> None:
  head, *others = gcloud.vm_names(args.name, args.count)
  workdir = _gcs(args.workdir, "--workdir")
  file, arg = _split_spec(args.sweep)
  _local_file(file, "sweep")
  head_ip = sh.query(gcloud.describe(cloud, head, gcloud.INTERNAL_IP_FORMAT), "HEAD_IP")
  study = _stage(sh, cloud, head, file, worker="0") + arg
  sh.run(gcloud.ssh(cloud, head, remote.ray_head(), worker="0"))
  for name in others:
    sh.run(gcloud.ssh(cloud, name, remote.ray_join(head_ip)))
  argv = ["wae-sweep", "run", study, f"--workdir={workdir}",
          f"--ray_address={head_ip}:{remote.RAY_PORT}", f"--resources={remote.HOST_RESOURCES}",
          f"--devices={args.devices_per_host}"]
  if args.parallel:
    argv.append(f"--parallel={args.parallel}")
  sh.run(gcloud.ssh(cloud, head, remote.detached(argv), worker="0"))


def status(args: argparse.Namespace, cloud: gcloud.Cloud, sh: Shell) -> None:
  fmt = gcloud.QUEUED_STATUS_FORMAT if args.queued else gcloud.VM_STATUS_FORMAT
  _each(sh, {name: gcloud.describe(cloud, name, fmt, queued=args.queued)
             for name in gcloud.vm_names(args.name, args.count)})


def logs(args: argparse.Namespace, cloud: gcloud.Cloud, sh: Shell) -> None:
  head = gcloud.vm_names(args.name, args.count)[0]
  sh.run(gcloud.ssh(cloud, head, remote.tail(args.follow), worker=str(args.worker)))


def delete(args: argparse.Namespace, cloud: gcloud.Cloud, sh: Shell) -> None:
  _each(sh, {name: gcloud.delete(cloud, name, queued=args.queued)
             for name in gcloud.vm_names(args.name, args.count)})


def _each(sh: Shell, commands: dict[str, list[str]]) -> None:
  """Runs every VM's command even when some fail: one missing VM must not hide the others."""
  failed = [name for name, argv in commands.items() if sh.run(argv, check=False)]
  if failed:
    raise LaunchError(f"failed for {', '.join(failed)} (see gcloud's message above)", code=1)


def _stage(sh: Shell, cloud: gcloud.Cloud, name: str, path: str, worker: str) -> str:
  """Copies a local file into the VM's remote home; returns its remote (relative) path."""
  remote_path = os.path.basename(path)
  sh.run(gcloud.scp(cloud, path, name, remote_path, worker=worker))
  return remote_path


def _split_spec(spec: str) -> tuple[str, str]:
  """'path.py:arg' -> ('path.py', ':arg'); 'name' -> ('name', '')."""
  file, sep, arg = spec.partition(":")
  return file, sep + arg


def _local_file(path: str, what: str) -> str:
  if not os.path.isfile(path):
    raise LaunchError(f"{what}: no such file {path!r}")
  return path


def _gcs(path: str, flag: str) -> str:
  """Every host must see the same files, so shared paths must be on Cloud Storage."""
  if not path.startswith("gs://") or len(path) <= len("gs://"):
    raise LaunchError(f"{flag} must be a gs:// path that every TPU host can reach, "
                      f"got {path!r}")
  return path.rstrip("/")


def _parser() -> argparse.ArgumentParser:
  cloud = argparse.ArgumentParser(add_help=False)
  cloud.add_argument("--project", help="Google Cloud project")
  cloud.add_argument("--zone", help="zone of the TPUs, e.g. us-central1-f for TPU v2")
  cloud.add_argument("--dry_run", action="store_true",
                     help="print every command in order and run none")
  target = argparse.ArgumentParser(add_help=False)
  target.add_argument("--name", default="wae", help="TPU VM name (default: %(default)s)")
  fleet = argparse.ArgumentParser(add_help=False, parents=[target])
  fleet.add_argument("--count", type=int, default=1,
                     help="number of VMs; more than one are named NAME-0 ... NAME-{COUNT-1}")

  parser = common.ArgumentParser(prog="wae-launch", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

  def command(func, parents, help_text):
    sub = commands.add_parser(func.__name__, parents=parents, help=help_text,
                              description=help_text)
    sub.set_defaults(func=func)
    return sub

  p = command(create, [cloud, fleet], "create TPU VMs or queued resources")
  p.add_argument("--accelerator_type", default="v2-8",
                 help="TPU type; v2-8 is one host with 8 cores, v2-32 a 4-host slice "
                      "(default: %(default)s)")
  p.add_argument("--version", default=DEFAULT_RUNTIME,
                 help="TPU runtime version (default: %(default)s, for v2 to v4; "
                      "v5e: v2-alpha-tpuv5-lite)")
  p.add_argument("--queued", action="store_true",
                 help="request queued resources, which wait for capacity, instead of VMs")
  preemption = p.add_mutually_exclusive_group()
  preemption.add_argument("--spot", action="store_true", help="Spot VMs: cheaper, preemptible")
  preemption.add_argument("--preemptible", action="store_true",
                          help="preemptible VMs (not with --queued)")

  p = command(setup, [cloud, fleet], "install wae-jax, jax[tpu] and ray on every worker")
  p.add_argument("--package", required=True,
                 help="git+https://... URL, or a local sdist (.tar.gz, from "
                      "`python -m build --sdist`) copied to the workers")
  p.add_argument("--tfds_data_dir", help="gs:// directory exported as TFDS_DATA_DIR")
  p.add_argument("--env", action="append", default=[], metavar="NAME",
                 help="also export this local environment variable on the workers "
                      "(repeatable); its value is never printed")

  p = command(train, [cloud, target],
              "run wae-train over a whole slice; extra --config.FIELD=VALUE flags go to it")
  p.add_argument("--config", required=True,
                 help="config name[:arg] (e.g. celeba_wae_mmd) or a local .py config file")
  p.add_argument("--workdir", required=True, help="gs:// trial directory")

  p = command(sweep, [cloud, fleet], "start a Ray cluster over the VMs and run wae-sweep on it")
  p.add_argument("sweep", help="local sweep file and optional argument, path.py[:arg]; "
                             "the file is copied to the head")
  p.add_argument("--workdir", required=True, help="gs:// directory holding the trial directories")
  p.add_argument("--parallel", type=int,
                 help="trials at once (default: wae-sweep's, one per host)")
  p.add_argument("--devices_per_host", type=int, default=8,
                 help="JAX devices of one VM, which each trial trains on: 8 on v2-8 and "
                      "v3-8, 4 on v4-8 (default: %(default)s); every trial's batch must "
                      "divide over them, checked before anything starts")

  for func, help_text in ((status, "show the state of the VMs"),
                          (delete, "delete the VMs")):
    p = command(func, [cloud, fleet], help_text)
    p.add_argument("--queued", action="store_true",
                   help="the VMs came from queued resources (delete removes both)")

  p = command(logs, [cloud, fleet], "tail the train or sweep log on the first VM")
  p.add_argument("--worker", type=int, default=0,
                 help="worker of a multi-host slice (default: 0)")
  p.add_argument("--follow", action="store_true", help="keep following the log")
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  parser = _parser()
  args, extra = parser.parse_known_args(argv)
  if args.command == "train":
    args.overrides = extra
  elif extra:
    parser.error(f"unrecognized arguments: {' '.join(extra)}")
  sh = DryShell() if args.dry_run else Shell()
  try:
    if not args.dry_run:
      gcloud.require_gcloud()
    args.func(args, gcloud.resolve_cloud(args.project, args.zone), sh)
  except LaunchError as e:
    print(f"wae-launch: error: {sh.redact(str(e))}", file=sys.stderr)
    return e.code
  return 0


if __name__ == "__main__":
  sys.exit(main())
