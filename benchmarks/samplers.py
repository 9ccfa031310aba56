"""The sampler table: domain FID of each algorithm's samples from the prior and from the
ex-post samplers (wae_jax/samplers/), mean +- sd over seeds, on MNIST and Fashion-MNIST.

  python benchmarks/samplers.py --out=/tmp/samplers [--steps=600] [--seeds=0,1,2]
                                [--samplers=prior,gmm,flow,two_stage]
  python benchmarks/samplers.py --fit_cost=W [--codes=60000]   # seconds and bytes per sampler
  python benchmarks/samplers.py --figure=F.png W1 W2 ...        # each trial's grids, side by side

Each trial is trained by `wae-train` (the `:debug` config: width 1/16, batch 64) and scored
by `wae-eval --sampler=<--samplers>`, each in its own process; rows go to
`<out>/samplers.jsonl` as they come and the markdown table to `<out>/samplers.md`. A rerun
skips what is scored: a trial already trained is not trained again, only scored on the
samplers it has no row for (so a new sampler is measured on the same trials). Seeds are the
outer loop, so a run cut short still fills every cell.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ALGOS = {"WAE-MMD": "mnist_wae_mmd", "WAE-GAN": "mnist_wae_gan", "VAE": "mnist_vae",
         "CWAE": "mnist_cwae", "RF-WAE": "mnist_wae_rf"}
DATASETS = {"MNIST": [], "Fashion-MNIST": ["--config.data.source=idx:/usr/share/datasets/"
                                           "fashion-mnist"]}
SAMPLERS = ("prior", "gmm", "flow")  # The default --samplers; the table has those scored.


def _run(cmd, log):
  with open(log, "a") as f:
    return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode


def trial(out, dataset, algo, seed, steps, num_samples, names, trained=False):
  """Trains (unless `trained`) and scores one trial on the samplers `names`; its rows (one
  per sampler)."""
  workdir = os.path.join(out, f"{dataset}-{algo}-{seed}")
  log = workdir + ".log"
  start = time.time()
  rc = 0 if trained else _run(
      [sys.executable, "-m", "wae_jax.cli.train", f"--config={ALGOS[algo]}:debug",
       f"--workdir={workdir}", f"--config.num_steps={steps}", f"--config.seed={seed}",
       *DATASETS[dataset]], log)
  trained_at = time.time()
  rc = rc or _run([sys.executable, "-m", "wae_jax.cli.evaluate", f"--workdir={workdir}",
                   f"--sampler={','.join(names)}", f"--num_samples={num_samples}"], log)
  if rc:
    return [{"dataset": dataset, "algo": algo, "seed": seed, "error": f"exit {rc}, see {log}"}]
  record = json.load(open(os.path.join(workdir, "metrics.json")))
  metrics, steps = record["metrics"], record["step"]
  rows = []
  for s in names:
    suffix = "" if s == "prior" else f"/{s}"
    fit = {}
    if s != "prior":
      fit = json.load(open(os.path.join(workdir, "samplers", str(steps), s, "sampler.json")))
    rows.append({"dataset": dataset, "algo": algo, "seed": seed, "sampler": s, "steps": steps,
                 "domain_fid": metrics.get("domain_fid" + suffix),
                 "domain_fid_data": metrics.get("domain_fid_data"),
                 "sharpness_mean": metrics.get("sharpness_mean" + suffix),
                 "fit_seconds": fit.get("fit_seconds"), "codes": fit.get("codes"),
                 "fit": {k: v for k, v in fit.get("summary", {}).items() if "curve" not in k},
                 "train_seconds": None if trained else trained_at - start,
                 "eval_seconds": time.time() - trained_at})
  return rows


def table(rows):
  """Markdown: algorithm by (dataset, sampler), domain FID mean +- sd over seeds."""
  latest = {(r["dataset"], r["algo"], r["seed"], r.get("sampler")): r for r in rows}
  names = list(dict.fromkeys(r["sampler"] for r in rows if r.get("sampler")))
  cells = {}
  for r in latest.values():
    if r.get("domain_fid") is not None:
      cells.setdefault((r["algo"], r["dataset"], r["sampler"]), []).append(r["domain_fid"])
  cols = [(d, s) for d in DATASETS for s in names]
  lines = ["| | " + " | ".join(f"{d} {s}" for d, s in cols) + " |",
           "|---" * (len(cols) + 1) + "|"]
  for algo in ALGOS:
    out = []
    for d, s in cols:
      v = cells.get((algo, d, s), [])
      out.append(f"{np.mean(v):.1f} ± {np.std(v, ddof=1) if len(v) > 1 else float('nan'):.1f} "
                 f"(n={len(v)})" if v else "-")
    lines.append(f"| {algo} | " + " | ".join(out) + " |")
  floors = {d: [r["domain_fid_data"] for r in rows
                if r["dataset"] == d and r.get("domain_fid_data")] for d in DATASETS}
  lines.append("| held-out data | " + " | ".join(
      f"{np.mean(floors[d]):.1f}" if floors[d] else "-" for d, _ in cols) + " |")
  # Paired: each trial's sampler against its own prior samples, then over seeds.
  ratio = {}
  for (d, a, seed, s), r in latest.items():
    prior = latest.get((d, a, seed, "prior"), {}).get("domain_fid")
    if s != "prior" and prior and r.get("domain_fid") is not None:
      ratio.setdefault((a, d, s), []).append(r["domain_fid"] / prior)
  cols = [(d, s) for d in DATASETS for s in names if s != "prior"]
  lines += ["", "Domain FID as a fraction of the same trial's prior samples' (mean ± sd over "
            "seeds; below 1: the sampler helps)", "",
            "| | " + " | ".join(f"{d} {s}" for d, s in cols) + " |",
            "|---" * (len(cols) + 1) + "|"]
  for algo in ALGOS:
    lines.append(f"| {algo} | " + " | ".join(
        f"{np.mean(v):.2f} ± {np.std(v, ddof=1) if len(v) > 1 else float('nan'):.2f}"
        if (v := ratio.get((algo, d, s))) else "-" for d, s in cols) + " |")
  # The fits themselves: held-out log-likelihood per code (the two-stage VAE's is its
  # importance-weighted lower bound) and seconds, mean ± sd over seeds.
  fits = {}
  for (d, a, seed, s), r in latest.items():
    if (r.get("fit") or {}).get("heldout_loglik") is not None:
      fits.setdefault((a, d, s), []).append((r["fit"]["heldout_loglik"], r["fit_seconds"]))
  lines += ["", "Held-out log-likelihood per code, and fit seconds (mean ± sd over seeds)", "",
            "| | " + " | ".join(f"{d} {s}" for d, s in cols) + " |",
            "|---" * (len(cols) + 1) + "|"]
  for algo in ALGOS:
    lines.append(f"| {algo} | " + " | ".join(
        f"{np.mean(v[:, 0]):.2f} ± {np.std(v[:, 0], ddof=1) if len(v) > 1 else float('nan'):.2f}"
        f", {np.mean(v[:, 1]):.0f} s" if len(v := np.array(fits.get((algo, d, s), []))) else "-"
        for d, s in cols) + " |")
  return "\n".join(lines) + "\n"


def fit_cost(workdir, count, names):
  """Seconds to fit each sampler on `count` training codes of the trial in `workdir`, and
  the bytes it adds to a trial directory; one JSON line each."""
  import tempfile  # pylint: disable=g-import-not-at-top
  import wae_jax  # pylint: disable=g-import-not-at-top
  from wae_jax import samplers  # pylint: disable=g-import-not-at-top
  model = wae_jax.load(workdir)
  start = time.time()
  codes = model.training_codes()[:count]
  encode_s = time.time() - start
  for name in (n for n in names if n != "prior"):
    with tempfile.TemporaryDirectory() as tmp:
      start = time.time()
      samplers.fitted(name, z_dim=model.config.z_dim, prior_var=model.config.prior_var,
                      workdir=tmp, step=model.step, codes=lambda: codes)
      seconds = time.time() - start
      where = samplers.path(tmp, model.step, name)
      size = sum(os.path.getsize(f) for f in where.iterdir())
    print(json.dumps({"bench": "fit_cost", "sampler": name, "codes": len(codes),
                      "fit_seconds": seconds, "bytes": size, "encode_seconds": encode_s,
                      "settings": samplers.get(name).settings}), flush=True)


def figure(path, workdirs, names):
  """One row per trial: its `samples_<sampler>.png` grids (wae-eval's) left to right."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rows = []
  for w in workdirs:
    grids = [np.asarray(Image.open(os.path.join(w, f"samples_{s}.png"))) for s in names]
    gap = np.full((grids[0].shape[0], 12) + grids[0].shape[2:], 255, np.uint8)
    rows.append(np.concatenate([x for g in grids for x in (g, gap)][:-1], axis=1))
  gap = np.full((12,) + rows[0].shape[1:], 255, np.uint8)
  Image.fromarray(np.concatenate([x for r in rows for x in (r, gap)][:-1])).save(path)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out")
  parser.add_argument("--fit_cost", help="a trial directory: time each sampler's fit instead")
  parser.add_argument("--codes", type=int, default=60_000)
  parser.add_argument("--figure", help="PNG: the trial directories' sample grids per sampler")
  parser.add_argument("workdirs", nargs="*")
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--num_samples", type=int, default=2048)
  parser.add_argument("--samplers", default=",".join(SAMPLERS),
                      help="those wae-eval scores (a trial already trained gets the missing)")
  args = parser.parse_args()
  names = [n for n in args.samplers.split(",") if n]
  if args.fit_cost:
    return fit_cost(args.fit_cost, args.codes, names)
  if args.figure:
    return figure(args.figure, args.workdirs, names)
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "samplers.jsonl")
  rows = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
  for seed in map(int, args.seeds.split(",")):
    for dataset in DATASETS:
      for algo in ALGOS:
        scored = {r["sampler"] for r in rows if "error" not in r
                  and (r["dataset"], r["algo"], r["seed"]) == (dataset, algo, seed)}
        missing = [n for n in names if n not in scored]
        if not missing:
          continue
        new = trial(args.out, dataset, algo, seed, args.steps, args.num_samples, missing,
                    trained=bool(scored))
        rows += new
        with open(path, "a") as f:
          f.writelines(json.dumps(r) + "\n" for r in new)
        with open(os.path.join(args.out, "samplers.md"), "w") as f:
          f.write(table(rows))
        print(json.dumps(new), flush=True)


if __name__ == "__main__":
  main()
