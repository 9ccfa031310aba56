"""Data sources, held-out splits, the (seed, step) batch order and sharded placement."""
import gzip
import os

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from wae_jax import data
from wae_jax.config import ConfigError


def _write_idx(path, array, compress):
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
  opener = gzip.open if compress else open
  with opener(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _idx_dir(tmp_path, n_train=30, n_test=10, compress=True):
  rng = np.random.default_rng(0)
  ext = ".gz" if compress else ""
  parts = {"train": n_train, "t10k": n_test}
  for part, n in parts.items():
    _write_idx(tmp_path / f"{part}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28)),
               compress)
    _write_idx(tmp_path / f"{part}-labels-idx1-ubyte{ext}", rng.integers(0, 10, (n,)), compress)
  return tmp_path


def test_bundled_mnist_is_real_and_split():
  ds = data.load("bundled:mnist", heldout=1000)
  assert ds.train.images.shape == (4000, 28, 28, 1) and ds.test.images.shape == (1000, 28, 28, 1)
  assert ds.train.images.dtype == np.uint8 and not ds.symmetric
  # Real digits: mostly black background, all ten classes in both splits.
  assert 0.7 < np.mean(ds.train.images == 0) < 0.9
  assert set(ds.test.labels) == set(range(10)) == set(ds.train.labels)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_directory(tmp_path, compress):
  ds = data.load(f"idx:{_idx_dir(tmp_path, compress=compress)}", heldout=10)
  assert ds.train.images.shape == (30, 28, 28, 1) and ds.test.images.shape == (10, 28, 28, 1)
  assert ds.test.labels.shape == (10,)


def test_empty_idx_directory_names_the_missing_file(tmp_path):
  with pytest.raises(ConfigError, match="config.data.source: .* has no train-images-idx3-ubyte"):
    data.load(f"idx:{tmp_path}", heldout=10)


def test_corrupt_idx_files_are_reported(tmp_path):
  d = _idx_dir(tmp_path)
  (d / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
  with pytest.raises(ConfigError, match="cannot read .*train-images"):
    data.load(f"idx:{d}", heldout=10)
  with gzip.open(d / "train-images-idx3-ubyte.gz", "wb") as f:
    f.write(bytes([0, 0, 8, 3, 0, 0, 0, 30, 0, 0, 0, 28, 0, 0, 0, 28]) + b"\x00" * 100)
  with pytest.raises(ConfigError, match="truncated or corrupt"):
    data.load(f"idx:{d}", heldout=10)


def test_heldout_larger_than_the_data_is_a_config_error():
  with pytest.raises(ConfigError, match="config.data.heldout"):
    data.load("bundled:mnist", heldout=5000)


@pytest.mark.skipif(not os.path.isdir(data.DEBIAN_FASHION_MNIST),
                    reason="Debian's dataset-fashion-mnist")
def test_debian_fashion_mnist():
  ds = data.load(f"idx:{data.DEBIAN_FASHION_MNIST}", heldout=10_000)
  assert ds.train.images.shape == (60_000, 28, 28, 1) and ds.test.images.shape == (10_000, 28, 28, 1)
  assert np.bincount(ds.test.labels).tolist() == [1000] * 10


def test_batch_order_is_a_function_of_seed_and_step():
  n, bs = 103, 10
  epoch0 = np.concatenate([data.batch_indices(n, bs, 7, s) for s in range(10)])
  assert len(set(epoch0)) == 100  # Each epoch: distinct images, remainder dropped.
  epoch1 = np.concatenate([data.batch_indices(n, bs, 7, s) for s in range(10, 20)])
  assert not np.array_equal(epoch0, epoch1)
  np.testing.assert_array_equal(data.batch_indices(n, bs, 7, 13), epoch1[30:40])
  assert not np.array_equal(data.batch_indices(n, bs, 8, 0), epoch0[:10])


def test_batches_resume_where_they_left_off():
  images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1)
  sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
  straight = data.batches(images, 8, 0, 0, sharding)
  first = [np.asarray(next(straight)) for _ in range(9)]
  resumed = data.batches(images, 8, 0, 6, sharding)
  for s in range(6, 9):
    np.testing.assert_array_equal(np.asarray(next(resumed)), first[s])


def test_global_batch_is_sharded_over_all_devices():
  images = np.zeros((40, 2, 2, 1), np.uint8)
  sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
  batch = next(data.batches(images, 16, 0, 0, sharding))
  assert jax.device_count() == 8
  assert batch.shape == (16, 2, 2, 1) and batch.dtype == np.uint8
  assert {s.data.shape for s in batch.addressable_shards} == {(2, 2, 2, 1)}


@pytest.mark.parametrize("name,shape,symmetric", [("mnist", (28, 28, 1), False),
                                                  ("celeb_a", (64, 64, 3), True)])
def test_tfds_sources_on_mock_data(name, shape, symmetric):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    ds = data.load(f"tfds:{name}", heldout=5)
  assert ds.train.images.shape[1:] == shape and ds.symmetric == symmetric
  assert ds.train.images.dtype == np.uint8 and len(ds.test.images) == 5


def test_celeba_close_crop_takes_the_centre():
  tf = pytest.importorskip("tensorflow")
  image = np.zeros((218, 178, 3), np.uint8)
  image[39:179, 19:159] = 200  # The central 140x140 square.
  crop = data.celeba_crop(tf.constant(image)).numpy()
  assert crop.shape == (64, 64, 3)
  assert crop.min() == 200 and crop.max() == 200


def test_to_float_ranges():
  x = np.array([0, 255], np.uint8)
  np.testing.assert_allclose(data.to_float(x, False), [0.0, 1.0])
  np.testing.assert_allclose(data.to_float(x, True), [-1.0, 1.0])


@pytest.mark.parametrize("compress", [True, False])
def test_a_source_counts_its_images_from_its_headers(tmp_path, compress):
  assert data.parse_source(f"idx:{_idx_dir(tmp_path, n_train=30, compress=compress)}").num_images == 30
  assert data.parse_source("bundled:mnist").num_images == 5000
  assert data.parse_source("tfds:mnist").num_images is None  # Only tfds knows.
