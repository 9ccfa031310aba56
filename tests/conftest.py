"""Every test sees 8 simulated CPU devices, so sharded code paths run without an accelerator.

Compiled programs go to JAX's persistent cache, shared by the test process and the trainer
subprocesses it starts: most tests train the same tiny nets, which then compile once a run.
"""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Must happen before JAX initialises its backends; subprocesses inherit them.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["JAX_NUM_CPU_DEVICES"] = "8"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(REPO, ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")


def pytest_collection_modifyitems(items):
  """Slow tests first: xdist workers take tests in this order, so the longest ones no longer
  end the run on one worker while the other idles."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)
