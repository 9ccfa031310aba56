"""Wasserstein Auto-Encoders in JAX."""
