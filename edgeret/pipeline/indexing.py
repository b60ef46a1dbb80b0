"""The index stage of a build: embed a corpus's items into a copy of a bundle with the torch-free runtime.

Items come from the teacher caches' item tables (so the sources are not read again): images from their files
(or, for a built-in corpus, re-rendered), texts as stored. Items the runtime refuses are reported and skipped;
the index is saved every :data:`SAVE_EVERY` items and at the end, so an interruption loses little.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from edgeret.distill.cache import TeacherCache
from edgeret.distill.pairs import corpus_for_cache
from edgeret.runtime.image import load_image
from edgeret.runtime.retriever import Retriever

from .recipe import IndexSpec

logger = logging.getLogger(__name__)

SAVE_EVERY = 5000
_BATCH = 64


def _rows(cache: TeacherCache, spec: IndexSpec, kinds: Sequence[str]) -> list[tuple]:
    where = f"kind IN ({','.join('?' * len(kinds))})" + (" AND split = ?" if spec.split else "")
    params = (*kinds, *([spec.split] if spec.split else []))
    return cache.items.select("id, kind, text, path, origin", where, params)


def _images(cache: TeacherCache, rows: list[tuple], files: Path | None) -> Iterator[tuple[str, Any, str | None]]:
    """``(id, image, path for the metadata)`` of image rows; renders are written to ``files`` when given."""
    renders = None
    for item_id, _, _, path, origin in rows:
        if path:
            yield item_id, load_image(path, origin or item_id), path
            continue
        if renders is None:  # a built-in corpus: its images are renders
            renders = {it.id: it for it in corpus_for_cache(cache).iter_items() if it.kind == "image"}
        image, shown = renders[item_id].load(), None
        if files is not None:
            shown = item_id.replace(":", "-").replace("/", "-") + ".png"
            image.save(files / shown)
        yield item_id, image, shown


def _add(retriever: Retriever, kind: str, batch: list[tuple[str, Any, dict]], skipped: list[str]) -> int:
    ids, payload, meta = [b[0] for b in batch], [b[1] for b in batch], [b[2] for b in batch]
    try:
        (retriever.add_images if kind == "image" else retriever.add_texts)(ids, payload, meta)
        return len(ids)
    except (ValueError, TypeError, OSError) as exc:  # one bad item: add the rest one by one
        if len(batch) == 1:
            skipped.append(f"{ids[0]}: {exc}")
            logger.warning("index: skipped %s: %s", ids[0], exc)
            return 0
        return sum(_add(retriever, kind, [b], skipped) for b in batch)


def index_corpus(bundle: Path, target: Path, caches: Sequence[TeacherCache], spec: IndexSpec) -> Path:
    """A copy of ``bundle`` at ``target`` (replaced) with the items of ``caches`` in its index; returns ``target``."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(bundle, target)
    retriever = Retriever.open(target, dim=spec.dim, index_format=spec.format)
    files = target.parent / spec.image_files if spec.image_files else None
    if files is not None:
        files.mkdir(parents=True, exist_ok=True)
    kinds = [k for k in spec.kinds if (k == "image" and retriever.has_image_encoder)
             or (k == "text" and retriever.text_encoder is not None)]
    skipped: list[str] = []
    added = since_save = 0
    for cache in caches:
        rows = _rows(cache, spec, kinds)
        with tqdm(total=len(rows), desc=f"indexing {cache.corpus_name}", unit="item", disable=None) as bar:
            for kind in kinds:
                mine = [r for r in rows if r[1] == kind]
                stream = _images(cache, mine, files) if kind == "image" else ((r[0], r[2], None) for r in mine)
                by_id = {r[0]: r for r in mine}
                batch: list[tuple[str, Any, dict]] = []
                for item_id, payload, shown in stream:
                    row = by_id[item_id]
                    meta = {"origin": row[4] or item_id, **({"text": row[2]} if row[2] else {}),
                            **({"path": shown} if shown else {})}
                    batch.append((item_id, payload, meta))
                    if len(batch) == _BATCH:
                        n = _add(retriever, kind, batch, skipped)
                        added, since_save = added + n, since_save + n
                        bar.update(len(batch))
                        batch = []
                        if since_save >= SAVE_EVERY:
                            retriever.save()
                            since_save = 0
                if batch:
                    n = _add(retriever, kind, batch, skipped)
                    added += n
                    bar.update(len(batch))
    retriever.save()
    logger.info("indexed %d items into %s (%d skipped)", added, target, len(skipped))
    for query in spec.queries:
        hits = retriever.search(text=query, k=3) if retriever.text_encoder is not None else []
        logger.info("  search %r: %s", query, ", ".join(f"{h.id} ({h.score:.3f})" for h in hits))
    return target
