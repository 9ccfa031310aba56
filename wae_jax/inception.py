"""Inception-v3 as used for FID, in Flax, with pytorch-fid's weights.

FID numbers are only comparable when the network is the one everybody uses: the TF graph of
2015-12-05 as ported by pytorch-fid (its FIDInceptionA/C/E blocks: average pools that skip
the padding, a max pool in the last block, BatchNorm eps 1e-3), fed 299x299 bilinear resizes
without antialiasing, scaled to [-1, 1], read at pool3 (2048 features). This module builds
exactly that network, so pytorch-fid's state dict loads into it one tensor per parameter.

The weights file, and reading it without torch, live in `inception_weights`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from wae_jax import data
from wae_jax import inception_weights as weights_lib
from wae_jax.inception_weights import WeightsError

SIZE = 299
FEATURES = 2048


# ----------------------------------------------------------------------------------------
# The network.


class BasicConv(nn.Module):
  """Conv (no bias) -> BatchNorm (running statistics, eps 1e-3) -> ReLU."""
  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: str = "SAME"  # Every padded conv of the graph is stride 1, odd-sized, symmetric.

  @nn.compact
  def __call__(self, x):
    # Full float32 even where the default is bf16 passes (TPU): FID moves with small errors.
    x = nn.Conv(self.features, self.kernel, self.strides, self.padding, use_bias=False,
                precision=jax.lax.Precision.HIGHEST, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _avg_pool(x):
  """3x3 stride-1 average that, like TF, leaves the zero padding out of the count."""
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x):
  return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
    b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
    b5 = BasicConv(64, (5, 5), name="branch5x5_2")(b5)
    b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = BasicConv(96, (3, 3), name="branch3x3dbl_2")(b3)
    b3 = BasicConv(96, (3, 3), name="branch3x3dbl_3")(b3)
    bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), 2, "VALID", name="branch3x3")(x)
    bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv(96, (3, 3), name="branch3x3dbl_2")(bd)
    bd = BasicConv(96, (3, 3), 2, "VALID", name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool(x)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
    b7 = BasicConv(c7, (1, 1), name="branch7x7_1")(x)
    b7 = BasicConv(c7, (1, 7), name="branch7x7_2")(b7)
    b7 = BasicConv(192, (7, 1), name="branch7x7_3")(b7)
    bd = BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = BasicConv(c7, (7, 1), name="branch7x7dbl_2")(bd)
    bd = BasicConv(c7, (1, 7), name="branch7x7dbl_3")(bd)
    bd = BasicConv(c7, (7, 1), name="branch7x7dbl_4")(bd)
    bd = BasicConv(192, (1, 7), name="branch7x7dbl_5")(bd)
    bp = BasicConv(192, (1, 1), name="branch_pool")(_avg_pool(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
    b3 = BasicConv(320, (3, 3), 2, "VALID", name="branch3x3_2")(b3)
    b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = BasicConv(192, (1, 7), name="branch7x7x3_2")(b7)
    b7 = BasicConv(192, (7, 1), name="branch7x7x3_3")(b7)
    b7 = BasicConv(192, (3, 3), 2, "VALID", name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool(x)], axis=-1)


class InceptionE(nn.Module):
  """The last two blocks; the FID graph's final one pools with max instead of average."""
  max_pool: bool = False

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
    b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([BasicConv(384, (1, 3), name="branch3x3_2a")(b3),
                          BasicConv(384, (3, 1), name="branch3x3_2b")(b3)], axis=-1)
    bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv(384, (3, 3), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([BasicConv(384, (1, 3), name="branch3x3dbl_3a")(bd),
                          BasicConv(384, (3, 1), name="branch3x3dbl_3b")(bd)], axis=-1)
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))  # Pads with -inf.
    else:
      pooled = _avg_pool(x)
    bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def preprocess(images: jax.Array) -> jax.Array:
  """[0, 1] NHWC, any size, grey or RGB -> 299x299x3 in [-1, 1], as pytorch-fid feeds it.

  The resize is torch's bilinear interpolate (align_corners=False): no antialiasing when
  shrinking, which jax.image.resize does by default; FID moves with the resize filter.
  """
  x = images.astype(jnp.float32)
  x = jax.image.resize(x, (x.shape[0], SIZE, SIZE, x.shape[3]), "bilinear", antialias=False)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  return 2.0 * x - 1.0


class InceptionV3(nn.Module):
  """Images in [0, 1], NHWC, any size, 1 or 3 channels -> pool3 features (N, 2048).

  Submodule names are pytorch-fid's, so its state dict maps onto the variables by name.
  """

  @nn.compact
  def __call__(self, images):
    x = preprocess(images)
    x = BasicConv(32, (3, 3), 2, "VALID", name="Conv2d_1a_3x3")(x)
    x = BasicConv(32, (3, 3), 1, "VALID", name="Conv2d_2a_3x3")(x)
    x = BasicConv(64, (3, 3), name="Conv2d_2b_3x3")(x)
    x = _max_pool(x)
    x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv(192, (3, 3), 1, "VALID", name="Conv2d_4a_3x3")(x)
    x = _max_pool(x)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    x = InceptionC(128, name="Mixed_6b")(x)
    x = InceptionC(160, name="Mixed_6c")(x)
    x = InceptionC(160, name="Mixed_6d")(x)
    x = InceptionC(192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(max_pool=False, name="Mixed_7b")(x)
    x = InceptionE(max_pool=True, name="Mixed_7c")(x)
    return x.mean(axis=(1, 2))


@jax.jit
def pool3(variables, images: jax.Array) -> jax.Array:
  """Pool3 features of one batch (images in [0, 1], NHWC); follows the inputs' sharding."""
  return InceptionV3().apply(variables, images)


def features(variables, images: np.ndarray, mesh: Mesh, batch_size: int = 200) -> np.ndarray:
  """Pool3 features (N, 2048) float32 of a host array of any length, batch by batch.

  `images` are NHWC, float in [0, 1] or uint8 (scaled by 1/255). Batches are sharded over the
  mesh's `data` axis (padded to a multiple of its size) and the next batch is dispatched
  before the last one is fetched, so transfers overlap compute.
  """
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"Inception features need NHWC images with 1 or 3 channels, "
                     f"got shape {images.shape}")
  scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0
  n = len(images)
  batch_size = min(batch_size, max(n, 1))  # Fewer images than a batch: pad only to the mesh.
  batch_size = -(-batch_size // mesh.size) * mesh.size
  batch_sharding = NamedSharding(mesh, P("data"))
  variables = jax.device_put(variables, NamedSharding(mesh, P()))
  out, pending = [], None
  for start in range(0, n, batch_size):
    chunk = np.asarray(images[start:start + batch_size], np.float32) * scale
    chunk = np.pad(chunk, ((0, batch_size - len(chunk)),) + ((0, 0),) * 3)
    result = pool3(variables, data.place(chunk, batch_sharding))
    if pending is not None:
      out.append(multihost_utils.process_allgather(pending, tiled=True))
    pending = result
  if pending is not None:
    out.append(multihost_utils.process_allgather(pending, tiled=True))
  return np.concatenate(out)[:n] if out else np.zeros((0, FEATURES), np.float32)


# flax (collection, leaf) -> the torch state dict's suffix.
_TORCH_NAMES = {("params", "kernel"): "weight", ("params", "scale"): "weight",
                ("params", "bias"): "bias", ("batch_stats", "mean"): "running_mean",
                ("batch_stats", "var"): "running_var"}


def variables_from_state_dict(state_dict: dict[str, np.ndarray]) -> dict[str, Any]:
  """pytorch-fid's state dict -> InceptionV3 variables (OIHW kernels become HWIO).

  Every variable must be present with its exact shape; the classifier head (`fc.*`) and
  BatchNorm's `num_batches_tracked` are not part of pool3 and are ignored.
  """
  expected = jax.eval_shape(InceptionV3().init, jax.random.key(0),
                            jnp.zeros((1, SIZE, SIZE, 3), jnp.float32))
  flat = {}
  for key, spec in traverse_util.flatten_dict(expected).items():
    collection, *modules, leaf = key
    name = ".".join(modules) + "." + _TORCH_NAMES[(collection, leaf)]
    if name not in state_dict:
      raise WeightsError(f"not a pytorch-fid Inception state dict: {name} is missing")
    value = np.asarray(state_dict[name], np.float32)
    if leaf == "kernel" and value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)
    if value.shape != spec.shape:
      raise WeightsError(f"not a pytorch-fid Inception state dict: {name} has shape "
                         f"{value.shape}, expected {spec.shape}")
    flat[key] = value
  return traverse_util.unflatten_dict(flat)


def load_params(path: str | None = None, sha256: str | None = weights_lib.SHA256
                ) -> tuple[dict[str, Any], str]:
  """Loads pytorch-fid's Inception weights as InceptionV3 variables; returns them and the
  file's sha256 (recorded next to every FID, so numbers from other weights never mix).

  `sha256=None` skips the check, for tests with random weights; the returned hash still
  names the file. Raises WeightsError with a one-line message on any problem.
  """
  path = weights_lib.find(path)
  digest = weights_lib.file_sha256(path)
  if sha256 is not None and digest != sha256:
    raise WeightsError(f"{path} has sha256 {digest[:16]}..., not that of pytorch-fid's "
                       f"{weights_lib.FILE} ({sha256[:16]}...); download {weights_lib.URL}")
  return variables_from_state_dict(weights_lib.read_state_dict(path)), digest
