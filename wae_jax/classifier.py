"""The domain classifier behind `domain_fid`: a small conv net trained on the dataset itself.

Inception weights cannot be had everywhere, and Inception features say little about 28x28
digits anyway. A classifier trained on the training split of an MNIST-like dataset gives
features that separate what matters there (stroke shapes, classes); its penultimate layer
plays the role of Inception's pool3. It is trained once per dataset, deterministically, and
cached under a key of the dataset name, a hash of its training images and labels, and the
training settings; its test-split accuracy is stored beside it so a weak classifier shows.
`fid.domain_fid` turns its features into the metric.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any

from absl import logging
import flax.linen as nn
import jax
import numpy as np
import optax
from flax import traverse_util

from wae_jax import fid
from wae_jax import models

FEATURES = 128
# Bump when the architecture or training changes, so stale cached classifiers are not reused.
# 2: convolutions by `models.Conv` (matmuls on CPU).
VERSION = 2
STEPS = 2000  # Adam steps of the cached classifier; tests pass fewer.
PROGRESS_EVERY = 500


class DomainNet(nn.Module):
  """Three stride-2 convs, a 128-unit layer (the features), and the class logits."""
  num_classes: int

  @nn.compact
  def __call__(self, x):
    for width in (32, 64, 128):
      x = nn.relu(models.Conv(width, 3, 2)(x))
    features = nn.relu(nn.Dense(FEATURES)(x.reshape(len(x), -1)))
    return features, nn.Dense(self.num_classes)(features)


def _to_float(images: np.ndarray) -> np.ndarray:
  return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images


@jax.jit
def _apply(params, images):
  num_classes = params["Dense_1"]["bias"].shape[0]
  return DomainNet(num_classes).apply({"params": params}, images)


@dataclasses.dataclass(frozen=True)
class Classifier:
  params: Any
  test_accuracy: float  # On the dataset's test split.
  sha256: str  # Of the parameters: names the features that reference statistics came from.

  def _map(self, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(features, logits) over fixed-size batches (the last one padded): one compile."""
    if images.ndim != 4:
      raise ValueError(f"the domain classifier needs NHWC images, got shape {images.shape}")
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
      chunk = _to_float(images[start:start + batch_size])
      n = len(chunk)
      f, l = _apply(self.params, np.pad(chunk, ((0, batch_size - n),) + ((0, 0),) * 3))
      feats.append(np.asarray(f)[:n])
      logits.append(np.asarray(l)[:n])
    return np.concatenate(feats), np.concatenate(logits)

  def features(self, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Penultimate-layer features (N, 128) of NHWC images in [0, 1] or uint8."""
    return self._map(images, batch_size)[0]

  def accuracy(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    return float((self._map(images, batch_size)[1].argmax(axis=1) == labels).mean())


def train(images: np.ndarray, labels: np.ndarray, num_classes: int, *, steps: int = STEPS,
          batch_size: int = 128, lr: float = 1e-3, seed: int = 0) -> Any:
  """Adam on the cross-entropy over shuffled epochs; a pure function of its arguments."""
  if len(images) < batch_size:
    raise ValueError(f"the domain classifier needs at least {batch_size} training images, "
                     f"got {len(images)}")
  model = DomainNet(num_classes)
  params = model.init(jax.random.key(seed), _to_float(images[:1]))["params"]
  tx = optax.adam(lr)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      _, logits = model.apply({"params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = tx.init(params)
  rng = np.random.default_rng(seed)
  per_epoch = len(images) // batch_size
  for i in range(steps):
    if i % per_epoch == 0:
      order = rng.permutation(len(images))
    idx = np.sort(order[(i % per_epoch) * batch_size:(i % per_epoch + 1) * batch_size])
    params, opt_state = step(params, opt_state, _to_float(images[idx]), labels[idx])
    if (i + 1) % PROGRESS_EVERY == 0 and i + 1 < steps:
      logging.info("Domain classifier: step %d/%d.", i + 1, steps)
  return jax.tree.map(np.asarray, params)


def params_sha256(params: Any) -> str:
  digest = hashlib.sha256()
  for key, value in sorted(traverse_util.flatten_dict(params, sep="/").items()):
    digest.update(key.encode())
    digest.update(np.ascontiguousarray(value, np.float32).tobytes())
  return digest.hexdigest()


def get_or_train(dataset, cache_dir: str, *, steps: int = STEPS, batch_size: int = 128,
                 seed: int = 0) -> Classifier:
  """The dataset's domain classifier, from `cache_dir` or trained now and cached there.

  `dataset` has `.name` and `.train` / `.test` splits with uint8 NHWC `images` and integer
  `labels` (as `data.load` returns). The cache is `<cache_dir>/domain_classifier/<name>.npz`
  (parameters) with a JSON header (the key fields, test accuracy, parameter hash); another
  dataset, training split or setting trains anew and replaces it.
  """
  tr, te = dataset.train, dataset.test
  if tr.labels is None or te.labels is None:
    raise ValueError(f"domain FID needs class labels, and {dataset.name} has none")
  header = {"dataset": dataset.name, "version": VERSION, "steps": steps,
            "batch_size": batch_size, "seed": seed, "train_images": fid.array_sha256(tr.images),
            "train_labels": fid.array_sha256(tr.labels)}
  path = os.path.join(cache_dir, "domain_classifier", fid.file_stem(dataset.name) + ".npz")
  cached = fid.load_cached(path, header)
  if cached is not None:
    arrays, stored = cached
    params = traverse_util.unflatten_dict(arrays, sep="/")
    if params_sha256(params) == stored["params_sha256"]:
      return Classifier(params, stored["test_accuracy"], stored["params_sha256"])
  num_classes = int(max(tr.labels.max(), te.labels.max())) + 1
  logging.info("Training the domain classifier of %s (%d steps, once; cached in %s).",
               dataset.name, steps, path)
  params = train(tr.images, tr.labels.astype(np.int32), num_classes, steps=steps,
                 batch_size=batch_size, seed=seed)
  clf = Classifier(params, 0.0, params_sha256(params))
  clf = dataclasses.replace(clf, test_accuracy=clf.accuracy(te.images, te.labels))
  fid.save_cached(path, {**header, "num_train": len(tr.images), "num_test": len(te.images),
                         "test_accuracy": clf.test_accuracy, "params_sha256": clf.sha256},
                  traverse_util.flatten_dict(params, sep="/"))
  return clf
