"""Picture grids of images in [0, 1], and PNG files of them."""

import io

from etils import epath
import numpy as np
from PIL import Image


# Each image of a grid is enlarged (nearest neighbour) to at least this many pixels a side:
# 28x28 digits at their own size are too small to judge.
MIN_SIDE = 64


def grid(images: np.ndarray, cols: int = 8, min_side: int = MIN_SIDE) -> np.ndarray:
  """Tiles float images in [0, 1] into one uint8 picture, with a 1-pixel grey border."""
  scale = -(-min_side // min(images.shape[1:3]))
  images = images.repeat(scale, axis=1).repeat(scale, axis=2)
  n, h, w, c = images.shape
  rows = -(-n // cols)
  out = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 128, np.uint8)
  pixels = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
  for i, img in enumerate(pixels):
    r, q = divmod(i, cols)
    out[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = img
  return out


def png_bytes(picture: np.ndarray) -> bytes:
  """A uint8 picture (height, width, channels) encoded as PNG."""
  buf = io.BytesIO()
  Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(buf, format="PNG")
  return buf.getvalue()


def save_png(path: epath.PathLike, picture: np.ndarray) -> None:
  """Writes a uint8 picture (local or gs://)."""
  epath.Path(path).write_bytes(png_bytes(picture))
