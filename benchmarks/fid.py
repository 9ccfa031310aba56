"""FID throughput: Inception pool3 features (Flax vs pytorch-fid) and the Frechet distance.

Needs torch and pytorch-fid, so run it in the reference venv (`bash .ci/torch_ref.sh` makes it):
  .venv-ref/bin/python benchmarks/fid.py [--num_images 64] [--batch_size 32]
Both networks get the same weights (pytorch-fid's architecture, untrained: throughput does
not depend on the values; tests/inception_test.py checks equality) and the same images.
One JSON object per measurement on stdout; loadavg_1m tells how busy the machine was.
"""

import argparse
import json
import os
import tempfile
import time
from unittest import mock

import jax
import numpy as np
import pytorch_fid.fid_score
import pytorch_fid.inception
import torch
import torchvision

from wae_jax import fid
from wae_jax import inception


def pytorch_fid_network(path: str):
  """pytorch-fid's InceptionV3 wrapper, its download patched out; its weights saved to `path`."""
  pfi = pytorch_fid.inception
  with mock.patch.object(pfi, "load_state_dict_from_url", return_value=None), \
       mock.patch.object(torchvision.models.Inception3, "load_state_dict"):
    torch.save(pfi.fid_inception_v3().state_dict(), path)
  with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: torch.load(path)):
    return pfi.InceptionV3([3]).eval()


def timed(fn, repeats: int) -> tuple[float, object]:
  """Best wall time of `repeats` calls after one warm-up call (compilation, allocation)."""
  out = fn()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - start)
  return best, out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_images", type=int, default=64)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()

  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "inception.pth")
    net = pytorch_fid_network(path)
    variables, _ = inception.load_params(path, sha256=None)
  mesh = jax.sharding.Mesh(jax.devices(), ("data",))
  rng = np.random.default_rng(0)
  common = {"num_images": args.num_images, "batch_size": args.batch_size,
            "cpu_count": os.cpu_count()}

  for h, w, c in [(28, 28, 1), (64, 64, 3)]:
    images = rng.random((args.num_images, h, w, c), dtype=np.float32)

    def flax_features():
      return inception.features(variables, images, mesh, args.batch_size)

    def torch_features():
      out = []
      with torch.no_grad():
        for start in range(0, len(images), args.batch_size):
          x = torch.from_numpy(images[start:start + args.batch_size]).permute(0, 3, 1, 2)
          out.append(net(x.expand(-1, 3, -1, -1))[0][:, :, 0, 0].numpy())
      return np.concatenate(out)

    for impl, fn, extra in [
        ("flax", flax_features, {"devices": len(jax.devices()),
                                 "backend": jax.default_backend()}),
        ("pytorch-fid", torch_features, {"torch_threads": torch.get_num_threads()})]:
      seconds, _ = timed(fn, args.repeats)
      print(json.dumps({"bench": "inception_pool3", "impl": impl, "input": f"{h}x{w}x{c}",
                        "images_per_s": round(args.num_images / seconds, 2), **common,
                        **extra, "loadavg_1m": os.getloadavg()[0]}), flush=True)

  d = inception.FEATURES
  stats = [fid.statistics(rng.normal(size=(2 * d, d)) @ rng.normal(size=(d, d)) / np.sqrt(d))
           for _ in range(2)]
  (mu1, s1), (mu2, s2) = stats
  for impl, fn in [("wae_jax.fid (eigh)", fid.frechet_distance),
                   ("pytorch-fid (sqrtm)", pytorch_fid.fid_score.calculate_frechet_distance)]:
    seconds, value = timed(lambda: fn(mu1, s1, mu2, s2), 1)
    print(json.dumps({"bench": "frechet_distance", "impl": impl, "dim": d, "seconds":
                      round(seconds, 2), "value": float(value), "cpu_count": os.cpu_count(),
                      "loadavg_1m": os.getloadavg()[0]}), flush=True)


if __name__ == "__main__":
  main()
