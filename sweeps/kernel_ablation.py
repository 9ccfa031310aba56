"""WAE-MMD with the IMQ kernel against the RBF kernel, and WAE-SW, over lambda and seeds.

The paper reports that an RBF kernel "fails to penalise the outliers of Q_Z because of the
quick tail decay" while the heavy-tailed IMQ does not. The same kernel widths
(`mmd.scales`) serve both kernels, so only the tail differs. On MNIST by default;
`:celeba` for CelebA, `:debug` for a CPU-sized run of the `mnist_wae_mmd:debug` config.
The sliced-Wasserstein penalty (WAE-SW) runs over the same lambdas and seeds, as the
kernel-free alternative.
"""

from wae_jax import mmd

LAMBDAS = (1.0, 10.0, 100.0, 1000.0)
SEEDS = (0, 1, 2)
BASES = {None: "mnist_wae_{}", "celeba": "celeba_wae_{}", "debug": "mnist_wae_{}:debug"}


def get_hyper(h, arg=None):
  if arg not in BASES:
    raise ValueError(f"unknown argument {arg!r} (known: celeba, debug)")
  common = [h.sweep("config.lam", LAMBDAS),
            h.sweep("config.seed", SEEDS[:1] if arg == "debug" else SEEDS)]
  return h.chainit([
      h.product([h.fixed("config", BASES[arg].format("mmd")),
                 h.sweep("config.mmd.kernel", mmd.KERNELS), *common]),
      h.product([h.fixed("config", BASES[arg].format("sw")), *common]),
  ])
