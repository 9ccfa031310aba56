"""wae-launch: Cloud TPU VMs, queued resources and a Ray cluster for wae-jax (see cli.py)."""
