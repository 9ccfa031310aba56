"""The event writer: what TensorBoard's own loader reads back, with TensorFlow never imported."""
import subprocess
import sys

import numpy as np

from wae_jax import events


def test_scalars_images_and_the_hparams_session_read_back(tmp_path):
  w = events.Writer(tmp_path)
  w.write_hparams({"algo": "wae_mmd", "optim.lr": 1e-3, "seed": 2, "pretrain": True})
  w.write_scalars(10, {"train/loss": 1.5, "train/recon": np.float32(0.25)})
  w.write_scalars(20, {"train/loss": 0.75})
  w.write_images(20, {"samples": np.full((70, 90, 3), 200, np.uint8)})
  assert events.read_hparams(tmp_path)[1] is None  # No end record yet, and flushed as written.
  w.write_hparams_end("diverged")
  w.close()

  assert events.read_scalars(tmp_path) == {(10, "train/loss"): 1.5, (10, "train/recon"): 0.25,
                                           (20, "train/loss"): 0.75}
  assert events.read_hparams(tmp_path) == (
      {"algo": "wae_mmd", "optim.lr": 1e-3, "seed": 2.0, "pretrain": True}, "STATUS_FAILURE")
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(str(tmp_path))
  acc.Reload()
  (image,) = acc.Images("samples")
  assert (image.step, image.height, image.width) == (20, 70, 90)
  assert image.encoded_image_string.startswith(b"\x89PNG")


def test_writing_events_does_not_import_tensorflow(tmp_path):
  code = ("import sys; from wae_jax import events; w = events.Writer(sys.argv[1]); "
          "w.write_scalars(1, {'a': 1.0}); w.write_hparams({'b': 1}); w.write_hparams_end('done'); "
          "w.close(); assert 'tensorflow' not in sys.modules, 'imported TensorFlow'")
  subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
