"""The paper's hand-tuned runs (Tolstikhin et al. 2018, Table 1 and Sec. 4): 6 configs.

Each config in `wae_jax/configs/` carries the paper's hyperparameters, so the trials are
the configs themselves. `sweeps/table1.py:mnist` or `:celeba` runs one data set.
"""

DATASETS = ("mnist", "celeba")
ALGOS = ("vae", "wae_mmd", "wae_gan")


def get_hyper(h, arg=None):
  if arg not in (None,) + DATASETS:
    raise ValueError(f"unknown argument {arg!r} (known: {', '.join(DATASETS)})")
  datasets = (arg,) if arg else DATASETS
  return h.sweep("config", [f"{d}_{a}" for d in datasets for a in ALGOS])
