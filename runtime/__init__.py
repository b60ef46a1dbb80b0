"""edgeret.runtime: torch-free loading, encoding and search (the base install)."""

__version__ = "0.1.0"
