r"""Where a training step's time goes on this backend: XLA's own ops, by kind.

  python benchmarks/profile_step.py [--net paper] [--steps 3] [--top 12]

Traces --steps steps of one trial, one step a dispatch (what CPU runs use; `pack.setup`),
with `jax.profiler` and reads the op events of the trace: each is one HLO instruction of the
compiled program, which the compiled HLO text maps to a kind. `conv/matmul` is any op or
fusion that contains a convolution or dot (the work the FLOP count is about); `reduction`
fusions hold a reduce (BatchNorm statistics, losses, MMD sums, Adam has none); `elementwise`
is the other fusions (BatchNorm's normalisation, ReLU, Adam's update); `copy` transposes and
copies (layout changes); `data movement` slices, concatenates, pads, gathers and
dynamic-update-slices. Op time is summed over the threads that ran it, so shares are of
op time, and `wall_ms` says what the steps took. One JSON line for the kinds, one per top op.
"""

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from wae_jax import data
from wae_jax import feed as feed_lib
from wae_jax import pack
from wae_jax import state as state_lib
from train_step import NETS, configs_for

MATMUL = {"convolution", "dot"}
MOVES = {"slice", "dynamic-slice", "dynamic-update-slice", "concatenate", "pad", "gather",
         "scatter", "broadcast", "reshape", "bitcast", "iota", "reverse"}
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*? ([\w\-]+)\(")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")


def op_kinds(hlo: str) -> dict[str, str]:
  """Instruction name -> kind, for every instruction of a compiled module's HLO text."""
  computations, current, opcode_of, calls = collections.defaultdict(set), None, {}, {}
  for line in hlo.splitlines():
    if line and not line.startswith(" ") and "{" in line:
      current = line.split()[0].lstrip("%") if not line.startswith("ENTRY") else "ENTRY"
      continue
    m = _INSTRUCTION.match(line)
    if m:
      name, opcode = m.groups()
      opcode_of[name] = opcode
      computations[current].add(opcode)
      if c := _CALLS.search(line):
        calls[name] = c.group(1)

  kinds = {}
  for name, opcode in opcode_of.items():
    ops = {opcode} | computations.get(calls.get(name), set())
    if ops & MATMUL or (opcode == "custom-call" and "fusion" in name):
      kinds[name] = "conv/matmul"
    elif opcode == "fusion" and "reduce" in ops:
      kinds[name] = "reduction"
    elif opcode == "fusion":
      plumbing = MOVES | {"fusion", "parameter", "constant", "tuple", "get-tuple-element"}
      kinds[name] = "data movement" if ops <= plumbing else "elementwise"
    elif opcode in ("copy", "transpose"):
      kinds[name] = "copy"
    elif opcode in MOVES:
      kinds[name] = "data movement"
    else:
      kinds[name] = opcode
  return kinds


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--net", default="paper", help=f"of {', '.join(NETS)}")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--top", type=int, default=12)
  args = parser.parse_args()
  mesh = Mesh(np.array(jax.devices()), ("data",))
  ds = data.load("bundled:mnist", 1000)
  configs = configs_for(args.net, 1, 1)
  _, states, run = pack.setup(configs, ds, mesh)
  states = jax.device_put(states, NamedSharding(mesh, P()))
  feeder = feed_lib.Feeder(configs, ds.train.images, mesh, 1)
  keys = jnp.stack([state_lib.trial_keys(configs[0])[0]])
  kinds = op_kinds(run.lower(states, feeder(0, 1), keys, 1).compile().as_text())
  states, metrics = run(states, feeder(0, 1), keys, 1)  # Compiles and warms up.
  jax.block_until_ready(metrics)
  trace_dir = tempfile.mkdtemp()
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
      states, metrics = run(states, feeder(step, 1), keys, 1)
    jax.block_until_ready(metrics)
    wall = time.perf_counter() - start
  path = glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True)[0]
  with gzip.open(path) as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  per_op = collections.Counter()
  for e in events:
    op = e.get("args", {}).get("hlo_op")
    if e.get("ph") == "X" and op in kinds and not e["name"].startswith("end:"):
      per_op[op] += e["dur"] / 1e3  # Microseconds -> ms.
  by_kind = collections.Counter()
  for op, ms in per_op.items():
    if kinds[op] != "while":  # The loop itself: its body's ops are counted one by one.
      by_kind[kinds[op]] += ms
  total = sum(by_kind.values())
  print(json.dumps({
      "bench": "profile_step", "net": args.net, "steps": args.steps,
      "platform": jax.devices()[0].platform, "wall_ms": round(wall * 1e3, 1),
      "op_ms": round(total, 1),
      "share": {k: round(v / total, 3) for k, v in by_kind.most_common()},
      "ms_per_step": {k: round(v / args.steps, 2) for k, v in by_kind.most_common()}}))
  for op, ms in per_op.most_common(args.top):
    print(json.dumps({"op": op, "kind": kinds[op], "ms_per_step": round(ms / args.steps, 2),
                      "share": round(ms / total, 3)}))


if __name__ == "__main__":
  main()
