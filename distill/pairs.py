"""Training data for distillation, read from teacher caches only (the teacher never runs here).

Every cache's item table (:mod:`edgeret.distill.cache.items`) says what each row is; the train split of
every cache feeds training:

* every good image and text feeds feature distillation (the cosine term);
* an image's *captions* are the documents (texts without a role) of its group: image-text pairs feed the
  contrastive and affinity terms;
* a *query* and the documents of its group are text-text pairs (the first document is its partner);
* every other text is *unpaired* (cosine only).

Teacher embeddings stay in the caches' memmaps: :class:`TeacherRows` gathers a batch's rows when it is
drawn, so nothing grows with the corpus but a few integers per item.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeret.data.corpora import corpus_source
from edgeret.data.items import Corpus

from .cache import TeacherCache
from .cache.items import ItemTable, write_item_table

logger = logging.getLogger(__name__)

_TEXTS_PER_READ = 8192


@dataclass
class TeacherRows:
    """Items as (cache, row) pairs; :meth:`gather` reads their teacher embeddings (float32)."""

    caches: list[TeacherCache]
    cache: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    row: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.row)

    def gather(self, index: np.ndarray) -> np.ndarray:
        """Teacher embeddings of items ``index`` (in that order), float32 (len(index), dim)."""
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), self.caches[0].dim), dtype=np.float32)
        for c in np.unique(self.cache[index]):
            where = np.flatnonzero(self.cache[index] == c)
            rows = self.row[index[where]]
            order = np.argsort(rows, kind="stable")  # ascending rows read the memmap sequentially
            out[where[order]] = self.caches[c].embeddings[rows[order]]
        return out


@dataclass
class TrainData:
    """Everything a training step samples from (indices into :attr:`images` and :attr:`texts`)."""

    images: TeacherRows
    texts: TeacherRows
    tables: list[ItemTable]
    image_labels: np.ndarray  # pair group per image (-1: no captions)
    caption_start: np.ndarray  # per image: its captions are caption_texts[start:start + count]
    caption_count: np.ndarray
    caption_texts: np.ndarray
    query_texts: np.ndarray  # text-text pairs: query i goes with document_texts[i]
    document_texts: np.ndarray
    unpaired_texts: np.ndarray
    pixels: object | None = None  # a PixelStore (edgeret.distill.inputs), set by the trainer

    @property
    def n_images(self) -> int:
        """Training images."""
        return len(self.images)

    def iter_texts(self) -> Iterator[str]:
        """Every training text, in :attr:`texts` order (streamed from the item tables)."""
        for c, table in enumerate(self.tables):
            rows = self.texts.row[self.texts.cache == c]
            for lo in range(0, len(rows), _TEXTS_PER_READ):
                part = rows[lo : lo + _TEXTS_PER_READ]
                found = dict(table.select("row, text", f"row IN ({','.join(map(str, part.tolist()))})"))
                yield from (found[int(r)] for r in part)

    def texts_list(self) -> list[str]:
        """Every training text (for the vocabulary of a small corpus)."""
        return list(self.iter_texts())

    def image_info(self, index: np.ndarray) -> list[tuple[int, int, str | None, str]]:
        """``(cache, row, path, id)`` of training images ``index``, in that order."""
        index = np.asarray(index, dtype=np.int64)
        out: list = [None] * len(index)
        for c in np.unique(self.images.cache[index]).tolist():
            where = np.flatnonzero(self.images.cache[index] == c)
            rows = self.images.row[index[where]]
            found = {r: (p, i) for r, p, i in self.tables[c].select(
                "row, path, id", f"row IN ({','.join(map(str, rows.tolist()))})")}
            for w, r in zip(where.tolist(), rows.tolist(), strict=True):
                out[w] = (c, r, *found[r])
        return out

    def image_items(self) -> Iterator[tuple[int, int, str | None, str]]:
        """``(cache, row, path, id)`` of every training image, in :attr:`images` order (streamed)."""
        for lo in range(0, self.n_images, _TEXTS_PER_READ):
            yield from self.image_info(np.arange(lo, min(lo + _TEXTS_PER_READ, self.n_images)))


def item_table(cache: TeacherCache, workdir: Path) -> ItemTable:
    """The cache's item table; for a cache built before tables existed, one written into ``workdir`` from its
    corpus (rebuilt by name and checked by its id hash)."""
    table = cache.items
    if table is not None:
        return table
    path = Path(workdir) / f"items-{cache.meta['corpus']['ids_sha256'][:16]}.sqlite"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write_item_table(tmp, corpus_for_cache(cache))
        tmp.replace(path)
    return ItemTable(path)


def corpus_for_cache(cache: TeacherCache) -> Corpus:
    """Rebuild the built-in corpus a cache was made from (checked by its id hash), e.g. to render its images."""
    ident = cache.meta["corpus"]
    corpus = corpus_source(ident["name"]).rebuild(ident.get("meta", {}))
    if corpus.ids_sha256() != ident["ids_sha256"]:
        raise ValueError(f"the teacher cache at {cache.path} was built from a different {ident['name']} corpus; "
                         "rebuild it with this version of the data")
    return corpus


@dataclass
class _Cache:
    """One cache's train rows, before they are concatenated."""

    image_rows: np.ndarray
    image_groups: np.ndarray
    text_rows: np.ndarray
    text_groups: np.ndarray
    text_query: np.ndarray  # bool


def _read(table: ItemTable) -> _Cache:
    rows = table.train_rows()
    image = rows[:, 3] == 1
    return _Cache(rows[image, 0], rows[image, 1], rows[~image, 0], rows[~image, 1], rows[~image, 2] == 1)


def load_train_data(caches: Sequence[TeacherCache], workdir: Path, progress: bool = True) -> TrainData:
    """The train split of ``caches`` (one dim, at least one cache), paired as the module docstring says."""
    if not caches:
        raise ValueError("need at least one teacher cache")
    if len({c.dim for c in caches}) != 1:
        raise ValueError(f"teacher caches disagree on dim: {[c.dim for c in caches]}")
    tables = [item_table(c, workdir) for c in caches]
    parts = [_read(t) for t in tables]
    offset = 0
    for part in parts:  # groups are per cache: shift each cache's ids past the previous ones
        for name in ("image_groups", "text_groups"):
            values = getattr(part, name)
            values[values >= 0] += offset
        offset += int(max(part.image_groups.max(initial=-1), part.text_groups.max(initial=-1))) + 1
    return _assemble(list(caches), tables, parts)


def _assemble(caches: list[TeacherCache], tables: list[ItemTable], parts: list[_Cache]) -> TrainData:
    cat = np.concatenate
    images = TeacherRows(caches, cat([np.full(len(p.image_rows), c, np.int16) for c, p in enumerate(parts)]),
                         cat([p.image_rows for p in parts]))
    texts = TeacherRows(caches, cat([np.full(len(p.text_rows), c, np.int16) for c, p in enumerate(parts)]),
                        cat([p.text_rows for p in parts]))
    image_groups, text_groups = cat([p.image_groups for p in parts]), cat([p.text_groups for p in parts])
    is_query = cat([p.text_query for p in parts])
    documents = np.flatnonzero(~is_query & (text_groups >= 0))
    captioned = set(image_groups[image_groups >= 0].tolist())
    captions = documents[np.isin(text_groups[documents], list(captioned))]
    start, count = _caption_index(image_groups, captions, text_groups)
    queries, partners = _query_pairs(is_query, text_groups, documents)
    used = np.zeros(len(texts), dtype=bool)
    used[captions], used[queries], used[partners] = True, True, True
    data = TrainData(images, texts, tables, np.where(count > 0, image_groups, -1), start, count, captions, queries,
                     partners, np.flatnonzero(~used))
    logger.info("training data: %d images (%d with captions), %d texts (%d captions, %d query-document pairs, "
                "%d unpaired)", len(images), int((count > 0).sum()), len(texts), len(captions), len(queries),
                len(data.unpaired_texts))
    return data


def _caption_index(image_groups: np.ndarray, captions: np.ndarray,
                   text_groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image, where its group's captions start in ``captions`` (sorted by group, then row) and how many."""
    order = np.argsort(text_groups[captions], kind="stable")
    captions[:] = captions[order]
    keys = text_groups[captions]
    start = np.searchsorted(keys, image_groups, side="left")
    stop = np.searchsorted(keys, image_groups, side="right")
    count = np.where(image_groups >= 0, stop - start, 0)
    return start.astype(np.int64), count.astype(np.int64)


def _query_pairs(is_query: np.ndarray, text_groups: np.ndarray,
                 documents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query with the first document of its group (queries without one are left out)."""
    first_doc: dict[int, int] = {}
    for d in documents.tolist():
        first_doc.setdefault(int(text_groups[d]), d)
    queries = [q for q in np.flatnonzero(is_query & (text_groups >= 0)).tolist() if int(text_groups[q]) in first_doc]
    return (np.asarray(queries, dtype=np.int64),
            np.asarray([first_doc[int(text_groups[q])] for q in queries], dtype=np.int64))
