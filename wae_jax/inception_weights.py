"""pytorch-fid's Inception weights file: its identity, where it is looked for, and its torch
state dict read without torch.

The file is a torch zip (or legacy) pickle. It is parsed with a restricted unpickler that
only rebuilds plain tensors into numpy arrays, so torch is never needed (and the file can
execute no code). Nothing here imports JAX: `wae-eval --help` names the file and the
variable without paying for it.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

FILE = "pt_inception-2015-12-05-6726825d.pth"
URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FILE
# sha256 of pytorch-fid's release file (95,628,359 bytes); its first 8 digits are in the name.
SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
ENV = "WAE_INCEPTION_WEIGHTS"


class WeightsError(ValueError):
  """The Inception weights are missing, not the expected file, or not an Inception state dict."""


_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


def _dtype(name: str) -> np.dtype:
  if name == "bfloat16":  # numpy knows it once ml_dtypes is imported (a second): only then.
    import ml_dtypes  # pylint: disable=g-import-not-at-top
    return np.dtype(ml_dtypes.bfloat16)
  return np.dtype(name)
# torch.save's legacy (pre-1.6) format starts with this pickled integer.
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


@dataclasses.dataclass(frozen=True)
class _Storage:
  key: str
  dtype: np.dtype
  numel: int


@dataclasses.dataclass(frozen=True)
class _Tensor:
  storage: _Storage
  offset: int
  shape: tuple[int, ...]
  stride: tuple[int, ...]


class _StateDictUnpickler(pickle.Unpickler):
  """Unpickles tensor references and containers, and refuses every other global.

  Tensors come back as `_Tensor` records; their bytes are read afterwards, because the
  legacy format stores them after the pickle.
  """
  _GLOBALS = {
      ("collections", "OrderedDict"): collections.OrderedDict,
      ("torch._utils", "_rebuild_tensor_v2"):
          lambda storage, offset, shape, stride, *_: _Tensor(storage, offset, tuple(shape),
                                                             tuple(stride)),
      ("torch._utils", "_rebuild_parameter"): lambda tensor, *_: tensor,
  }

  def find_class(self, module, name):
    if module == "torch" and name in _STORAGE_DTYPES:
      return _dtype(_STORAGE_DTYPES[name])
    if (module, name) in self._GLOBALS:
      return self._GLOBALS[(module, name)]
    raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a state dict")

  def persistent_load(self, pid):
    # ("storage", dtype, key, location, numel[, view_metadata])
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage")):
      raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
    return _Storage(str(pid[2]), pid[1], int(pid[4]))


def _materialize(tensors: dict[str, Any], raw: dict[str, bytes]) -> dict[str, np.ndarray]:
  """Turns `_Tensor` records into arrays, given each storage's bytes by key."""
  out = {}
  for name, t in tensors.items():
    if not isinstance(t, _Tensor):
      raise pickle.UnpicklingError(f"entry {name!r} is a {type(t).__name__}, not a tensor")
    flat = np.frombuffer(raw[t.storage.key], t.storage.dtype, count=t.storage.numel)
    span = sum((n - 1) * s for n, s in zip(t.shape, t.stride))
    if t.offset < 0 or min(t.stride, default=0) < 0 or (
        0 not in t.shape and t.offset + span >= len(flat)):
      raise pickle.UnpicklingError(f"entry {name!r} lies outside its storage")
    size = t.storage.dtype.itemsize
    out[name] = np.array(np.lib.stride_tricks.as_strided(
        flat[t.offset:], t.shape, tuple(s * size for s in t.stride)))
  return out


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """A torch state dict file (zip or legacy format) as numpy arrays, without torch."""
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        root = pkl[:-len("data.pkl")]
        if root + "byteorder" in z.namelist() and z.read(root + "byteorder") != b"little":
          raise WeightsError(f"{path}: big-endian torch files are not supported")
        with z.open(pkl) as f:
          tensors = _StateDictUnpickler(f).load()
        keys = {t.storage.key for t in tensors.values() if isinstance(t, _Tensor)}
        return _materialize(tensors, {k: z.read(f"{root}data/{k}") for k in keys})
    with open(path, "rb") as f:
      if _StateDictUnpickler(f).load() != _LEGACY_MAGIC:
        raise pickle.UnpicklingError("no torch magic number")
      _StateDictUnpickler(f).load()  # Protocol version.
      _StateDictUnpickler(f).load()  # System info.
      tensors = _StateDictUnpickler(f).load()
      dtypes = {t.storage.key: t.storage.dtype for t in tensors.values()
                if isinstance(t, _Tensor)}
      raw = {}
      for key in _StateDictUnpickler(f).load():
        (numel,) = struct.unpack("<q", f.read(8))
        raw[str(key)] = f.read(numel * dtypes[str(key)].itemsize)
      return _materialize(tensors, raw)
  except (OSError, pickle.UnpicklingError, zipfile.BadZipFile, StopIteration, KeyError,
          EOFError, AttributeError, TypeError, ValueError, struct.error) as e:
    raise WeightsError(f"{path} is not a readable torch state dict "
                       f"({type(e).__name__}: {e})") from None


def file_sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def torch_hub_file() -> str:
  """Where pytorch-fid itself caches the download, so an existing copy is found without setup."""
  torch_home = os.environ.get("TORCH_HOME",
                              os.path.join(os.path.expanduser("~"), ".cache", "torch"))
  return os.path.join(torch_home, "hub", "checkpoints", FILE)


def find(path: str | None = None) -> str:
  """`path`, else $WAE_INCEPTION_WEIGHTS, else pytorch-fid's own download cache."""
  candidates = [path] if path else [os.environ.get(ENV), torch_hub_file()]
  for candidate in filter(None, candidates):
    if os.path.isfile(candidate):
      return candidate
  looked = ", ".join(filter(None, candidates)) or ENV
  raise WeightsError(f"Inception weights not found (looked in: {looked}); download "
                     f"{URL} and pass its path or set {ENV}")
