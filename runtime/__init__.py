"""edgeret.runtime: torch-free loading, encoding and search (the base install)."""
