"""Evaluation sets by name (``openmoji-test-t2i``, ``wordnet-val-t2t``, ...): one loader for distill, compress, bench.

A name is ``<corpus>-<split>[<sample>]-<task>``; the corpus comes from :mod:`edgeret.data.corpora`.
"""

from __future__ import annotations

from .corpora import corpus_source
from .evalset import QUERY_INSTRUCTIONS, EvalSet
from .items import Corpus, CorpusItem

#: name -> (corpus, task, split, sample)
EVAL_SETS = {
    "openmoji-test-t2i": ("openmoji", "t2i", "test", None),
    "openmoji-test-i2t": ("openmoji", "i2t", "test", None),
    "openmoji-test400-t2i": ("openmoji", "t2i", "test", 400),
    "openmoji-test400-i2t": ("openmoji", "i2t", "test", 400),
    "openmoji-val-t2i": ("openmoji", "t2i", "val", None),
    "openmoji-val-i2t": ("openmoji", "i2t", "val", None),
    "wordnet-test-t2t": ("wordnet", "t2t", "test", None),
    "wordnet-val-t2t": ("wordnet", "t2t", "val", None),
}


def load_eval(name: str, size: int = 224) -> EvalSet:
    """An evaluation set by name (see ``EVAL_SETS``); ``size`` is the image render size."""
    if name not in EVAL_SETS:
        raise KeyError(f"unknown evaluation set {name!r}; known: {', '.join(EVAL_SETS)}")
    source, task, split, sample = EVAL_SETS[name]
    return corpus_source(source).eval_set(task, split, sample=sample, seed=0, size=size)


__all__ = ["EVAL_SETS", "QUERY_INSTRUCTIONS", "Corpus", "CorpusItem", "EvalSet", "load_eval"]
