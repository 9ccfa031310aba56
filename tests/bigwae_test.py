"""The bigWAE study's random search (sweeps/bigwae.py): each algorithm is tuned by a random
search of its own, of the same size and over the same distributions, as in the paper's
study (equal compute budget per algorithm), so the algorithms are compared on what
independent searches find, not on one shared set of points."""
import collections
import importlib.util
import itertools
import os

from conftest import REPO

from wae_jax import hyper

SHARED = ("config.z_dim", "config.batch_size", "config.optim.lr", "config.model.arch")


def _bigwae():
  spec = importlib.util.spec_from_file_location("_bigwae", os.path.join(REPO, "sweeps",
                                                                         "bigwae.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _points(trials):
  """The shared hyperparameters of each algorithm's points, in draw order (seed 0's trials)."""
  points = collections.defaultdict(list)
  for t in trials:
    if t["config.seed"] == 0:
      points[t["config"]].append(tuple(t[k] for k in SHARED))
  return points


def test_each_algorithm_draws_its_own_points_from_the_same_distributions():
  bigwae = _bigwae()
  points = _points(bigwae.get_hyper(hyper.HYPER))
  assert len(points) == len(bigwae.ALGOS) == 4
  assert {len(p) for p in points.values()} == {bigwae.POINTS}
  for a, b in itertools.combinations(sorted(points), 2):
    # Independent draws coincide on all four only by chance: a few of 340 (12 choices of
    # z_dim, batch and net, a rate to 3 digits over 2 decades). Shared draws: all of them.
    shared = set(points[a]) & set(points[b])
    assert len(shared) < 0.05 * bigwae.POINTS, (a, b, len(shared))
    assert sum(p == q for p, q in zip(points[a], points[b])) < 0.05 * bigwae.POINTS
  # The same distributions for the shared hyperparameters, whichever algorithm draws them.
  spaces = [{k: v for k, v in bigwae.space(hyper.HYPER, algo, False).items() if k in SHARED}
            for algo in bigwae.ALGOS]
  assert all(s == spaces[0] and set(s) == set(SHARED) for s in spaces)


def test_the_debug_study_draws_its_own_points_per_algorithm_too():
  bigwae = _bigwae()
  points = _points(bigwae.get_hyper(hyper.HYPER, "debug"))
  assert {len(p) for p in points.values()} == {2} and len(points) == 4
  assert len({tuple(p) for p in points.values()}) == 4
