"""Offline datasets (torch-free): OpenMoji image–caption pairs, WordNet gloss->lemmas, augmentations.

``load_eval(name)`` gives any evaluation set by name, so bench and distill share one loader.
"""

from __future__ import annotations

from edgeret.data.evalset import QUERY_INSTRUCTIONS, EvalSet
from edgeret.data.items import Corpus, CorpusItem

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
    if source == "openmoji":
        from edgeret.data.openmoji import openmoji_eval

        return openmoji_eval(task, split, sample=sample, seed=0, size=size)
    from edgeret.data.wordnet import wordnet_eval

    return wordnet_eval(split, sample=sample, seed=0)


__all__ = ["EVAL_SETS", "QUERY_INSTRUCTIONS", "Corpus", "CorpusItem", "EvalSet", "load_eval"]
