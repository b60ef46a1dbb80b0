"""Evaluation sets by name (``openmoji-test-t2i``, ``wordnet-val-t2t``, ...): one loader for distill, compress, bench.

A name is ``<corpus>-<split>[<sample>]-<task>``; the corpus comes from :mod:`edgeret.data.corpora`. The
style-shift sets (:mod:`edgeret.data.style_shift`: held-out emoji in styles training never saw) are
``openmoji-style-<split>-<task>`` with task ``t2i``, ``i2t`` or ``i2i``.
"""

from __future__ import annotations

from .corpora import corpus_source
from .evalset import QUERY_INSTRUCTIONS, EvalSet
from .items import Corpus, CorpusItem
from .style_shift import TASKS as STYLE_TASKS
from .style_shift import style_eval

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
#: style-shift sets: name -> (task, split)
STYLE_SETS = {f"openmoji-style-{split}-{task}": (task, split) for split in ("val", "test") for task in STYLE_TASKS}


def load_eval(name: str, size: int = 224) -> EvalSet:
    """An evaluation set by name (see ``EVAL_SETS`` and ``STYLE_SETS``); ``size`` is the image render size."""
    if name in STYLE_SETS:
        task, split = STYLE_SETS[name]
        return style_eval(task, split, size=size)
    if name not in EVAL_SETS:
        raise KeyError(f"unknown evaluation set {name!r}; known: {', '.join([*EVAL_SETS, *STYLE_SETS])}")
    source, task, split, sample = EVAL_SETS[name]
    return corpus_source(source).eval_set(task, split, sample=sample, seed=0, size=size)


__all__ = ["EVAL_SETS", "QUERY_INSTRUCTIONS", "STYLE_SETS", "Corpus", "CorpusItem", "EvalSet", "load_eval"]
