"""wae-launch: dry runs checked command by command, and real runs against a stub gcloud."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from wae_jax.launch import cli
from wae_jax.launch.shell import join

CLOUD = ["--project", "proj", "--zone", "us-central1-f"]
WHERE = ["--project=proj", "--zone=us-central1-f"]
TPU_VM = ["gcloud", "compute", "tpus", "tpu-vm"]
QUEUED = ["gcloud", "compute", "tpus", "queued-resources"]
SOURCE_ENV = [".", "~/.wae-env", "&&"]

# Records its argv (and the contents of files it is asked to scp) as one JSON line, then answers
# like gcloud: `config get-value` from GCLOUD_STUB_<PROPERTY>, `describe` with an IP address.
STUB = """#!{python}
import json, os, sys
argv = sys.argv[1:]
files = {{a: open(a).read() for a in argv[4:5] if "scp" in argv and os.path.isfile(a)}}
with open(os.environ["GCLOUD_STUB_LOG"], "a") as log:
    log.write(json.dumps({{"argv": argv, "files": files}}) + "\\n")
if os.environ.get("GCLOUD_STUB_FAIL", "-") in argv:
    sys.exit("ERROR: (gcloud) NOT_FOUND: " + os.environ["GCLOUD_STUB_FAIL"])
if argv[:2] == ["config", "get-value"]:
    value = os.environ.get("GCLOUD_STUB_" + argv[2].split("/")[-1].upper())
    print(value) if value else print("(unset)", file=sys.stderr)
elif "describe" in argv:
    print("10.128.0.7")
"""


@pytest.fixture(autouse=True)
def _no_cloud_env(monkeypatch):
  monkeypatch.delenv("CLOUDSDK_CORE_PROJECT", raising=False)
  monkeypatch.delenv("CLOUDSDK_COMPUTE_ZONE", raising=False)


@pytest.fixture
def stub(tmp_path, monkeypatch):
  """A fake gcloud first on PATH; returns a function giving the calls it recorded."""
  bin_dir, log = tmp_path / "bin", tmp_path / "gcloud.log"
  bin_dir.mkdir()
  gcloud = bin_dir / "gcloud"
  gcloud.write_text(STUB.format(python=sys.executable))
  gcloud.chmod(0o755)
  log.touch()
  monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
  monkeypatch.setenv("GCLOUD_STUB_LOG", str(log))
  monkeypatch.setenv("GCLOUD_STUB_PROJECT", "proj")
  monkeypatch.setenv("GCLOUD_STUB_ZONE", "us-central1-f")
  return lambda: [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def no_gcloud(tmp_path, monkeypatch):
  empty = tmp_path / "empty"
  empty.mkdir()
  monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def study(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "sweeps").mkdir()
  (tmp_path / "sweeps" / "bigwae.py").write_text("# a study\n")
  return "sweeps/bigwae.py"


def dry_run(capsys, *argv: str) -> list[list[str]]:
  """The commands a dry run prints, each split back into its argv (comment lines dropped)."""
  assert cli.main([*argv, *CLOUD, "--dry_run"]) == 0
  lines = capsys.readouterr().out.splitlines()
  return [shlex.split(line) for line in lines if not line.startswith("#")]


def remote_words(argv: list[str]) -> list[str]:
  """The words of an ssh command's --command."""
  (command,) = [a for a in argv if a.startswith("--command=")]
  return shlex.split(command.removeprefix("--command="))


def detached_job(argv: list[str]) -> list[str]:
  """The argv of the job that an ssh command starts detached, logging to ~/wae.log."""
  words = remote_words(argv)
  assert words[:6] == [*SOURCE_ENV, "{", "setsid", "nohup"]
  assert words[-7:] == [">", "~/wae.log", "2>&1", "<", "/dev/null", "&", "}"]
  return words[6:-7]


def ssh(name: str, worker: str, command: str) -> list[str]:
  return [*TPU_VM, "ssh", name, *WHERE, f"--worker={worker}", f"--command={command}"]


def error_line(capsys) -> str:
  """The one line of stderr that is not a `+ command` echo."""
  (line,) = [l for l in capsys.readouterr().err.splitlines() if not l.startswith("+ ")]
  return line


# ---------------------------------------------------------------- dry runs, command by command

def test_create_one_vm(capsys):
  assert dry_run(capsys, "create") == [
      [*TPU_VM, "create", "wae", *WHERE, "--accelerator-type=v2-8",
       "--version=tpu-ubuntu2204-base"]]


def test_create_pod_slice_preemptible(capsys):
  assert dry_run(capsys, "create", "--name", "pod", "--accelerator_type", "v2-32",
                 "--preemptible") == [
      [*TPU_VM, "create", "pod", *WHERE, "--accelerator-type=v2-32",
       "--version=tpu-ubuntu2204-base", "--preemptible"]]


def test_create_queued_resources_with_spot(capsys):
  assert dry_run(capsys, "create", "--queued", "--spot", "--count", "2") == [
      [*QUEUED, "create", f"wae-{i}", *WHERE, f"--node-id=wae-{i}",
       "--accelerator-type=v2-8", "--runtime-version=tpu-ubuntu2204-base", "--spot"]
      for i in range(2)]


def test_sweep_on_four_vms(capsys, study):
  commands = dry_run(capsys, "sweep", study, "--count", "4", "--workdir", "gs://bkt/bigwae/",
                     "--parallel", "4")
  ray_start = ". ~/.wae-env && ray stop --force && ray start {} '--resources={{\"tpu_host\":1}}'"
  ray_join = ray_start.format("--address=HEAD_IP:6379")
  assert commands[:6] == [
      [*TPU_VM, "describe", "wae-0", *WHERE, "--format=value(networkEndpoints[0].ipAddress)"],
      [*TPU_VM, "scp", "sweeps/bigwae.py", "wae-0:bigwae.py", *WHERE, "--worker=0"],
      ssh("wae-0", "0", ray_start.format("--head --port=6379")),
      ssh("wae-1", "all", ray_join),
      ssh("wae-2", "all", ray_join),
      ssh("wae-3", "all", ray_join),
  ]
  assert remote_words(commands[3])[-1] == '--resources={"tpu_host":1}'
  (run,) = commands[6:]
  assert run[:9] == ssh("wae-0", "0", "")[:9]
  assert detached_job(run) == [
      "wae-sweep", "run", "bigwae.py", "--workdir=gs://bkt/bigwae", "--ray_address=HEAD_IP:6379",
      '--resources={"tpu_host":1}', "--devices=8", "--parallel=4"]


def test_sweep_on_one_vm_keeps_the_sweep_argument(capsys, study):
  commands = dry_run(capsys, "sweep", f"{study}:debug", "--workdir", "gs://bkt/s",
                     "--devices_per_host", "4")
  assert [c[4] for c in commands] == ["describe", "scp", "ssh", "ssh"]
  assert commands[1][5:7] == ["sweeps/bigwae.py", "wae:bigwae.py"]
  assert detached_job(commands[-1])[:3] == ["wae-sweep", "run", "bigwae.py:debug"]
  assert "--devices=4" in detached_job(commands[-1])
  assert not any(w.startswith("--parallel") for w in detached_job(commands[-1]))


def test_train_over_a_pod_slice(capsys):
  note = "it's a \"quoted\" $note"
  (command,) = dry_run(capsys, "train", "--name", "pod", "--config", "celeba_wae_mmd:debug",
                       "--workdir", "gs://bkt/run1", "--config.num_steps=100",
                       f"--config.note={note}")
  assert command[:9] == [*TPU_VM, "ssh", "pod", *WHERE, "--worker=all"]
  assert detached_job(command) == [
      "wae-train", "--config=celeba_wae_mmd:debug", "--workdir=gs://bkt/run1",
      "--config.num_steps=100", f"--config.note={note}", "--config.multihost=True"]


def test_train_copies_a_config_file_to_every_worker(capsys, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "my_config.py").write_text("")
  scp, run = dry_run(capsys, "train", "--name", "pod", "--config", "my_config.py:big",
                     "--workdir", "gs://bkt/r")
  assert scp == [*TPU_VM, "scp", "my_config.py", "pod:my_config.py", *WHERE, "--worker=all"]
  assert detached_job(run)[1] == "--config=my_config.py:big"


def test_setup_from_sdist_with_a_forwarded_secret(capsys, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "wae_jax-0.1.0.tar.gz").write_bytes(b"")
  monkeypatch.setenv("MY_TOKEN", "s3cr3t-value")
  assert cli.main(["setup", "--count", "2", "--package", "wae_jax-0.1.0.tar.gz",
                   "--tfds_data_dir", "gs://bkt/tfds", "--env", "MY_TOKEN", *CLOUD,
                   "--dry_run"]) == 0
  out, err = capsys.readouterr()
  assert "s3cr3t" not in out + err
  comments = [line for line in out.splitlines() if line.startswith("#")]
  assert "#   export TFDS_DATA_DIR=gs://bkt/tfds" in comments
  assert "#   export MY_TOKEN='<redacted>'" in comments
  commands = [shlex.split(line) for line in out.splitlines() if not line.startswith("#")]
  install = "python3 -m pip install --upgrade 'jax[tpu]' ray tensorflow-cpu google-cloud-storage ./wae_jax-0.1.0.tar.gz"
  assert commands == [command for name in ("wae-0", "wae-1") for command in (
      [*TPU_VM, "scp", "LOCAL_ENV_FILE", f"{name}:.wae-env", *WHERE, "--worker=all"],
      [*TPU_VM, "scp", "wae_jax-0.1.0.tar.gz", f"{name}:wae_jax-0.1.0.tar.gz", *WHERE,
       "--worker=all"],
      ssh(name, "all", install),
  )]


def test_setup_from_git_redacts_url_credentials(capsys):
  commands = dry_run(capsys, "setup", "--package",
                     "git+https://me:ghp_tok@github.com/me/wae-jax.git@main")
  assert remote_words(commands[-1])[-1] == "git+https://<redacted>@github.com/me/wae-jax.git@main"


def test_status_logs_delete(capsys):
  describe = [*TPU_VM, "describe", "wae", *WHERE,
              "--format=value(name.basename(),acceleratorType,state,health)"]
  assert dry_run(capsys, "status") == [describe]
  assert dry_run(capsys, "logs", "--worker", "3", "--follow") == [
      ssh("wae", "3", "tail -n 100 -F ~/wae.log")]
  assert dry_run(capsys, "delete", "--count", "2") == [
      [*TPU_VM, "delete", f"wae-{i}", *WHERE, "--quiet"] for i in range(2)]
  assert dry_run(capsys, "delete", "--queued") == [
      [*QUEUED, "delete", "wae", *WHERE, "--force", "--quiet"]]


@pytest.mark.parametrize("argv, message", [
    (["create", "--name", "My_TPU"], "--name 'My_TPU' is not a valid TPU name"),
    (["create", "--count", "0"], "--count must be at least 1"),
    (["create", "--accelerator_type", "tpu8"], "is not a TPU type"),
    (["create", "--queued", "--preemptible"], "queued resources cannot be preemptible"),
    (["train", "--config", "c", "--workdir", "/tmp/w"], "--workdir must be a gs:// path"),
    (["train", "--config", "c", "--workdir", "gs://b/w", "--config.lr", "1"],
     "only --config.FIELD=VALUE overrides"),
    (["train", "--config", "missing.py", "--workdir", "gs://b/w"], "no such file"),
    (["sweep", "missing.py:debug", "--workdir", "gs://b/w"], "sweep: no such file 'missing.py'"),
    (["setup", "--package", "wae-jax"], "neither a git+ URL nor a .tar.gz sdist"),
    (["setup", "--package", "git+https://x/y.git", "--env", "NOT_SET_ANYWHERE"],
     "no such variable"),
])
def test_bad_input_is_a_one_line_error(capsys, argv, message):
  assert cli.main([*argv, *CLOUD, "--dry_run"]) == 2
  captured = capsys.readouterr()
  assert captured.out == ""
  assert captured.err.startswith("wae-launch: error: ") and message in captured.err
  assert captured.err.count("\n") == 1


def test_printed_commands_split_back_into_their_argv():
  for argv in (["a b", "it's", 'say "hi"', "$HOME", "x'$y", "", "--c=. ~/f && g"],
               ["--command=pip install 'jax[tpu]'", "back\\slash'", "'{\\\"k\\\":1}' \\n"]):
    assert shlex.split(join(argv)) == argv


# ------------------------------------------------------------------- real runs, stub gcloud

def test_sweep_runs_what_its_dry_run_prints(capsys, stub, study):
  argv = ["sweep", study, "--count", "3", "--workdir", "gs://bkt/bigwae"]
  assert cli.main(argv) == 0  # project and zone come from `gcloud config get-value`
  calls = [c["argv"] for c in stub()]
  assert calls[:2] == [["config", "get-value", "project"],
                       ["config", "get-value", "compute/zone"]]
  assert "+ gcloud compute tpus tpu-vm describe wae-0" in capsys.readouterr().err
  printed = [[word.replace("HEAD_IP", "10.128.0.7") for word in c[1:]]
             for c in dry_run(capsys, *argv)]
  assert calls[2:] == printed
  assert "--ray_address=10.128.0.7:6379" in detached_job(["gcloud", *calls[-1]])


def test_dry_run_runs_nothing(capsys, stub, study):
  dry_run(capsys, "sweep", study, "--count", "2", "--workdir", "gs://bkt/s")
  dry_run(capsys, "create", "--count", "2")
  assert stub() == []


def test_setup_uploads_the_env_file_and_never_prints_the_secret(capsys, stub, tmp_path,
                                                                monkeypatch):
  secret = "tok'en $with \"quotes\""
  monkeypatch.setenv("MY_TOKEN", secret)
  assert cli.main(["setup", "--package", "git+https://github.com/me/wae-jax.git",
                   "--tfds_data_dir", "gs://bkt/tfds", "--env", "MY_TOKEN", *CLOUD]) == 0
  out, err = capsys.readouterr()
  assert "tok'en" not in out + err
  (upload, install) = stub()
  assert upload["argv"][:3] == ["compute", "tpus", "tpu-vm"] and upload["argv"][3] == "scp"
  local_path, env_text = next(iter(upload["files"].items()))
  assert not os.path.exists(local_path)  # the private temporary file is gone
  env_copy = tmp_path / "env"
  env_copy.write_text(env_text)
  sourced = subprocess.run(["bash", "-c", f'. {env_copy} && printf "%s\\n%s\\n%s\\n%s" '
                            '"$MY_TOKEN" "$TFDS_DATA_DIR" "$RAY_AUTH_MODE" "$RAY_AUTH_TOKEN"'],
                           capture_output=True, text=True, check=True).stdout
  my_token, tfds_dir, ray_mode, ray_token = sourced.split("\n")
  assert (my_token, tfds_dir, ray_mode) == (secret, "gs://bkt/tfds", "token")
  assert len(ray_token) == 64 and ray_token not in out + err  # One cluster token, unprinted.
  assert install["argv"][3] == "ssh"


def test_a_failed_command_stops_the_launch(capsys, stub, monkeypatch):
  monkeypatch.setenv("GCLOUD_STUB_FAIL", "wae-1")
  assert cli.main(["create", "--count", "3", *CLOUD]) == 1
  assert [c["argv"][4] for c in stub()] == ["wae-0", "wae-1"]
  assert error_line(capsys).startswith("wae-launch: error: command failed (exit 1)")


def test_delete_tries_every_vm(capsys, stub, monkeypatch):
  monkeypatch.setenv("GCLOUD_STUB_FAIL", "wae-1")
  assert cli.main(["delete", "--count", "3", *CLOUD]) == 1
  assert [c["argv"][4] for c in stub()] == ["wae-0", "wae-1", "wae-2"]
  assert error_line(capsys) == ("wae-launch: error: failed for wae-1 "
                                "(see gcloud's message above)")


# --------------------------------------------------------- missing gcloud, project or zone

def test_missing_gcloud(capsys, no_gcloud):
  assert cli.main(["create", *CLOUD]) == 2
  assert error_line(capsys).startswith("wae-launch: error: gcloud not found on PATH")


def test_dry_run_needs_no_gcloud_when_project_and_zone_are_given(capsys, no_gcloud):
  assert len(dry_run(capsys, "create")) == 1


def test_missing_project(capsys, no_gcloud):
  assert cli.main(["create", "--zone", "us-central1-f", "--dry_run"]) == 2
  assert error_line(capsys) == ("wae-launch: error: no project set: pass --project, set "
                                "CLOUDSDK_CORE_PROJECT, or run `gcloud config set project VALUE`")


def test_missing_zone_in_gcloud_config(capsys, stub, monkeypatch):
  monkeypatch.delenv("GCLOUD_STUB_ZONE")
  assert cli.main(["status"]) == 2
  assert error_line(capsys) == ("wae-launch: error: no zone set: pass --zone, set "
                                "CLOUDSDK_COMPUTE_ZONE, or run "
                                "`gcloud config set compute/zone VALUE`")
  assert [c["argv"] for c in stub()] == [["config", "get-value", "project"],
                                         ["config", "get-value", "compute/zone"]]


def test_environment_settles_project_and_zone(capsys, stub, monkeypatch):
  monkeypatch.setenv("CLOUDSDK_CORE_PROJECT", "env-proj")
  monkeypatch.setenv("CLOUDSDK_COMPUTE_ZONE", "europe-west4-a")
  assert cli.main(["status"]) == 0
  assert [c["argv"] for c in stub()] == [
      ["compute", "tpus", "tpu-vm", "describe", "wae", "--project=env-proj",
       "--zone=europe-west4-a", "--format=value(name.basename(),acceleratorType,state,health)"]]
