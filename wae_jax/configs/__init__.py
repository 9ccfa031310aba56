"""Experiment configs, one file each, with `get_config(arg)`."""
import os

DIR = os.path.dirname(os.path.abspath(__file__))


def names() -> list[str]:
  """The bundled configs, by the name `--config` takes (no heavy imports: `--help` lists them)."""
  return sorted(f[:-3] for f in os.listdir(DIR) if f.endswith(".py") and f[0] != "_")
