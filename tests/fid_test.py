"""Frechet distance, statistics caches, and the domain FID with its classifier."""

import functools
import json

import jax
import numpy as np
import pytest
import scipy.linalg
from scipy import ndimage

from wae_jax import classifier
from wae_jax import data
from wae_jax import fid


def random_statistics(rng, d, n):
  """Mean and covariance of n correlated samples in d dims (rank n - 1 when n <= d)."""
  x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d) + rng.normal(size=d)
  return fid.statistics(x)


def sqrtm_frechet_distance(mu1, s1, mu2, s2):
  """The textbook formula with scipy's sqrtm of the non-symmetric product."""
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  return (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
  v1, v2 = rng.uniform(0.1, 2, 5), rng.uniform(0.1, 2, 5)
  expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
  assert fid.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(
      expected, rel=1e-12)
  assert fid.frechet_distance(0.0, 4.0, 1.0, 1.0) == pytest.approx(1.0 + (2 - 1) ** 2)


@pytest.mark.parametrize("d,n1,n2", [(16, 200, 300), (64, 40, 500), (64, 30, 20)])
def test_frechet_distance_matches_sqrtm_formula(d, n1, n2):
  # n < d: rank-deficient covariances (singular products), where sqrtm is least accurate.
  rng = np.random.default_rng(d + n1)
  mu1, s1 = random_statistics(rng, d, n1)
  mu2, s2 = random_statistics(rng, d, n2)
  got = fid.frechet_distance(mu1, s1, mu2, s2)
  assert got == pytest.approx(sqrtm_frechet_distance(mu1, s1, mu2, s2), rel=1e-6)
  assert got == pytest.approx(fid.frechet_distance(mu2, s2, mu1, s1), rel=1e-9)


def test_frechet_distance_of_identical_statistics_is_zero():
  mu, s = random_statistics(np.random.default_rng(0), 32, 10)  # Rank 9 of 32.
  assert abs(fid.frechet_distance(mu, s, mu, s)) < 1e-9 * np.trace(s)


def test_frechet_distance_rejects_bad_input():
  with pytest.raises(ValueError, match="shapes differ"):
    fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
  with pytest.raises(ValueError, match="NaN"):
    fid.frechet_distance(np.zeros(2), np.eye(2), np.array([0, np.nan]), np.eye(2))
  with pytest.raises(ValueError, match="N >= 2"):
    fid.statistics(np.zeros((1, 4)))


def test_statistics_are_float64_mean_and_unbiased_covariance():
  x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
  mu, sigma = fid.statistics(x)
  assert mu.dtype == sigma.dtype == np.float64
  np.testing.assert_allclose(mu, x.mean(0), rtol=1e-6)
  np.testing.assert_allclose(sigma, (x - x.mean(0)).T @ (x - x.mean(0)) / 49, rtol=1e-5)


def test_reference_statistics_are_cached_and_recomputed_on_mismatch(tmp_path):
  calls = []
  rng = np.random.default_rng(0)

  def compute():
    calls.append(1)
    return rng.normal(size=(20, 4))

  header = dict(dataset="bundled:mnist", split="train", preprocessing="uint8/255",
                weights="abc", images="123")
  path = str(tmp_path / "stats" / "ref.npz")
  first = fid.reference_statistics(path, compute, **header)
  assert first.header["n"] == 20 and len(calls) == 1
  with open(tmp_path / "stats" / "ref.json") as f:
    assert json.load(f) == {**header, "n": 20}
  again = fid.reference_statistics(path, compute, **header)
  assert len(calls) == 1
  np.testing.assert_array_equal(again.sigma, first.sigma)
  for field in header:
    changed = fid.reference_statistics(path, compute, **{**header, field: "other"})
    assert not np.array_equal(changed.mu, first.mu)
  assert len(calls) == 1 + len(header)
  (tmp_path / "stats" / "ref.npz").write_bytes(b"damaged")
  fid.reference_statistics(path, compute, **header)
  assert len(calls) == 2 + len(header)


# ----------------------------------------------------------------------------------------
# Domain FID on real MNIST digits (the 5,000 bundled with the package).


@pytest.fixture(scope="session")
def mnist():
  return data.load("bundled:mnist", 1000)


# The tests that share the trained classifier run on one xdist worker, so it trains once.
CLASSIFIER_WORKER = pytest.mark.xdist_group("domain_classifier")
STEPS = 150  # 0.94 test accuracy here; the real classifier takes 2,000.


@pytest.fixture(scope="session")
def trained(mnist, tmp_path_factory):
  cache_dir = str(tmp_path_factory.mktemp("cache"))
  return classifier.get_or_train(mnist, cache_dir, steps=STEPS), cache_dir


@CLASSIFIER_WORKER
def test_classifier_learns_and_is_cached(mnist, trained, monkeypatch):
  clf, cache_dir = trained
  assert clf.test_accuracy > 0.85
  assert clf.features(mnist.test.images[:5]).shape == (5, classifier.FEATURES)
  monkeypatch.setattr(classifier, "train", lambda *a, **k: pytest.fail("retrained"))
  again = classifier.get_or_train(mnist, cache_dir, steps=STEPS)
  assert again.sha256 == clf.sha256 and again.test_accuracy == clf.test_accuracy
  np.testing.assert_array_equal(again.features(mnist.test.images[:5]),
                                clf.features(mnist.test.images[:5]))


@CLASSIFIER_WORKER
def test_classifier_cache_is_keyed_by_training_images(mnist, trained, monkeypatch):
  _, cache_dir = trained

  class Retrained(Exception):
    pass

  def train(*args, **kwargs):
    raise Retrained

  monkeypatch.setattr(classifier, "train", train)
  changed = data.Dataset(mnist.name, data.Split(mnist.train.images[::-1], mnist.train.labels[::-1]),
                         mnist.test, mnist.pixels)
  with pytest.raises(Retrained):
    classifier.get_or_train(changed, cache_dir, steps=STEPS)


def test_classifier_needs_labels(mnist, tmp_path):
  unlabelled = data.Dataset("x", data.Split(mnist.train.images, None), mnist.test,
                            data.Pixels(symmetric=False))
  with pytest.raises(ValueError, match="needs class labels"):
    classifier.get_or_train(unlabelled, str(tmp_path))


@CLASSIFIER_WORKER
def test_domain_fid_ranks_real_digits_far_below_damaged_ones(mnist, trained):
  clf, cache_dir = trained
  test = mnist.test.images
  rng = np.random.default_rng(0)
  shuffled = np.stack([rng.permutation(im.reshape(-1)).reshape(im.shape) for im in test])
  blurred = ndimage.gaussian_filter(test.astype(np.float32), (0, 1, 1, 0)) / 255
  real, protocol = fid.domain_fid(test, mnist, cache_dir, clf)
  assert 0 <= real < fid.domain_fid(blurred, mnist, cache_dir, clf)[0] / 5
  assert real < fid.domain_fid(shuffled, mnist, cache_dir, clf)[0] / 5
  # Float images in [0, 1] and uint8 images are the same thing.
  assert fid.domain_fid(test / 255, mnist, cache_dir, clf)[0] == pytest.approx(real, rel=1e-4)
  # What the number was measured with, for metrics.json.
  assert protocol["samples"] == len(test) and protocol["reference_split"] == "train"
  assert protocol["reference_n"] == len(mnist.train.images)
  assert protocol["reference_weights"] == clf.sha256 and "domain classifier" in protocol["network"]


# ----------------------------------------------------------------------------------------
# Equality with pytorch-fid (torch_ref).


@pytest.mark.torch_ref
@pytest.mark.parametrize("d,n1,n2", [(64, 1000, 1000), (64, 40, 1000), (512, 300, 2000),
                                     (512, 2000, 3000)])
def test_frechet_distance_equals_pytorch_fid(d, n1, n2):
  fid_score = pytest.importorskip("pytorch_fid.fid_score")
  rng = np.random.default_rng(d + n1 + n2)
  mu1, s1 = random_statistics(rng, d, n1)
  mu2, s2 = random_statistics(rng, d, n2)
  expected = fid_score.calculate_frechet_distance(mu1, s1, mu2, s2)
  assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------------------
# The domain classifier's feature layer (an untrained net: where the features come from, not
# how good they are).


def _untrained(num_classes=10):
  net = classifier.DomainNet(num_classes)
  params = jax.jit(net.init)(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))["params"]
  params = jax.tree.map(np.asarray, params)
  return net, classifier.Classifier(params, 0.0, classifier.params_sha256(params))


def test_domain_features_are_the_penultimate_layer_after_its_relu():
  """Inception's pool3 counterpart: the 128-unit layer that feeds the class logits, after its
  ReLU; not the logits, not the last conv, not the pre-activations."""
  net, clf = _untrained()
  images = np.random.default_rng(0).integers(0, 256, size=(6, 28, 28, 1), dtype=np.uint8)
  features = clf.features(images, batch_size=4)  # Two batches, the last one padded.
  apply = jax.jit(functools.partial(net.apply, capture_intermediates=True,
                                    mutable=["intermediates"]))
  (_, logits), state = apply({"params": clf.params}, images / np.float32(255))
  (hidden,) = state["intermediates"]["Dense_0"]["__call__"]
  assert features.shape == (6, classifier.FEATURES) == (6, 128)
  np.testing.assert_allclose(features, np.maximum(hidden, 0.0), rtol=1e-5, atol=1e-6)
  assert (features == 0).any() and (hidden < 0).any()  # The ReLU acted.
  head = clf.params["Dense_1"]
  np.testing.assert_allclose(features @ head["kernel"] + head["bias"], logits, rtol=1e-4,
                             atol=1e-5)


def test_domain_fid_is_the_frechet_distance_of_those_features(mnist, tmp_path):
  """Samples' features against the training split's, both from `features`."""
  _, clf = _untrained()
  rng = np.random.default_rng(1)
  small = data.Dataset("small", data.Split(mnist.train.images[:300], mnist.train.labels[:300]),
                       mnist.test, mnist.pixels)
  samples = rng.uniform(size=(300, 28, 28, 1)).astype(np.float32)
  got, _ = fid.domain_fid(samples, small, str(tmp_path), clf)
  want = fid.frechet_distance(*fid.statistics(clf.features(samples)),
                              *fid.statistics(clf.features(small.train.images)))
  assert got == pytest.approx(want, rel=1e-6) and got > 0
