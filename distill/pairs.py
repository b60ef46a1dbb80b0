"""Training data for distillation, read from teacher caches only (the teacher never runs here).

Pairs come from the TRAIN split only: clean and augmented renders of train emoji ('img:', 'aug:') with
their captions ('cap:'), and glosses/lemmas of train synsets. Images are re-rendered once from the
corpus (exactly the pixels the teacher saw), resized to the student's resolution and kept as a uint8
array, cached as ``.npy`` so later runs and resumptions skip rendering.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from edgeret.data.corpora import corpus_source
from edgeret.data.items import Corpus
from edgeret.data.openmoji import emojis
from edgeret.data.wordnet import synsets
from edgeret.runtime.preprocess import ImagePreprocessor

from .cache import TeacherCache

logger = logging.getLogger(__name__)


@dataclass
class TrainData:
    """Everything a training step samples from; rows align with the teacher embedding arrays."""

    image_ids: list[str] = field(default_factory=list)
    image_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # emoji index per image
    image_teacher: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    pixels: np.ndarray | None = None  # (N, S, S, 3) uint8 at the student's resolution
    captions: list[list[str]] = field(default_factory=list)  # caption texts per emoji index
    caption_teacher: list[np.ndarray] = field(default_factory=list)  # (n_captions, D) per emoji index
    glosses: list[str] = field(default_factory=list)
    lemmas: list[str] = field(default_factory=list)
    gloss_teacher: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    lemma_teacher: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def texts(self) -> list[str]:
        """Every training text (for the vocabulary)."""
        return [c for caps in self.captions for c in caps] + self.glosses + self.lemmas


def corpus_for_cache(cache: TeacherCache) -> Corpus:
    """Rebuild the corpus a cache was made from (checked by its id hash), for texts and renders."""
    ident = cache.meta["corpus"]
    corpus = corpus_source(ident["name"]).rebuild(ident.get("meta", {}))
    if corpus.ids_sha256() != ident["ids_sha256"]:
        raise ValueError(f"the teacher cache at {cache.path} was built from a different {ident['name']} corpus; "
                         "rebuild it with this version of the data")
    return corpus


def _emoji_of(item_id: str) -> str:
    return item_id.split(":")[1]


def openmoji_pairs(cache: TeacherCache, corpus: Corpus, data: TrainData) -> dict[str, object]:
    """Fill the image/caption fields of ``data`` from the train emoji; returns id -> corpus item."""
    train = {e.id for e in emojis("train")}
    by_id = {item.id: item for item in corpus.items}
    caption_ids: dict[str, list[str]] = {}
    for item in corpus.items:
        if item.id.startswith("cap:") and _emoji_of(item.id) in train:
            caption_ids.setdefault(_emoji_of(item.id), []).append(item.id)
    order = sorted(caption_ids)
    label = {emoji: i for i, emoji in enumerate(order)}
    data.image_ids = [i.id for i in corpus.items
                      if i.kind == "image" and _emoji_of(i.id) in label and i.id.split(":")[0] in ("img", "aug")]
    data.image_labels = np.array([label[_emoji_of(i)] for i in data.image_ids], dtype=np.int64)
    data.image_teacher = cache.rows(data.image_ids)
    data.captions = [[by_id[c].text for c in caption_ids[e]] for e in order]
    data.caption_teacher = [cache.rows(caption_ids[e]) for e in order]
    logger.info("openmoji: %d train images of %d emoji, %d captions", len(data.image_ids), len(order),
                sum(map(len, data.captions)))
    return by_id


def wordnet_pairs(cache: TeacherCache, corpus: Corpus, data: TrainData) -> None:
    """Fill the gloss/lemma fields of ``data`` from the train synsets present in the cache."""
    by_id = {item.id: item for item in corpus.items}
    keys = [s.key for s in synsets("train") if f"gloss:{s.key}" in by_id and f"lemma:{s.key}" in by_id]
    data.glosses = [by_id[f"gloss:{k}"].text for k in keys]
    data.lemmas = [by_id[f"lemma:{k}"].text for k in keys]
    data.gloss_teacher = cache.rows([f"gloss:{k}" for k in keys])
    data.lemma_teacher = cache.rows([f"lemma:{k}" for k in keys])
    logger.info("wordnet: %d train synsets", len(keys))


def render_pixels(items: list, preprocessor: ImagePreprocessor, progress: bool = True) -> np.ndarray:
    """Render corpus image items and resize/crop them to the student's size: (N, S, S, 3) uint8."""
    size = preprocessor.size
    out = np.empty((len(items), size, size, 3), dtype=np.uint8)
    for row, item in enumerate(tqdm(items, desc="rendering train images", disable=not progress, unit="img")):
        out[row] = np.asarray(preprocessor.resize_crop(item.load()), dtype=np.uint8)
    return out


def cached_pixels(
    items: list, preprocessor: ImagePreprocessor, cache_dir: Path | None, progress: bool = True
) -> np.ndarray:
    """:func:`render_pixels`, memoised as ``pixels-<hash>.npy`` in ``cache_dir`` (None = no memo)."""
    if cache_dir is None:
        return render_pixels(items, preprocessor, progress)
    key = hashlib.sha256(json.dumps([[i.id for i in items], preprocessor.to_dict()]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"pixels-{key}.npy"
    if path.is_file():
        logger.info("reusing pre-rendered train images %s", path)
        return np.load(path)
    pixels = render_pixels(items, preprocessor, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, pixels)
    tmp.replace(path)
    return pixels


def _openmoji(cache: TeacherCache, corpus: Corpus, data: TrainData, preprocessor: ImagePreprocessor,
              pixel_cache_dir: Path | None, progress: bool) -> None:
    by_id = openmoji_pairs(cache, corpus, data)
    data.pixels = cached_pixels([by_id[i] for i in data.image_ids], preprocessor, pixel_cache_dir, progress)


def _wordnet(cache: TeacherCache, corpus: Corpus, data: TrainData, preprocessor: ImagePreprocessor,
             pixel_cache_dir: Path | None, progress: bool) -> None:
    wordnet_pairs(cache, corpus, data)


#: corpus name -> what fills :class:`TrainData` from a cache of that corpus
PAIR_BUILDERS = {"openmoji": _openmoji, "wordnet": _wordnet}


def load_train_data(
    caches: Sequence[TeacherCache],
    preprocessor: ImagePreprocessor,
    pixel_cache_dir: Path | None = None,
    progress: bool = True,
) -> TrainData:
    """Training pairs of the train split from the given caches (one per corpus; at least one)."""
    if not caches:
        raise ValueError("need at least one teacher cache")
    if len({c.dim for c in caches}) != 1:
        raise ValueError(f"teacher caches disagree on dim: {[c.dim for c in caches]}")
    names = [c.meta["corpus"]["name"] for c in caches]
    if len(set(names)) != len(names):
        raise ValueError(f"one teacher cache per corpus, got {names}")
    unknown = sorted(set(names) - set(PAIR_BUILDERS))
    if unknown:
        raise ValueError(f"no training pairs for corpus {unknown}; known: {sorted(PAIR_BUILDERS)}")
    data = TrainData()
    for name in sorted(names, key=list(PAIR_BUILDERS).index):  # images first, as the sampler expects
        cache = caches[names.index(name)]
        PAIR_BUILDERS[name](cache, corpus_for_cache(cache), data, preprocessor, pixel_cache_dir, progress)
    return data


def normalise_pixels(pixels: np.ndarray, preprocessor: ImagePreprocessor) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW normalised exactly as ``ImagePreprocessor.__call__`` does."""
    mean = np.asarray(preprocessor.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(preprocessor.std, dtype=np.float32)[:, None, None]
    return (pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - mean) / std
