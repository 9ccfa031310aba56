"""Tests of the sweep DSL: the combinators and the seeded random search."""
import collections

import pytest

from wae_jax import hyper

h = hyper.HYPER


def test_product_zip_chain_counts():
  grid = h.product([h.fixed("config", "b"), h.sweep("config.lam", [1, 10, 100]),
                    h.sweep("config.seed", [0, 1])])
  assert len(grid) == 6
  assert {(t["config.lam"], t["config.seed"]) for t in grid} == {
      (l, s) for l in (1, 10, 100) for s in (0, 1)}
  assert all(t["config"] == "b" for t in grid)
  zipped = h.zipit([h.sweep("config.lam", [1, 2, 3]), h.sweep("config.z_dim", [4, 5, 6])])
  assert zipped == [{"config.lam": 1, "config.z_dim": 4}, {"config.lam": 2, "config.z_dim": 5},
                    {"config.lam": 3, "config.z_dim": 6}]
  assert len(h.chainit([grid, zipped, h.fixed("config", "c")])) == 10


def test_combinators_reject_conflicts():
  with pytest.raises(hyper.SweepError, match="config.lam"):
    h.product([h.sweep("config.lam", [1, 2]), h.fixed("config.lam", 3)])
  with pytest.raises(hyper.SweepError, match="different lengths"):
    h.zipit([h.sweep("config.lam", [1, 2]), h.sweep("config.seed", [1, 2, 3])])


def test_random_search_is_seeded_and_in_range():
  space = {"config.lr": h.loguniform(1e-4, 1e-2), "config.w": h.uniform(-1, 1),
           "config.arch": h.choice(["a", "b", "c"])}
  draws = h.random_search(500, space, seed=3)
  assert len(draws) == 500
  assert draws == h.random_search(500, space, seed=3)
  assert draws != h.random_search(500, space, seed=4)
  lrs = [d["config.lr"] for d in draws]
  assert 1e-4 <= min(lrs) < 2e-4 and 5e-3 < max(lrs) <= 1e-2
  # Log-uniform: about half the draws below the geometric middle 1e-3.
  assert 200 < sum(lr < 1e-3 for lr in lrs) < 300
  assert all(-1 <= d["config.w"] <= 1 for d in draws)
  assert collections.Counter(d["config.arch"] for d in draws).keys() == {"a", "b", "c"}
  # A new key leaves the draws of the others alone.
  more = h.random_search(500, {**space, "config.extra": h.uniform(0, 1)}, seed=3)
  assert [{k: d[k] for k in space} for d in more] == draws


def test_distributions_map_onto_optunas_and_a_space_keeps_them():
  from optuna import distributions  # pylint: disable=g-import-not-at-top
  lr, arch = hyper.loguniform(1e-4, 1e-2), hyper.choice(["dcgan", "resnet"])
  assert lr.optuna() == distributions.FloatDistribution(1e-4, 1e-2, log=True)
  assert hyper.uniform(0, 1).optuna() == distributions.FloatDistribution(0.0, 1.0)
  assert arch.optuna() == distributions.CategoricalDistribution(("dcgan", "resnet"))
  assert lr.value(0.0012345) == 0.00123 and 1e-3 in lr and 1.0 not in lr and "x" not in lr
  assert "resnet" in arch and "vit" not in arch
  assert str(lr) == "loguniform(0.0001, 0.01)" and str(arch) == "choice(['dcgan', 'resnet'])"
  (template,) = hyper.product([hyper.fixed("config", "a"), hyper.space({"config.lr": lr})])
  assert template == {"config": "a", "config.lr": lr} and hyper.is_template(template)
  with pytest.raises(hyper.SweepError, match="space: 'config.lr' is not a distribution"):
    hyper.space({"config.lr": 0.1})
