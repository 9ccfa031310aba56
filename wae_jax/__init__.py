"""Wasserstein Auto-Encoders in JAX.

    import wae_jax
    from wae_jax import config
    wae_jax.log_to_console()  # Progress lines, as the commands print them.
    wae_jax.train(config.load("mnist_wae_mmd:debug"), "/tmp/wae")
    model = wae_jax.load("/tmp/wae")
    wae_jax.evaluate("/tmp/wae")

The names below are imported on first use, so `import wae_jax.cli...` stays light.
"""

import importlib

_API = {"load": ("wae_jax.trained", "load"), "train": ("wae_jax.loop", "train"),
        "train_pack": ("wae_jax.loop", "train_pack"),
        "evaluate": ("wae_jax.evaluation", "evaluate"),
        "log_to_console": ("wae_jax.cli.common", "log_to_console")}


def __getattr__(name):
  if name not in _API:
    raise AttributeError(f"module 'wae_jax' has no attribute {name!r}")
  module, attr = _API[name]
  return getattr(importlib.import_module(module), attr)


def __dir__():
  return sorted(list(globals()) + list(_API))
