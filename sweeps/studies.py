"""Three small full-budget studies that searches are checked on before a study trusts them.

  wae-sweep run sweeps/studies.py:mnist --search=random --workdir=runs/studies/mnist
  wae-results runs/studies/mnist --replay=asha --replay=curve    # then replay any search

Each is a study of its own, as a new user would set one up: three algorithms, each a
bracket of `POINTS` random points of bigWAE's debug space (its own points per algorithm),
`NUM_STEPS` steps of the width-1/64 `:debug` nets at a constant learning rate, ranked by
domain FID on 2,048 samples, evaluated every 75 steps so that every rung a search may use
is on the recorded curves (`benchmarks/searches.py` replays every search on them):

- `mnist`: WAE-MMD, WAE-GAN and the VAE on the bundled MNIST digits;
- `fashion`: the same three on Fashion-MNIST (Debian's `dataset-fashion-mnist`, IDX files);
- `sliced`: WAE-SW, WAE-MMD and WAE-GAN on the bundled MNIST at other random points.
- `heldout`: WAE-SW, WAE-GAN and the VAE on Fashion-MNIST at other random points, run only
  after the default search was chosen on the three above, to test it on a study it was not
  tuned on.
- `heldout2`: WAE-SW, WAE-MMD and the VAE on the bundled MNIST at other random points, run
  only after the default was chosen again on the four above.

`:<study>-<n>points` is the study with n random points an algorithm, its first 16 the
study's: run into a copy of the study's directory, it trains only the new ones (the ledger
is a union).

`get_search` is the study's default search (`wae-sweep run` without `--search`);
`:<study>-tpe<seed>` is the same study under the tpe search, its first 6 points a bracket
the study's own and the other 10 proposed from the same space; `:<study>-pooled<seed>` the
same with one TPE over all three brackets (`pool`).
"""

import re

import bigwae

POINTS = 16
STARTUP = 6  # The tpe variant's random points before TPE models a bracket.
NUM_STEPS = 1200
STUDIES = {
    "mnist": ("bundled:mnist", ("wae_mmd", "wae_gan", "vae"), 0),
    "fashion": ("idx:/usr/share/datasets/fashion-mnist", ("wae_mmd", "wae_gan", "vae"), 10),
    "sliced": ("bundled:mnist", ("wae_sw", "wae_mmd", "wae_gan"), 20),
    # Run after the default search was chosen on the three above: a study it was not tuned on.
    "heldout": ("idx:/usr/share/datasets/fashion-mnist", ("wae_sw", "wae_gan", "vae"), 30),
    # Run after the default was chosen again on all four: a study that choice was not tuned on.
    "heldout2": ("bundled:mnist", ("wae_sw", "wae_mmd", "vae"), 40),
}


def _parse(arg):
  """(study, tpe seed or None, pooled, points): `study` (its random points), `study-tpe<seed>`
  or `study-pooled<seed>` (the tpe search over its space), `study-<n>points` (n random
  points an algorithm, the first POINTS of them the study's)."""
  name, variant, seed, points = re.fullmatch(
      r"(.*?)(?:-(tpe|pooled)(\d+)|-(\d+)points)?", arg).groups()
  if name not in STUDIES:
    raise ValueError(f"unknown argument {arg!r} (known: {', '.join(STUDIES)}, each "
                     "optionally -tpe<seed>, -pooled<seed> or -<n>points)")
  return (name, None if seed is None else int(seed), variant == "pooled",
          int(points) if points else POINTS)


def get_hyper(h, arg="mnist"):
  name, tpe, _, n = _parse(arg)
  source, algos, seed = STUDIES[name]

  def points(space, i):
    if tpe is None:
      return h.random_search(n, space, seed=seed + i)
    # The study's first STARTUP points (the same draws), then TPE's proposals.
    return h.chainit([h.random_search(STARTUP, space, seed=seed + i), h.space(space)])

  return h.chainit([
      h.product([
          h.fixed("config", f"mnist_{algo}:debug"), h.fixed("config.data.source", source),
          h.fixed("config.model.width", 1 / 64), h.fixed("config.gan.units", 16),
          h.fixed("config.eval.evaluators", ("domain_fid",)),
          h.fixed("config.num_steps", NUM_STEPS), h.fixed("config.ckpt_every", 150),
          h.fixed("config.eval.num_samples", 2048), h.fixed("config.eval_every", 75),
          h.fixed("config.optim.decay_epochs", ()), h.fixed("config.optim.decay_factors", ()),
          points(bigwae.space(h, algo, debug=True), i),
      ])
      for i, algo in enumerate(algos)
  ])


def get_search(arg="mnist"):
  _, tpe, pool, _ = _parse(arg)
  ladder = {"min_steps": 150, "eta": 4, "max_steps": NUM_STEPS, "metric": "domain_fid"}
  if tpe is not None:
    return {"name": "tpe", **ladder, "trials": POINTS, "startup": STARTUP, "seed": tpe,
            "pool": pool}
  # Two finalists: the one ladder that kept 8 of the 9 algorithms' best trials at <= 31% of
  # random search's model-steps on the three studies (docs/sweeps.md).
  return {"name": "asha", **ladder, "finalists": 2}
