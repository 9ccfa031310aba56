"""Every test sees 8 simulated CPU devices, so sharded code paths run without an accelerator."""
import os

# Must happen before JAX initialises its backends.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["JAX_NUM_CPU_DEVICES"] = "8"
