"""Experiment configs, one file each, with `get_config(arg)`."""
