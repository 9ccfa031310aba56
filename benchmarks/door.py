r"""The door: every bad value and damaged path of issue 30, each run as a new user would.

  python benchmarks/door.py [--only SUBSTRING] [--keep]

Each case runs one command in a fresh temporary directory (after the set-up it needs: a
file where the trial directory goes, a trained trial with a damaged file, ...) and the
script prints a markdown table: case | before (the issue's words) | command | first line of
output | exit code | files written (by the command, not its set-up). A refused value
should read as one line naming the field, exit 2 and write nothing. Commands are tiny
(2 steps, width 1/64), so the whole table takes a couple of minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

BIN = os.path.dirname(sys.executable)
TINY = ("--config=mnist_wae_mmd:debug --config.num_steps=2 --config.model.width=0.015625 "
        "--config.batch_size=32 --config.eval.num_samples=64")
TRAIN = f"{BIN}/wae-train {TINY}"
SWEEP = """
def get_hyper(h):
  return h.product([
      h.fixed("config", "mnist_wae_mmd:debug"), h.fixed("config.num_steps", 2),
      h.fixed("config.model.width", 0.015625), h.fixed("config.batch_size", 32),
      h.fixed("config.eval.num_samples", 64), h.sweep("config.seed", [0]),
  ])
"""
SWEEP_RUN = f"{BIN}/wae-sweep run sweep.py --workdir=w --executor=local"
# A trained trial in t/, a sweep with one trial in w/: what the damage cases start from.
TRAINED = f"{TRAIN} --workdir=t >/dev/null 2>&1"
SWEPT = f"cat > sweep.py <<'EOF'\n{SWEEP}\nEOF\n{SWEEP_RUN} >/dev/null 2>&1"
LOAD = f"{sys.executable} -c 'import wae_jax; print(wae_jax.load(\"t\").sample(1).shape)'"
NEWEST_CKPT = "t/checkpoints/$(ls t/checkpoints | sort -n | tail -1)"
OLDER = f"{TRAIN.replace('num_steps=2', 'num_steps=1')} --workdir=t >/dev/null 2>&1 && {TRAINED}"
CORRUPT = (f"{OLDER} && for f in $(find {NEWEST_CKPT}/default -type f -path '*/d/*'); "
           "do head -c 10 $f > $f.x && mv $f.x $f; done")

# (case, before, set-up, command)
CASES = [
    ("decay factor 0", "traceback, failed trial", "",
     f"{TRAIN} --workdir=t --config.optim.decay_factors='(0.0, 5.0)'"),
    ("decay factor < 0", "traceback, failed trial", "",
     f"{TRAIN} --workdir=t --config.optim.decay_factors='(-2.0, 5.0)'"),
    ("seed=-1", "traceback, failed trial", "", f"{TRAIN} --workdir=t --config.seed=-1"),
    ("model.width=inf", "traceback, failed trial", "",
     f"{TRAIN} --workdir=t --config.model.width=inf"),
    ("eval.num_samples=0", "found only after training", "",
     f"{TRAIN} --workdir=t --config.eval.num_samples=0"),
    ("eval.num_samples=-5", "found only after training", "",
     f"{TRAIN} --workdir=t --config.eval.num_samples=-5"),
    ("eval batch too large", "73 GiB allocation after training", "",
     f"{TRAIN} --workdir=t --config.eval.batch_size=50000000"),
    ("net too large", "out of memory at the start", "",
     f"{TRAIN} --workdir=t --config.model.width=64"),
    ("--workdir under a file", "traceback", "touch f", f"{TRAIN} --workdir=f/t"),
    (".lock a directory", "traceback", "mkdir -p t/.lock", f"{TRAIN} --workdir=t"),
    ("stale lock, pid reused", "blocked until .lock is deleted",
     "mkdir t && echo '{\"role\": \"trainer\", \"host\": \"'$(hostname)'\", \"pid\": 1, "
     "\"since\": 0, \"heartbeat\": 0}' > t/.lock", f"{TRAIN} --workdir=t"),
    ("lam=inf", "exit 0, diverged at step 1", "", f"{TRAIN} --workdir=t --config.lam=inf"),
    ("optim.lr=inf", "exit 0, diverged at step 1", "",
     f"{TRAIN} --workdir=t --config.optim.lr=inf"),
    ("prior_var=inf", "exit 0, diverged at step 1", "",
     f"{TRAIN} --workdir=t --config.prior_var=inf"),
    ("recon.scale=inf", "exit 0, diverged at step 1", "",
     f"{TRAIN} --workdir=t --config.recon.scale=inf"),
    ("mmd.scales=inf", "exit 0, diverged at step 1", "",
     f"{TRAIN} --workdir=t --config.mmd.scales='(1.0, 1e999)'"),
    ("batch > training set", "refused after writing", "",
     f"{TRAIN} --workdir=t --config.batch_size=4096"),
    ("held-out leaves too little", "refused after writing", "",
     f"{TRAIN} --workdir=t --config.data.heldout=4990"),
    ("sweep.json malformed (run)", "traceback", "mkdir w && echo '[1, 2]' > w/sweep.json",
     f"cat > sweep.py <<'EOF'\n{SWEEP}\nEOF\n{SWEEP_RUN}"),
    ("sweep.json malformed (results)", "traceback",
     "mkdir w && echo '{\"sweeps\": 1, \"trials\": 2}' > w/sweep.json",
     f"{BIN}/wae-results w"),
    ("another sweep's sweep.json", "misleading --metric error", SWEPT +
     " && python -c \"import json; p='w/sweep.json'; l=json.load(open(p)); "
     "l['trials']={'other-0': {'config': 'x'}}; l['sweeps']={'x': ['other-0']}; "
     "json.dump(l, open(p, 'w'))\"", f"{BIN}/wae-results w"),
    ("load: corrupt newest checkpoint", "61-line TensorStore message, no fallback", CORRUPT, LOAD),
    ("load: checkpoint file missing", "34 asyncio tracebacks",
     f"{OLDER} && rm -r {NEWEST_CKPT}/default/d", LOAD),
    ("resume: corrupt newest checkpoint", "dozens of 'Event loop is closed' tracebacks",
     CORRUPT + " && python -c \"import json; p='t/metrics.json'; m=json.load(open(p)); "
     "m['status']='running'; json.dump(m, open(p, 'w'))\"",
     f"{TRAIN} --workdir=t --config.num_steps=3"),
    ("config.json a directory", "(paths, item 7)", f"{TRAINED} && rm t/config.json && "
     "mkdir t/config.json", f"{TRAIN} --workdir=t --config.num_steps=3"),
    ("metrics.json a directory", "(paths, item 7)", f"{TRAINED} && rm t/metrics.json && "
     "mkdir t/metrics.json", f"{TRAIN} --workdir=t --config.num_steps=3"),
    ("metrics.json of another shape", "(paths, item 7)", f"{TRAINED} && echo '[1]' > "
     "t/metrics.json", f"{TRAIN} --workdir=t --config.num_steps=3"),
    ("checkpoints/ a file", "(paths, item 7)", "mkdir t && touch t/checkpoints",
     f"{TRAIN} --workdir=t"),
    (".lock of another shape", "(paths, item 7)",
     "mkdir t && echo '{\"pid\": \"x\", \"heartbeat\": \"y\"}' > t/.lock",
     f"{TRAIN} --workdir=t"),
    ("sweep.json a directory (run)", "(paths, item 7)", "mkdir -p w/sweep.json",
     f"cat > sweep.py <<'EOF'\n{SWEEP}\nEOF\n{SWEEP_RUN}"),
    ("sweep.json a directory (results)", "(paths, item 7)", SWEPT + " && mv w/sweep.json "
     "w/s && mkdir w/sweep.json", f"{BIN}/wae-results w"),

    ("config.json damaged (sweep)", "resumable trial made failed", SWEPT +
     " && d=$(ls -d w/*/ | head -1) && python -c \"import json; p='$d/metrics.json'; "
     "m=json.load(open(p)); m['status']='running'; json.dump(m, open(p, 'w'))\" && "
     "echo '{broken' > $d/config.json",
     f"{SWEEP_RUN} >/dev/null 2>&1; cat w/*/metrics.json | python -c \"import json,sys; "
     "print('trial status:', json.load(sys.stdin)['status'])\""),
    ("config.json and metrics.json damaged (sweep)", "resumable trial made failed", SWEPT +
     " && d=$(ls -d w/*/ | head -1) && echo '{broken' > $d/config.json && "
     "echo '{broken' > $d/metrics.json",
     f"{SWEEP_RUN} >/dev/null 2>&1; {SWEEP_RUN} 2>&1 | grep -m1 damaged"),
]


def files(root: str) -> set[str]:
  out = set()
  for d, _, names in os.walk(root):
    out |= {os.path.relpath(os.path.join(d, n), root) for n in names}
  return out


def run(case: tuple[str, str, str, str], keep: bool) -> tuple[str, int, list[str]]:
  _, _, setup, command = case
  tmp = tempfile.mkdtemp(prefix="door-")
  try:
    if setup:
      subprocess.run(["bash", "-c", setup], cwd=tmp, check=True)
    before = files(tmp)
    p = subprocess.run(["bash", "-c", command], cwd=tmp, capture_output=True, text=True,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=600)
    lines = [l for l in (p.stderr + p.stdout).splitlines() if l.strip()]
    first = lines[0] if lines else ""
    if any("Traceback" in l or "Event loop is closed" in l for l in lines):
      first += f" (and {len(lines) - 1} more lines, with a traceback)"
    written = sorted(files(tmp) - before)
    return first, p.returncode, written
  finally:
    if keep:
      print(f"kept {tmp}", file=sys.stderr)
    else:
      shutil.rmtree(tmp, ignore_errors=True)


def cell(text: str, limit: int = 240) -> str:
  text = text.replace("|", "\\|").replace("\n", " ")
  return text if len(text) <= limit else text[:limit - 1] + "…"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--only", help="run only cases whose name contains this")
  parser.add_argument("--keep", action="store_true", help="keep each case's directory")
  args = parser.parse_args()
  print("| case | before | command | first line of output | exit | files written |")
  print("|---|---|---|---|---|---|")
  for case in CASES:
    if args.only and args.only not in case[0]:
      continue
    first, rc, written = run(case, args.keep)
    shown = textwrap.shorten(case[3].replace(BIN + "/", "").replace(TINY, "TINY")
                             .split("\n")[-1], 110, placeholder="…")
    where = ", ".join(written[:3]) + (f" (+{len(written) - 3})" if len(written) > 3 else "")
    print(f"| {case[0]} | {case[1]} | `{cell(shown)}` | {cell(first)} | {rc} | "
          f"{where or 'none'} |", flush=True)


if __name__ == "__main__":
  main()
