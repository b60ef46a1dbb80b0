"""edgeret.bench: datasets, retrieval metrics and the side-by-side benchmark.

The datasets and metrics are torch-free; plotting and the peer rows need the ``bench`` extra.
"""
