"""Corpus types for the teacher cache (defined torch-free in ``bench.datasets.items``)."""

from bench.datasets.items import Corpus, CorpusItem

__all__ = ["Corpus", "CorpusItem"]
