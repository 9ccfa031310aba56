"""The paper's comparison at equal steps, on real data this machine has: the fair VAE
(`mnist_vae`: a Bernoulli decoder), WAE-MMD, WAE-GAN and WAE-SW, 3 seeds each.

`:mnist` is the bundled MNIST (5,000 digits, 1,000 held out); `:fashion` the full
Fashion-MNIST from Debian's `dataset-fashion-mnist` (IDX files, 10,000 held out). Every
trial is its algorithm's `:debug` config (width 1/16, 1,200 steps of batch 64) and ends with
the final evaluation (`eval.final_fid`: domain FID on 10,000 samples; Inception FID when its
weights are found), so `wae-results` ranks them without a `wae-eval` pass. The debug preset skips the public
code's encoder pre-training (`pretrain.max_steps = 0`), for every algorithm alike.
"""

from wae_jax import data

ALGOS = ("vae", "wae_mmd", "wae_gan", "wae_sw")
SEEDS = (0, 1, 2)
DATA = {"mnist": ("bundled:mnist", 1000),
        "fashion": (f"idx:{data.DEBIAN_FASHION_MNIST}", 10_000)}


def get_hyper(h, arg=None):
  if arg not in DATA:
    raise ValueError(f"unknown argument {arg!r} (known: {', '.join(DATA)})")
  source, heldout = DATA[arg]
  return h.product([
      h.sweep("config", [f"mnist_{a}:debug" for a in ALGOS]),
      h.fixed("config.data.source", source), h.fixed("config.data.heldout", heldout),
      h.fixed("config.eval.final_fid", True),
      h.sweep("config.seed", SEEDS),
  ])
