"""The merge of a save over an index another process saved meanwhile (:meth:`runtime.index.VectorIndex.save`).

The save loads the newest generation on disk and replays this index's own adds, replaces and deletes since it was
loaded (or last saved) on top -- last saver wins per id; items only the other process changed are kept -- then
writes the result, and this index adopts the merged collection. Nothing saved by either process is lost. The
replayed vectors are this index's stored ones (``faiss-hnsw-sq8``: decoded from its 8-bit codes, re-encoded by
the disk index's ranges).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BundleError
from .filter_spec import check_metadata
from .persist import read_saved_index

if TYPE_CHECKING:  # the index imports this module; only the type is needed here
    from .index import VectorIndex

logger = logging.getLogger(__name__)

#: what a merged index takes over from the one loaded from disk
_ADOPTED = ("_backend", "_store", "_count", "_next_label", "_free", "_filters", "_hold")


def merge_from_disk(index: VectorIndex, index_dir: Path) -> None:
    """Make ``index`` the newest generation on disk with its own changes replayed on top (writers' lock held)."""
    saved = read_saved_index(index_dir, verify="size")
    if saved is None:  # the saved index was removed meanwhile: this index's content is all there is
        return
    disk = type(index).load(saved, exact_threshold=index.exact_threshold, threads=index.threads)
    try:
        if (disk.dim, disk.space, disk.format) != (index.dim, index.space, index.format):
            raise BundleError(f"{index_dir}: another process saved a {disk.dim}-d {disk.space} index ({disk.format}) "
                              f"since this one ({index.dim}-d {index.space}, {index.format}) was opened; reopen the "
                              "bundle")
        with index._lock.write():
            old = _replay_and_adopt(index, disk)
    except BaseException:
        disk.close()
        raise
    for part in old[:3]:
        if part is not None:
            part.close()
    if old[3] is not None:
        old[3].release()


def _replay_and_adopt(index: VectorIndex, disk: VectorIndex) -> tuple:
    """Replay ``index``'s changes onto ``disk``, then move ``disk``'s state into ``index``; returns what ``index``
    held before (to be closed). ``index``'s write lock is held."""
    with disk._lock.write():
        disk._writable()
    upserts = [item for item, added in index._changes.items() if added]
    gone = [item for item, added in index._changes.items() if not added and item in disk]
    if upserts:
        labels = [index._store.label_of(item) for item in upserts]
        metas = index._store.metadata(labels)
        disk._add_checked(upserts, index._backend.vectors(labels),
                          [check_metadata(metas.get(label), "metadata") for label in labels])
    if gone:
        disk.delete(gone)
    disk._backend.ef_search = index._backend.ef_search
    logger.info("merged with another process's save: %d item(s) replayed, %d deleted", len(upserts), len(gone))
    old = index._backend, index._store, index._filters, index._hold
    for name in _ADOPTED:
        setattr(index, name, getattr(disk, name))
    index._base = disk._base
    with index._cache_lock:
        index._filter_cache.clear()
    return old
