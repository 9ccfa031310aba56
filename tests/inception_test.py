"""Inception-v3 for FID: input pipeline, weight loading, batching; and equality with
pytorch-fid's network (torch_ref tests, run by .ci/torch_ref.sh in their own venv)."""

import functools
import json

import jax
import numpy as np
import pytest
from flax import traverse_util

from wae_jax import data
from wae_jax import fid
from wae_jax import inception
from wae_jax import inception_weights

def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
  """A state dict with pytorch-fid's names and shapes (OIHW kernels), random values whose
  features stay O(1): He-scaled kernels, BatchNorm close to the identity. A fresh dict (of
  shared, read-only arrays) each call."""
  return dict(_random_state_dict(seed))


@functools.lru_cache(maxsize=2)
def _random_state_dict(seed: int) -> dict[str, np.ndarray]:
  shapes = jax.eval_shape(inception.InceptionV3().init, jax.random.key(0),
                          np.zeros((1, 299, 299, 3), np.float32))
  rng = np.random.default_rng(seed)
  sd = {}
  for (collection, *modules, leaf), spec in traverse_util.flatten_dict(shapes).items():
    prefix = ".".join(modules)
    if leaf == "kernel":
      h, w, i, o = spec.shape
      sd[prefix + ".weight"] = rng.normal(0, np.sqrt(2 / (h * w * i)), (o, i, h, w))
    elif leaf == "scale":
      sd[prefix + ".weight"] = rng.uniform(0.5, 1.5, spec.shape)
    elif leaf == "bias":
      sd[prefix + ".bias"] = rng.normal(0, 0.2, spec.shape)
    elif leaf == "mean":
      sd[prefix + ".running_mean"] = rng.normal(0, 0.2, spec.shape)
    else:
      sd[prefix + ".running_var"] = rng.uniform(0.5, 1.5, spec.shape)
  sd = {k: v.astype(np.float32) for k, v in sd.items()}
  for v in sd.values():
    v.flags.writeable = False
  return sd


@pytest.fixture(scope="module")
def variables():
  return inception.variables_from_state_dict(random_state_dict())


def torch_bilinear(images: np.ndarray, size: int) -> np.ndarray:
  """torch's F.interpolate(mode='bilinear', align_corners=False), written out in numpy."""

  def matrix(n_in):
    src = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    m = np.zeros((size, n_in))
    np.add.at(m, (np.arange(size), lo), 1 - (src - lo))
    np.add.at(m, (np.arange(size), hi), src - lo)
    return m

  return np.einsum("yh,nhwc,xw->nyxc", matrix(images.shape[1]), images,
                   matrix(images.shape[2]), optimize=True)


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 299, 299, 3), (1, 512, 333, 3)])
def test_preprocess_is_torch_bilinear_without_antialias(shape):
  # The 512x333 case shrinks, where jax.image.resize's default antialiasing would differ by
  # ~0.1; the tolerance covers float32 source coordinates (torch computes them in float32 too).
  x = np.random.default_rng(0).random(shape, dtype=np.float32)
  expected = 2 * torch_bilinear(x, 299) - 1
  if shape[-1] == 1:
    expected = np.repeat(expected, 3, axis=-1)
  got = np.asarray(inception.preprocess(x))
  assert got.shape == (shape[0], 299, 299, 3)
  np.testing.assert_allclose(got, expected, atol=2e-4)


def test_state_dict_maps_onto_flax_variables():
  sd = random_state_dict(1)
  v = inception.variables_from_state_dict(sd)
  conv = sd["Mixed_6b.branch7x7_2.conv.weight"]  # (out, in, 1, 7)
  kernel = v["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]  # (1, 7, in, out)
  assert kernel.shape == (1, 7, 128, 128)
  np.testing.assert_array_equal(kernel[0, 5, 3, 9], conv[9, 3, 0, 5])
  bn = v["batch_stats"]["Conv2d_4a_3x3"]["bn"]
  np.testing.assert_array_equal(bn["var"], sd["Conv2d_4a_3x3.bn.running_var"])
  np.testing.assert_array_equal(v["params"]["Mixed_7c"]["branch_pool"]["bn"]["scale"],
                                sd["Mixed_7c.branch_pool.bn.weight"])
  n_params = sum(a.size for a in jax.tree.leaves(v["params"]))
  assert n_params == sum(a.size for k, a in sd.items() if "running" not in k)


def test_state_dict_missing_or_misshaped_entries_are_named():
  sd = random_state_dict()
  del sd["Mixed_5c.branch5x5_2.bn.running_mean"]
  with pytest.raises(inception_weights.WeightsError, match="Mixed_5c.branch5x5_2.bn.running_mean"):
    inception.variables_from_state_dict(sd)
  sd = random_state_dict()
  sd["Conv2d_1a_3x3.conv.weight"] = np.zeros((32, 1, 3, 3), np.float32)
  with pytest.raises(inception_weights.WeightsError, match=r"Conv2d_1a_3x3.conv.weight has shape"):
    inception.variables_from_state_dict(sd)


def test_missing_weights_say_where_to_get_them(tmp_path, monkeypatch):
  monkeypatch.delenv(inception_weights.ENV, raising=False)
  monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # No weights in torch's cache.
  for path in (None, str(tmp_path / "absent.pth")):
    with pytest.raises(inception_weights.WeightsError) as e:
      inception.load_params(path)
    assert inception_weights.URL in str(e.value) and "\n" not in str(e.value)


def test_weights_file_hash_is_checked(tmp_path, monkeypatch):
  path = tmp_path / inception_weights.FILE
  path.write_bytes(b"not the weights")
  monkeypatch.setenv(inception_weights.ENV, str(path))
  assert inception_weights.find() == str(path)
  with pytest.raises(inception_weights.WeightsError, match="sha256") as e:
    inception.load_params()
  assert inception_weights.URL in str(e.value) and "\n" not in str(e.value)
  # With the right hash the check passes and the file is parsed (and found not to be one).
  digest = inception_weights.file_sha256(str(path))
  with pytest.raises(inception_weights.WeightsError, match="not a readable torch state dict"):
    inception.load_params(sha256=digest)


def test_features_are_batched_sharded_and_padded(variables):
  mesh = jax.sharding.Mesh(jax.devices(), ("data",))
  assert mesh.size == 8  # conftest: 8 simulated devices, so padding and sharding are real.
  rng = np.random.default_rng(0)
  grey = rng.integers(0, 256, (10, 16, 16, 1), dtype=np.uint8)
  got = inception.features(variables, grey, mesh, batch_size=8)
  assert got.shape == (10, 2048) and got.dtype == np.float32
  assert np.isfinite(got).all() and got.std() > 0.1
  # The same images one at a time, as floats, as RGB: the same rows.
  rgb = np.repeat(grey[:8].astype(np.float32) / 255, 3, axis=-1)
  alone = np.asarray(inception.pool3(variables, rgb))
  np.testing.assert_allclose(got[:8], alone, atol=1e-4, rtol=1e-5)
  assert np.abs(got[0] - got[1]).max() > 1e-3  # Rows are per image.


def test_features_reject_bad_shapes(variables):
  mesh = jax.sharding.Mesh(jax.devices(), ("data",))
  with pytest.raises(ValueError, match="1 or 3 channels"):
    inception.features(variables, np.zeros((2, 8, 8, 2), np.float32), mesh)


@pytest.mark.slow  # A 2048-dimensional Frechet distance: seconds alone, minutes on a busy CPU.
def test_inception_fid_against_cached_training_statistics(variables, tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
  dataset = data.Dataset("fake:rgb", data.Split(images, None), data.Split(images, None),
                         data.Pixels(symmetric=False))
  mesh = jax.sharding.Mesh(jax.devices(), ("data",))
  # Samples equal to the training images, as floats: the same statistics, so FID 0.
  same, protocol = fid.inception_fid(images / 255, dataset, str(tmp_path), variables, "f00d",
                                     mesh)
  assert abs(same) < 1e-6
  assert (protocol["samples"], protocol["reference_n"], protocol["reference_weights"]) == (
      8, 8, "f00d") and "bilinear 299" in protocol["reference_preprocessing"]
  (stats,) = (tmp_path / "fid").glob("*.npz")
  header = json.loads(stats.with_suffix(".json").read_text())
  assert header["weights"] == "f00d" and header["n"] == 8 and header["dataset"] == "fake:rgb"


# ----------------------------------------------------------------------------------------
# Equality with pytorch-fid (torch_ref).


def random_fid_inception(seed: int):
  """pytorch-fid's FID Inception (fid_inception_v3) with random weights and BN statistics.

  The download is patched out: construction loads nothing, then every tensor is drawn.
  """
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  pfi = pytest.importorskip("pytorch_fid.inception")
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: None)
    mp.setattr(torchvision.models.Inception3, "load_state_dict", lambda *a, **k: None)
    net = pfi.fid_inception_v3()
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.Conv2d):
        m.weight.normal_(0, (2 / m.weight[0].numel()) ** 0.5, generator=g)
      elif isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5, generator=g)
        m.bias.normal_(0, 0.2, generator=g)
        m.running_mean.normal_(0, 0.2, generator=g)
        m.running_var.uniform_(0.5, 1.5, generator=g)
  return net


@pytest.fixture(scope="module")
def torch_pair(tmp_path_factory):
  """(pytorch-fid's InceptionV3 wrapper, its .pth file), sharing random weights."""
  torch = pytest.importorskip("torch")
  pfi = pytest.importorskip("pytorch_fid.inception")
  path = str(tmp_path_factory.mktemp("weights") / "random_inception.pth")
  torch.save(random_fid_inception(0).state_dict(), path)
  # The wrapper's own construction path, fed our file instead of the download (its
  # load_state_dict is strict, so the file has exactly pytorch-fid's keys).
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: torch.load(path))
    net = pfi.InceptionV3([3], resize_input=True, normalize_input=True,
                          use_fid_inception=True).eval()
  return net, path


@pytest.mark.torch_ref
def test_real_layout_state_dict_reads_in_both_torch_formats(torch_pair, tmp_path):
  torch = pytest.importorskip("torch")
  _, path = torch_pair
  expected = torch.load(path)
  assert len(expected) == 566  # As pytorch-fid's release file.
  legacy = str(tmp_path / "legacy.pth")
  torch.save(expected, legacy, _use_new_zipfile_serialization=False)
  for p in (path, legacy):
    got = inception_weights.read_state_dict(p)
    assert sorted(got) == sorted(expected)
    for k, v in expected.items():
      np.testing.assert_array_equal(got[k], v.numpy())


@pytest.mark.torch_ref
@pytest.mark.parametrize("shape", [(3, 28, 28, 1), (3, 64, 64, 3), (2, 299, 299, 3),
                                   (2, 360, 320, 3)])
def test_pool3_features_equal_pytorch_fid(torch_pair, shape):
  torch = pytest.importorskip("torch")
  net, path = torch_pair
  variables, digest = inception.load_params(path, sha256=None)
  assert digest == inception_weights.file_sha256(path)
  x = np.random.default_rng(sum(shape)).random(shape, dtype=np.float32)
  xt = torch.from_numpy(x).permute(0, 3, 1, 2)
  if shape[-1] == 1:
    xt = xt.repeat(1, 3, 1, 1)  # pytorch-fid takes RGB; grey images are repeated.
  with torch.no_grad():
    expected = net(xt)[0][:, :, 0, 0].numpy()
  mesh = jax.sharding.Mesh(jax.devices(), ("data",))
  got = inception.features(variables, x, mesh, batch_size=8)
  assert expected.std() > 1  # Features of a working network, not near-zeros.
  np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
