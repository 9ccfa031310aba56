"""The docs stay true to the code: the tutorial's blocks run as written, the design page names
every module, the exit-code table is the trainer's, and the first command's console carries
no orbax registry warning."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).parent.parent
DOCS = REPO / "docs"
PACKAGE = REPO / "wae_jax"


def code_blocks(page: pathlib.Path) -> list[tuple[str, str]]:
  """(language, code) of each `python` or `bash` fenced block of a MyST page, in order."""
  return re.findall(r"^```(python|bash)\n(.*?)^```", page.read_text(), re.M | re.S)


def as_script(blocks: list[tuple[str, str]]) -> str:
  """One Python script: the python blocks as written, the bash blocks through bash, so the
  python blocks share one session as on the page; any failing block fails the script."""
  lines = ["import subprocess"]
  for language, code in blocks:
    lines.append(code if language == "python" else
                 f"subprocess.run({code!r}, shell=True, check=True, executable='/bin/bash')")
  return "\n".join(lines)


@pytest.mark.slow
def test_tutorial_runs_as_written(tmp_path):
  blocks = code_blocks(DOCS / "tutorial.md")
  assert [l for l, _ in blocks].count("bash") >= 3 and ("python", "") not in blocks
  (tmp_path / "sweeps").symlink_to(REPO / "sweeps")
  script = tmp_path / "tutorial.py"
  script.write_text(as_script(blocks))
  env = dict(os.environ, PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}"
             f"{os.environ['PATH']}")
  env.pop("JAX_NUM_CPU_DEVICES")  # A reader's machine: its own devices, not the tests' 8.
  out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
  assert out.returncode == 0, out.stdout[-4000:]
  assert "Type handler registry" not in out.stdout  # orbax's, on the first command.
  assert "240 wae_mmd" in out.stdout
  assert (tmp_path / "runs" / "quick_curves.png").stat().st_size > 0
  # The page says four trials stop at rung 100 and each algorithm's best reaches 900.
  steps = re.findall(r"^\s*\w{12}\s+wae_\w+\s+\S+\s+\S+\s+(\d+)\s", out.stdout, re.M)
  assert sorted(steps) == ["100"] * 4 + ["900"] * 2, out.stdout[-3000:]


def test_first_command_prints_no_orbax_registry_warning():
  """The trainer's own array handler replaces orbax's default; orbax's warning about it is
  noise a user cannot act on, while other warnings still show."""
  code = ("from absl import logging\n"
          "from wae_jax import state\n"
          "state._use_min_replica_slice()\n"
          "logging.warning('still shown')\n")
  out = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True,
                       check=True, timeout=300)
  assert "still shown" in out.stderr
  assert "Type handler registry" not in out.stderr + out.stdout


def test_design_page_names_every_module():
  page = (DOCS / "design.md").read_text()
  missing = [p.name if p.is_file() else p.name + "/" for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()]
  missing = [m for m in missing if f"`{m}`" not in page]
  assert not missing, f"docs/design.md's module table lacks {missing}"


def test_exit_code_table_is_the_trainers():
  from wae_jax import workdir  # pylint: disable=import-outside-toplevel
  page = (DOCS / "reliability.md").read_text()
  table = {int(code) for code in re.findall(r"^\| `wae-train` \| (\d+) \|", page, re.M)}
  assert table == {v for k, v in vars(workdir).items() if k.startswith("EXIT_")}
