"""A first sweep for a laptop: WAE-MMD and WAE-GAN, 3 random points each, under ASHA.

The width-1/64 debug nets on the bundled MNIST, evaluated every 100 steps on held-out data
(`mmd_heldout`: how far the codes of held-out images are from the prior), climbing 100 ->
300 -> 900 steps (eta 3): each algorithm's best third goes on. A few minutes on 2 cores:

  wae-sweep run sweeps/quickstart.py --workdir=/tmp/quick --executor=local --parallel=2
"""


def get_hyper(h, arg=None):
  del arg
  return h.chainit([
      h.product([
          h.fixed("config", f"mnist_{algo}:debug"),
          h.fixed("config.model.width", 1 / 64), h.fixed("config.gan.units", 16),
          h.fixed("config.num_steps", 900), h.fixed("config.eval_every", 100),
          h.fixed("config.ckpt_every", 100), h.fixed("config.eval.num_samples", 256),
          h.fixed("config.optim.decay_epochs", ()), h.fixed("config.optim.decay_factors", ()),
          h.random_search(3, {"config.lam": h.loguniform(*lam),
                              "config.optim.lr": h.loguniform(3e-4, 3e-3)}, seed=i),
      ])
      for i, (algo, lam) in enumerate((("wae_mmd", (1.0, 100.0)), ("wae_gan", (0.1, 10.0))))
  ])


def get_search(arg=None):
  del arg
  return {"name": "asha", "min_steps": 100, "eta": 3, "max_steps": 900,
          "metric": "mmd_heldout"}
