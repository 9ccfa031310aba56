"""The trial directory contract shared by the trainer, the evaluator, sweeps and results.

A trial directory holds `config.json`, `checkpoints/`, TensorBoard events, PNG grids and
`metrics.json`. `metrics.json` is the single source of truth about a trial's state; it is
replaced atomically so a reader never sees half a file. Paths may be local or `gs://`.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from typing import Any

from etils import epath

CONFIG = "config.json"
METRICS = "metrics.json"
CHECKPOINTS = "checkpoints"
STATUSES = ("running", "done", "diverged", "failed")
FINAL = ("done", "diverged", "failed")
# Top-level fields that describe the metrics beside them (not floats, so not in `metrics`).
EVAL_FIELDS = ("inception_sha256",)


def write_json(path: epath.PathLike, obj: Any) -> None:
  """Writes JSON via a temporary sibling and a rename, so readers see old or new, never half."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
  tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + "\n")
  tmp.replace(path)


def _jsonable(value: Any) -> Any:
  if hasattr(value, "item"):  # numpy and jax scalars
    return value.item()
  return str(value)


def read_metrics(workdir: epath.PathLike) -> dict[str, Any] | None:
  """The trial's `metrics.json`, or None if it does not exist yet."""
  path = epath.Path(workdir) / METRICS
  if not path.exists():
    return None
  return json.loads(path.read_text())


def write_metrics(workdir: epath.PathLike, *, status: str, step: int, num_steps: int,
                  wall_s: float, metrics: dict[str, float], config: dict[str, Any],
                  error: str | None = None, extra: dict[str, Any] | None = None) -> None:
  """Writes `metrics.json`; non-finite metrics become null so the file stays valid JSON.

  `extra` holds EVAL_FIELDS that go with `metrics`, e.g. the hash of the Inception weights.
  """
  assert status in STATUSES, status
  write_json(epath.Path(workdir) / METRICS, {
      "status": status, "step": int(step), "num_steps": int(num_steps),
      "wall_s": round(float(wall_s), 3), "metrics": _finite(metrics), "error": error,
      "config": config, "host": os.uname().nodename, **(extra or {}),
  })


def update_metrics(workdir: epath.PathLike, metrics: dict[str, float],
                   extra: dict[str, Any], drop: tuple[str, ...] = ()) -> None:
  """Merges a later evaluation into `metrics.json`, keeping status, step and config.

  Metrics and top-level fields named in `drop` go first, so results of an earlier
  evaluation that this one did not recompute do not stay beside its numbers.
  """
  record = {k: v for k, v in read_metrics(workdir).items() if k not in drop}
  kept = {k: v for k, v in record["metrics"].items() if k not in drop}
  write_json(epath.Path(workdir) / METRICS,
             {**record, **extra, "metrics": {**kept, **_finite(metrics)}})


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
  return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}
