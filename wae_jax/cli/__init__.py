"""Command-line entry points: thin argparse wrappers over the library modules."""
