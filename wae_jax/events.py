"""TensorBoard event files for a trial, written without TensorFlow.

clu's writer goes through `tf.summary`, so every trainer paid TensorFlow's import (3-8 s) and
every install its 1.3 GB. The event format is TensorBoard's own: its protos and record framing
come from the `tensorboard` package, and the file is opened through `epath` like every other
file of a trial directory (local or gs://).
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any, Iterator, Mapping

from etils import epath
import numpy as np
from tensorboard import data_compat
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.summary.writer import record_writer
from tensorboard.util import tensor_util

from wae_jax import images

# A trial's final status as the HParams dashboard shows it.
_STATUS = {"done": api_pb2.STATUS_SUCCESS, "diverged": api_pb2.STATUS_FAILURE,
           "failed": api_pb2.STATUS_FAILURE}


class Writer:
  """Scalars, image grids and the HParams session records of one trial (clu's method names)."""

  def __init__(self, logdir: epath.PathLike):
    path = epath.Path(logdir) / f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}"
    self._records = record_writer.RecordWriter(path.open("wb"))
    self._write(event_pb2.Event(file_version="brain.Event:2"))

  def _write(self, event: event_pb2.Event, step: int = 0) -> None:
    event.wall_time, event.step = time.time(), step
    self._records.write(event.SerializeToString())

  def _summary(self, step: int, values: list[summary_pb2.Summary.Value]) -> None:
    # Flushed at once: summaries come at log steps, seconds apart, and TensorBoard (or a
    # test) should see each when it is written.
    self._write(event_pb2.Event(summary=summary_pb2.Summary(value=values)), step)
    self._records.flush()

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self._summary(step, [summary_pb2.Summary.Value(tag=k, simple_value=float(v))
                         for k, v in scalars.items()])

  def write_images(self, step: int, pictures: Mapping[str, np.ndarray]) -> None:
    """`pictures`: uint8 arrays of shape (height, width, channels)."""
    self._summary(step, [summary_pb2.Summary.Value(tag=k, image=summary_pb2.Summary.Image(
        height=p.shape[0], width=p.shape[1], colorspace=p.shape[2],
        encoded_image_string=images.png_bytes(p))) for k, p in pictures.items()])

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """The HParams session start: the dashboard's columns for this trial."""
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for k, v in hparams.items():
      value = start.hparams[k]
      if isinstance(v, bool):
        value.bool_value = v
      elif isinstance(v, (int, float)):
        value.number_value = v
      else:
        value.string_value = str(v)
    self._hparams(hparams_metadata.SESSION_START_INFO_TAG,
                  plugin_data_pb2.HParamsPluginData(session_start_info=start))

  def write_hparams_end(self, status: str) -> None:
    """The HParams session end: the trial's final status (its metrics are the eval scalars)."""
    end = plugin_data_pb2.SessionEndInfo(status=_STATUS.get(status, api_pb2.STATUS_UNKNOWN),
                                         end_time_secs=time.time())
    self._hparams(hparams_metadata.SESSION_END_INFO_TAG,
                  plugin_data_pb2.HParamsPluginData(session_end_info=end))

  def _hparams(self, tag: str, data: plugin_data_pb2.HParamsPluginData) -> None:
    self._summary(0, [summary_pb2.Summary.Value(
        tag=tag, metadata=hparams_metadata.create_summary_metadata(data),
        tensor=hparams_metadata.NULL_TENSOR)])

  def close(self) -> None:
    self._records.close()


def _read(logdir: epath.PathLike) -> Iterator[event_pb2.Event]:
  """The events of every event file in `logdir`, oldest file first. TFRecord framing is
  read here rather than by TensorBoard's loader, which imports TensorFlow (seconds, and its
  console lines) into every reader: the sweep driver, `wae-results`. A record cut short (a
  trainer still writing, or killed mid-write) ends its file."""
  for path in sorted(epath.Path(logdir).glob("events.out.tfevents.*")):
    data = path.read_bytes()
    at = 0
    while at + 12 <= len(data):
      length, = struct.unpack_from("<Q", data, at)
      end = at + 12 + length + 4
      if end > len(data):
        break
      # Scalars as written (`simple_value`) in the form TensorBoard shows them (tensors).
      yield data_compat.migrate_event(event_pb2.Event.FromString(data[at + 12:end - 4]))
      at = end


def read_scalars(logdir: epath.PathLike) -> dict[tuple[int, str], float]:
  """{(step, tag): value} of every scalar written to `logdir`."""
  return {(e.step, v.tag): float(tensor_util.make_ndarray(v.tensor))
          for e in _read(logdir) for v in e.summary.value
          if v.metadata.plugin_data.plugin_name == "scalars"}


def read_hparams(logdir: epath.PathLike) -> tuple[dict[str, Any], str | None]:
  """The HParams session of `logdir`: its hyperparameters and final status (None before
  the end record)."""
  hparams, status = {}, None
  for e in _read(logdir):
    for v in e.summary.value:
      if v.metadata.plugin_data.plugin_name == hparams_metadata.PLUGIN_NAME:
        data = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
        if data.HasField("session_start_info"):
          for k, value in data.session_start_info.hparams.items():
            hparams[k] = getattr(value, value.WhichOneof("kind"))
        if data.HasField("session_end_info"):
          status = api_pb2.Status.Name(data.session_end_info.status)
  return hparams, status
