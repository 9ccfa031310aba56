"""Picture grids of images in [0, 1], and PNG files of them."""

import io

from etils import epath
import numpy as np
from PIL import Image


def grid(images: np.ndarray, cols: int = 8) -> np.ndarray:
  """Tiles float images in [0, 1] into one uint8 picture, with a 1-pixel grey border."""
  n, h, w, c = images.shape
  rows = -(-n // cols)
  out = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 128, np.uint8)
  pixels = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
  for i, img in enumerate(pixels):
    r, q = divmod(i, cols)
    out[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = img
  return out


def save_png(path: epath.PathLike, picture: np.ndarray) -> None:
  """Writes a uint8 picture (local or gs://)."""
  buf = io.BytesIO()
  Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(buf, format="PNG")
  epath.Path(path).write_bytes(buf.getvalue())
