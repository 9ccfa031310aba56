"""The bigWAE study under asynchronous successive halving (`wae_jax/searches/asha.py`).

`bigwae.py`'s trials, each algorithm a bracket of its own: every trial trains 800 steps, the
best fifth of each rung goes on to 5x the steps (4,000, 20,000), and the best of those to
the paper's 100,000. Rungs are ranked by the Inception FID of 10,000 samples (CelebA has no
labels for a domain FID; the workers need pytorch-fid's weights). Before trusting these
rungs at full scale, replay them on a smaller full-budget study (`wae-results --replay`).

`:debug` is the benchmark this machine can run: WAE-MMD and WAE-GAN, 24 random points each
from bigwae's debug space, 2,700 steps of the `:debug` configs at width 1/64 on the bundled
MNIST at a constant learning rate, ranked by domain FID on 2,048 samples every 150 steps (so
a random-search run of the same trials, `--search=random`, records every rung a replay may
use), climbing 300 -> 1,200 -> 2,700 (eta 4). `:pilot` is the same study on other random
points: the replay of its random search chose that ladder (README, "Multi-fidelity
sweeps"), so the benchmark's trials took no part in choosing it. The rate is constant
because the configs decay it by epochs: with the batch size searched, a batch-64 trial
would decay after 620 steps and a batch-32 one after 1,250, between the rungs.
"""

import bigwae

DEBUG_ALGOS = ("wae_mmd", "wae_gan")
DEBUG_POINTS = 24
DEBUG_STEPS = 2700
# Which random points of the debug space: the pilot's curves chose the debug search (its
# replay); the benchmark then runs on points that took no part in that choice.
DEBUG_SEEDS = {"pilot": 0, "debug": len(DEBUG_ALGOS)}


def get_hyper(h, arg=None):
  if arg is None:
    return [{**t, "config.eval.evaluators": ("heldout", "sharpness", "fid"),
             "config.eval.num_samples": 10_000, "config.eval_every": 20_000}
            for t in bigwae.get_hyper(h)]
  if arg not in DEBUG_SEEDS:
    raise ValueError(f"unknown argument {arg!r} (known: {', '.join(DEBUG_SEEDS)})")
  return h.chainit([
      h.product([
          h.fixed("config", f"mnist_{algo}:debug"),
          h.fixed("config.model.width", 1 / 64), h.fixed("config.gan.units", 16),
          h.fixed("config.eval.evaluators", ("heldout", "sharpness", "domain_fid")),
          h.fixed("config.num_steps", DEBUG_STEPS),
          h.fixed("config.eval.num_samples", 2048), h.fixed("config.eval_every", 150),
          h.fixed("config.optim.decay_epochs", ()), h.fixed("config.optim.decay_factors", ()),
          h.random_search(DEBUG_POINTS, bigwae.space(h, algo, debug=True),
                          seed=DEBUG_SEEDS[arg] + i),
      ])
      for i, algo in enumerate(DEBUG_ALGOS)
  ])


def get_search(arg=None):
  if arg in DEBUG_SEEDS:
    return {"name": "asha", "min_steps": 300, "eta": 4, "max_steps": DEBUG_STEPS,
            "metric": "domain_fid"}
  return {"name": "asha", "min_steps": 800, "eta": 5, "max_steps": bigwae.NUM_STEPS,
          "metric": "fid"}
