"""Datasets held in host memory as uint8 images, their batch order, and batch placement.

Every source yields all of its images in a fixed order; the last `heldout` of them are the
held-out split (for MNIST with heldout=10,000 this is the official test set, as in the
public WAE code). Batches are a pure function of (seed, step), so a resumed run sees exactly
the batches an uninterrupted one would. Images travel to the devices as uint8 and become
floats inside the jitted step.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import itertools
import os
from typing import Iterator

import jax
import numpy as np

from wae_jax.errors import ConfigError

BUNDLED_MNIST = os.path.join(os.path.dirname(__file__), "assets", "mnist_5k.npz")
# CelebA's aligned faces are 218x178; the paper's close crop is the central 140x140.
CELEBA_CROP = 140
CELEBA_SIZE = 64
TFDS_DATASETS = ("mnist", "fashion_mnist", "celeb_a")
IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1),
                "celeb_a": (CELEBA_SIZE, CELEBA_SIZE, 3)}
# Where Debian's `dataset-fashion-mnist` puts the full Fashion-MNIST (gzipped IDX files).
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # (N, H, W, C) uint8.
  labels: np.ndarray | None  # (N,) int, where the source has labels.


@dataclasses.dataclass(frozen=True)
class Pixels:
  """How uint8 pixels map to the model's floats: [0, 1] for a sigmoid decoder, or [-1, 1]
  for a tanh one (CelebA, as in the public code)."""
  symmetric: bool

  def to_float(self, images: jax.Array) -> jax.Array:
    return to_float(images, self.symmetric)

  def to_unit(self, x: np.ndarray) -> np.ndarray:
    """Model floats -> [0, 1], for pictures and sharpness."""
    return (x + 1.0) / 2.0 if self.symmetric else x


@dataclasses.dataclass(frozen=True)
class Source:
  """A parsed `config.data.source`: `bundled:mnist`, `idx:<dir>` or `tfds:<name>`."""
  kind: str
  name: str

  @property
  def pixels(self) -> Pixels:
    return Pixels(symmetric=self.name == "celeb_a")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) without loading the images: what a trained model needs to be rebuilt."""
    if self.kind == "idx":
      path = _idx_path(self.name, "train_images")
      with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        return _idx_header(f.read(16), path)[0][1:] + (1,)
    return IMAGE_SHAPES[self.name]

  @property
  def num_images(self) -> int | None:
    """How many images the source holds, read from its headers (None: not without tfds)."""
    if self.kind == "idx":
      path = _idx_path(self.name, "train_images")
      with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        return _idx_header(f.read(16), path)[0][0]
    if self.kind == "bundled":
      with np.load(BUNDLED_MNIST) as f:
        return len(f["labels"])
    return None


def parse_source(source: str) -> Source:
  """The one parser of `config.data.source`; raises ConfigError naming the field."""
  kind, _, name = source.partition(":")
  if kind == "bundled":
    ok, why = name == "mnist", f"the only bundled dataset is 'mnist', got {name!r}"
  elif kind == "tfds":
    ok, why = name in TFDS_DATASETS, (f"unknown tfds dataset {name!r} "
                                      f"(expected one of {', '.join(TFDS_DATASETS)})")
  elif kind == "idx":
    ok, why = os.path.isdir(name), f"no such directory: {name!r}"
  else:
    ok, why = False, (f"unknown source {source!r} "
                      "(expected bundled:mnist, idx:<dir> or tfds:<name>)")
  if not ok:
    raise ConfigError(f"config.data.source: {why}")
  return Source(kind, name)


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train: Split
  test: Split
  pixels: Pixels

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.train.images.shape[1:]

  @property
  def symmetric(self) -> bool:
    return self.pixels.symmetric

  def steps_per_epoch(self, batch_size: int) -> int:
    return len(self.train.images) // batch_size


def load(source: str, heldout: int) -> Dataset:
  """Loads `bundled:mnist`, `idx:<dir>` or `tfds:<name>`, holding out the last `heldout` images."""
  src = parse_source(source)
  if src.kind == "bundled":
    with np.load(BUNDLED_MNIST) as f:
      images, labels = f["images"], f["labels"]
  elif src.kind == "idx":
    images, labels = _load_idx_dir(src.name)
  else:
    images, labels = _load_tfds(src.name)
  _check_heldout(source, heldout, len(images))
  cut = len(images) - heldout
  split = lambda a, s: None if a is None else a[s]
  return Dataset(
      name=source,
      train=Split(images[:cut], split(labels, slice(None, cut))),
      test=Split(images[cut:], split(labels, slice(cut, None))),
      pixels=src.pixels,
  )


def to_float(images: jax.Array, symmetric: bool) -> jax.Array:
  """uint8 -> float32 in [0, 1], or in [-1, 1] for tanh decoders."""
  x = images.astype(np.float32) / 255.0
  return 2.0 * x - 1.0 if symmetric else x


def _read_idx(path: str) -> np.ndarray:
  """Reads one IDX file (the MNIST format), gzipped or not."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise ConfigError(f"config.data.source: cannot read {path}: {e}") from None
  dims, header = _idx_header(raw, path)
  if len(raw) != header + int(np.prod(dims)):
    raise ConfigError(f"config.data.source: {path} is truncated or corrupt "
                      f"(header says {dims}, file has {len(raw) - header} data bytes)")
  return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _idx_header(raw: bytes, path: str) -> tuple[tuple[int, ...], int]:
  """The dimensions an IDX file's header declares, and the header's length in bytes."""
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
    raise ConfigError(f"config.data.source: {path} is not an IDX file of unsigned bytes")
  ndim = raw[3]
  return tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)), 4 + 4 * ndim


def _idx_path(directory: str, key: str) -> str:
  stem = IDX_FILES[key]
  for ext in ("", ".gz"):
    if os.path.exists(os.path.join(directory, stem + ext)):
      return os.path.join(directory, stem + ext)
  raise ConfigError(f"config.data.source: {directory} has no {stem}[.gz] "
                    f"(an IDX directory needs {', '.join(IDX_FILES.values())})")


def _load_idx_dir(directory: str) -> tuple[np.ndarray, np.ndarray]:
  """Train then t10k images of an MNIST-format directory (e.g. Debian's Fashion-MNIST)."""
  arrays = {key: _read_idx(_idx_path(directory, key)) for key in IDX_FILES}
  for part in ("train", "test"):
    images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
      raise ConfigError(f"config.data.source: {directory}: {part} images {images.shape} "
                        f"and labels {labels.shape} do not match")
  images = np.concatenate([arrays["train_images"], arrays["test_images"]])[..., None]
  return images, np.concatenate([arrays["train_labels"], arrays["test_labels"]]).astype(np.int32)


def _load_tfds(name: str) -> tuple[np.ndarray, np.ndarray | None]:
  """All splits of a tfds dataset, in tfds order; CelebA gets the paper's close crop."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConfigError(f"config.data.source: tfds:{name} reads through TensorFlow, which is "
                      "not installed: pip install 'wae-jax[tf]'") from None
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  tf.config.set_visible_devices([], "GPU")  # Keep TF off the accelerators JAX uses.
  try:
    builder = tfds.builder(name)
    splits = list(builder.info.splits)
    order = [s for s in ("train", "validation", "test") if s in splits]
    ds = builder.as_dataset(split="+".join(order), shuffle_files=False)
  except Exception as e:  # tfds raises many types for a missing or unprepared dataset.
    raise ConfigError(f"config.data.source: tfds:{name} is not available ({type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}); prepare it with "
                      f"`tfds build {name}` or set TFDS_DATA_DIR") from None
  if name == "celeb_a":
    ds = ds.map(lambda ex: (celeba_crop(ex["image"]), tf.constant(0, tf.int64)),
                num_parallel_calls=tf.data.AUTOTUNE)
  else:
    ds = ds.map(lambda ex: (ex["image"], ex["label"]))
  images, labels = [], []
  for x, y in tfds.as_numpy(ds.batch(4096)):
    images.append(x)
    labels.append(y)
  labels = np.concatenate(labels).astype(np.int32)
  return np.concatenate(images), (None if name == "celeb_a" else labels)


def celeba_crop(image):
  """The paper's close crop: central 140x140, antialiased resize to 64x64, uint8."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  h, w = image.shape[0], image.shape[1]
  top, left = (h - CELEBA_CROP) // 2, (w - CELEBA_CROP) // 2
  crop = image[top:top + CELEBA_CROP, left:left + CELEBA_CROP]
  small = tf.image.resize(crop, (CELEBA_SIZE, CELEBA_SIZE), antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(small), 0, 255), tf.uint8)


def _check_heldout(source: str, heldout: int, n: int) -> None:
  if not 0 < heldout < n:
    raise ConfigError(f"config.data.heldout: {heldout} must be between 1 and {n - 1} "
                      f"for {source} ({n} images)")


def check_sizes(c, num_images: int) -> None:
  """Refuses, before a trial writes anything (or a sweep starts one), a held-out split or a
  batch that a source of `num_images` cannot give (ConfigError naming the field)."""
  _check_heldout(c.data.source, c.data.heldout, num_images)
  check_fits(c, num_images - c.data.heldout)


def check_fits(c, n: int) -> None:
  """Refuses a batch that the `n` training images left after `data.heldout` cannot fill."""
  fields = ["batch_size"] + ["pretrain.batch_size"] * (c.pretrain.max_steps > 0)
  for field in fields:
    size = c.batch_size if field == "batch_size" else c.pretrain.batch_size
    if size > n:
      raise ConfigError(f"config.{field}: {size} exceeds the {n} training images that "
                        f"{c.data.source} leaves after config.data.heldout={c.data.heldout}")


@functools.lru_cache(maxsize=2)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
  """Indices of the global batch at `step`: epochs are fresh (seed, epoch) permutations."""
  steps_per_epoch = n // batch_size
  if steps_per_epoch == 0:
    raise ConfigError(f"config.batch_size: {batch_size} exceeds the {n} training images")
  epoch, i = divmod(step, steps_per_epoch)
  return _permutation(n, seed, epoch)[i * batch_size:(i + 1) * batch_size]


def place(images: np.ndarray, sharding: jax.sharding.NamedSharding, axis: int = 0) -> jax.Array:
  """Puts a global batch on the mesh; on a multi-host slice each host sends only its rows.

  `axis` is the batch axis (1 for a stack of several trials' batches).
  """
  per_process = images.shape[axis] // jax.process_count()
  start = jax.process_index() * per_process
  local = np.take(images, np.arange(start, start + per_process), axis=axis)
  return jax.make_array_from_process_local_data(sharding, local, images.shape)


def batches(images: np.ndarray, batch_size: int, seed: int, start_step: int,
            sharding: jax.sharding.NamedSharding) -> Iterator[jax.Array]:
  """Sharded global batches from `start_step` on."""
  for step in itertools.count(start_step):
    yield place(images[batch_indices(len(images), batch_size, seed, step)], sharding)
