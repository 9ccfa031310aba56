"""Frechet distances between feature Gaussians: Inception FID and the domain FID.

Both metrics fit a Gaussian (mean, covariance) to features of generated images and compare
it with one fitted to the training split. The training-split statistics are expensive and
fixed, so they are computed once and cached next to a JSON header that says what they are
(dataset, split, preprocessing, network hash, images hash); any difference recomputes them.

`domain_fid` uses a small classifier that the project trains on the dataset itself
(`classifier.py`); its numbers are not Inception FIDs and must never be compared with them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import uuid
from typing import Any, Callable

import numpy as np
from etils import epath
from jax.sharding import Mesh

from wae_jax import inception
from wae_jax import workdir


@dataclasses.dataclass(frozen=True)
class Statistics:
  mu: np.ndarray  # (d,) float64
  sigma: np.ndarray  # (d, d) float64
  header: dict[str, Any]  # How they were made: dataset, split, preprocessing, weights, n, ...


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and (unbiased, as in pytorch-fid) covariance of (N, d) features, in float64."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 2:
    raise ValueError(f"statistics need (N >= 2, d) features, got shape {features.shape}")
  return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
  """||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^1/2), in float64.

  Tr((S1 S2)^1/2) is the sum of the square roots of the eigenvalues of S1 S2, and those are
  the eigenvalues of the symmetric PSD matrix R S2 R with R = S1^1/2 (AB and BA share their
  non-zero eigenvalues; take A = R, B = R S2). Symmetric eigensolvers are backward stable,
  and eigenvalues within rounding of zero, which rank-deficient covariances (fewer images
  than features) have, are set to zero before the square root, which would blow their noise
  up to sqrt(eps). So no eps*I retry is needed, unlike for sqrtm of the non-symmetric S1 S2
  in pytorch-fid, and the result is exact, not shifted by eps.
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  d = mu1.shape[0]
  if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(f"frechet_distance: shapes differ: mu {mu1.shape} {mu2.shape}, "
                     f"sigma {sigma1.shape} {sigma2.shape}")
  if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
    raise ValueError("frechet_distance: statistics contain NaN or Inf")
  w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
  root1 = (v * np.sqrt(_zero_noise(w))) @ v.T
  middle = root1 @ sigma2 @ root1
  tr_covmean = np.sqrt(_zero_noise(np.linalg.eigvalsh((middle + middle.T) / 2))).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def _zero_noise(eigenvalues: np.ndarray) -> np.ndarray:
  """Eigenvalues of a PSD matrix with those below rounding level (as in numpy's matrix_rank)
  set to zero."""
  tol = eigenvalues.max(initial=0.0) * len(eigenvalues) * np.finfo(np.float64).eps
  return np.where(eigenvalues > tol, eigenvalues, 0.0)


def array_sha256(array: np.ndarray) -> str:
  """Hash of an array's shape, dtype and bytes: what a cache entry was computed from."""
  array = np.ascontiguousarray(array)
  digest = hashlib.sha256(f"{array.shape}{array.dtype.str}".encode())
  digest.update(memoryview(array).cast("B"))
  return digest.hexdigest()


def load_cached(path: epath.PathLike, header: dict[str, Any]
                ) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
  """The arrays of `path` (.npz) and its full header, if the JSON header beside it agrees
  with every field of `header`; None when missing, damaged or different."""
  path = epath.Path(path)
  try:
    stored = json.loads(path.with_suffix(".json").read_text())
    with np.load(io.BytesIO(path.read_bytes())) as z:
      arrays = {k: z[k] for k in z.files if k != "header"}
      inner = json.loads(str(z["header"]))
  except (OSError, ValueError, KeyError):
    return None
  if inner != stored or any(stored.get(k) != v for k, v in header.items()):
    return None
  return arrays, stored


def save_cached(path: epath.PathLike, header: dict[str, Any], arrays: dict[str, np.ndarray]
                ) -> None:
  """Writes `path` (.npz) and its JSON header, each atomically. The header also goes inside
  the .npz, so a crash between the two writes reads as a mismatch, not as a wrong cache."""
  path = epath.Path(path)
  buffer = io.BytesIO()
  np.savez(buffer, header=json.dumps(header, sort_keys=True), **arrays)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
  tmp.write_bytes(buffer.getvalue())
  tmp.replace(path)
  workdir.write_json(path.with_suffix(".json"), header)


def reference_statistics(path: epath.PathLike, compute_features: Callable[[], np.ndarray], *,
                         dataset: str, split: str, preprocessing: str, weights: str,
                         images: str) -> Statistics:
  """Statistics of a dataset split, cached at `path` (.npz) with a JSON header beside it.

  The header holds the given fields (`weights`: the feature network's hash; `images`: the
  split's hash, e.g. `array_sha256`) and `n`. A cache whose header differs in any field is
  recomputed with `compute_features()` -> (N, d) and overwritten.
  """
  header = {"dataset": dataset, "split": split, "preprocessing": preprocessing,
            "weights": weights, "images": images}
  cached = load_cached(path, header)
  if cached is not None:
    arrays, stored = cached
    return Statistics(arrays["mu"], arrays["sigma"], stored)
  features = compute_features()
  mu, sigma = statistics(features)
  header["n"] = len(features)
  save_cached(path, header, {"mu": mu, "sigma": sigma})
  return Statistics(mu, sigma, header)


def _against(ref: Statistics, features: np.ndarray, network: str
             ) -> tuple[float, dict[str, Any]]:
  """The Frechet distance of `features` to `ref`, and its protocol: what a reader needs to
  know whether two such numbers compare (metrics.json keeps it beside the number)."""
  mu, sigma = statistics(features)
  protocol = {"network": network, "samples": len(features),
              **{f"reference_{k}": v for k, v in ref.header.items()}}
  return frechet_distance(mu, sigma, ref.mu, ref.sigma), protocol


def file_stem(name: str) -> str:
  """A dataset name as a safe file-name part."""
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def inception_fid(images: np.ndarray, dataset, cache_dir: str, variables, weights_sha256: str,
                  mesh: Mesh, *, max_reference: int | None = None, batch_size: int = 200
                  ) -> tuple[float, dict[str, Any]]:
  """Inception FID of images in [0, 1] (NHWC) against the dataset's training split, and its
  protocol.

  `variables, weights_sha256 = inception.load_params(...)`; the reference statistics use the
  first `max_reference` training images (all by default) and are cached in `cache_dir`.
  """
  train = dataset.train.images[:max_reference]
  ref = reference_statistics(
      os.path.join(cache_dir, "fid", f"{file_stem(dataset.name)}-train-inception.npz"),
      lambda: inception.features(variables, train, mesh, batch_size),
      dataset=dataset.name, split=f"train[:{len(train)}]",
      preprocessing=f"uint8/255, bilinear {inception.SIZE} without antialias, 2x-1",
      weights=weights_sha256, images=array_sha256(train))
  return _against(ref, inception.features(variables, images, mesh, batch_size),
                  "Inception-v3 pool3 (pytorch-fid's port of the 2015-12-05 graph)")


def domain_fid(images: np.ndarray, dataset, cache_dir: str, clf
               ) -> tuple[float, dict[str, Any]]:
  """Frechet distance of the domain classifier's features (NOT an Inception FID), and its
  protocol.

  `clf = classifier.get_or_train(dataset, cache_dir)`; images are in [0, 1] (or uint8),
  shaped like the dataset's. The training split's statistics are cached in `cache_dir`.
  """
  train = dataset.train.images
  ref = reference_statistics(
      os.path.join(cache_dir, "domain_fid", f"{file_stem(dataset.name)}-train.npz"),
      lambda: clf.features(train), dataset=dataset.name, split="train",
      preprocessing="uint8/255", weights=clf.sha256, images=array_sha256(train))
  return _against(ref, clf.features(images), f"domain classifier of {dataset.name} "
                  f"(test accuracy {clf.test_accuracy:.4f})")
