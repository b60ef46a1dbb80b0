"""Build a teacher cache: embed a corpus in shards (resumable, split across torchrun ranks), then merge."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from . import files as cio
from .distributed import phase, rank_world
from .items import ITEMS, write_item_table
from .reader import IDENTITY_KEYS, CacheMismatchError, TeacherCache, cache_identity, load_cache

if TYPE_CHECKING:
    from edgeret.data.items import Corpus, CorpusItem
    from edgeret.distill.teachers.base import Teacher

logger = logging.getLogger(__name__)

#: bad items listed in cache_meta.json (all of them are marked in items.sqlite)
BAD_SHOWN = 50


def build_cache(
    teacher: Teacher,
    corpus: Corpus,
    out_dir: str | Path,
    *,
    shard_size: int = 1024,
    batch_size: int = 64,
    progress: bool = True,
    force: bool = False,
    keep_shards: bool = False,
) -> TeacherCache:
    """Embed ``corpus`` with ``teacher`` into a cache in ``out_dir`` and return it opened.

    Resumable: shards finished by an earlier, interrupted run with the same teacher, corpus and
    ``shard_size`` are kept. A finished matching cache is returned without work. A cache or plan
    that differs raises :class:`CacheMismatchError` naming the fields, unless ``force`` (which wipes
    this module's files in ``out_dir`` and rebuilds from scratch, even if a matching cache exists).

    If ``torch.distributed`` is initialised, every rank must call this with the same arguments:
    rank r embeds shards i with i % world_size == r, rank 0 merges, all ranks return the cache.
    ``keep_shards`` keeps ``shards/`` and ``plan.json`` after the merge.
    """
    out = Path(out_dir)
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard_size and batch_size must be >= 1, got {shard_size}, {batch_size}")
    _check_corpus(corpus, teacher)
    rank, world = rank_world()
    ident = cache_identity(teacher, corpus, shard_size)
    done: list[bool] = []
    phase(world, True, lambda: done.append(_inspect(out, ident, force)))
    if done[0]:
        logger.info("teacher cache at %s is complete and matches; nothing to do", out)
        return load_cache(out)
    n_shards = cio.num_shards(len(corpus), shard_size)
    phase(world, rank == 0, lambda: _prepare(out, ident, teacher.dim, n_shards, force))
    mine = [i for i in range(n_shards) if i % world == rank]
    phase(world, True, lambda: _embed_shards(teacher, corpus, out, mine, shard_size, batch_size, progress))
    phase(world, rank == 0, lambda: _merge(out, corpus, ident, teacher.dim, keep_shards))
    return load_cache(out)


def _check_corpus(corpus: Corpus, teacher: Teacher) -> None:
    """Refuse an empty corpus, an instruction on an image, and a kind the teacher cannot embed."""
    if len(corpus) == 0:
        raise ValueError(f"corpus {corpus.name!r} is empty; nothing to cache")
    modalities = getattr(teacher, "modalities", ("text", "image"))
    for item in corpus.iter_items():
        if item.kind == "image" and item.instruction is not None:
            raise ValueError(f"item {item.id!r}: image items cannot carry an instruction "
                             "(Teacher.embed_images takes none)")
        if item.kind not in modalities:
            raise ValueError(f"teacher {teacher.id} embeds only {', '.join(modalities)}, but corpus {corpus.name!r} "
                             f"holds {item.kind} items (first: {item.id!r}); use a teacher with both towers or "
                             f"leave the {item.kind} sources out")


def _inspect(out: Path, ident: dict[str, Any], force: bool) -> bool:
    """True if a finished matching cache exists; raises on a mismatching cache or plan."""
    if force:
        return False
    hint = "Pass force=True (CLI --force) to rebuild, or use another output directory"
    if (out / cio.META).is_file():
        meta = cio.read_json(out / cio.META)
        keys = IDENTITY_KEYS
        diffs = cio.diff_fields({k: ident[k] for k in keys}, {k: meta.get(k) for k in keys})
        if diffs:
            raise CacheMismatchError(out, diffs, hint)
        return True
    if (out / cio.PLAN).is_file():
        plan = cio.read_json(out / cio.PLAN)
        keys = (*IDENTITY_KEYS, "shard_size")
        diffs = cio.diff_fields({k: ident[k] for k in keys}, {k: plan.get(k) for k in keys})
        if diffs:
            raise CacheMismatchError(out, diffs, "An unfinished build with other settings is there. " + hint)
    elif any((out / cio.SHARDS).glob("shard-*.f16.npy")):
        diff = f"{cio.PLAN}: missing, but {cio.SHARDS}/ holds shards of unknown origin"
        raise CacheMismatchError(out, [diff], hint)
    return False


def _prepare(out: Path, ident: dict[str, Any], dim: int, n_shards: int, force: bool) -> None:
    """Rank 0: wipe (force), drop stale temp files, write the plan, create shards/."""
    out.mkdir(parents=True, exist_ok=True)
    if force:
        for name in cio.OWN_FILES:  # meta first: a half-done wipe must not look complete
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / cio.SHARDS, ignore_errors=True)
    cio.remove_stale_tmp(out)
    cio.remove_stale_tmp(out / cio.SHARDS)
    (out / cio.SHARDS).mkdir(exist_ok=True)
    if not (out / cio.PLAN).is_file():
        plan = {**ident, "dim": dim, "num_shards": n_shards, "created": cio.now_iso()}
        cio.atomic_write_json(out / cio.PLAN, plan)


def _embed_shards(
    teacher: Teacher, corpus: Corpus, out: Path, mine: list[int], shard_size: int, batch_size: int,
    progress: bool,
) -> None:
    """Embed this rank's unfinished shards, writing each one atomically."""
    rank, world = rank_world()
    shards_dir, dim = out / cio.SHARDS, teacher.dim
    bounds = {i: cio.shard_bounds(i, shard_size, len(corpus)) for i in mine}
    sizes = {i: hi - lo for i, (lo, hi) in bounds.items()}
    todo = [i for i in mine if not cio.is_finished_shard(cio.shard_path(shards_dir, i), sizes[i], dim)]
    n_items = sum(sizes[i] for i in todo)
    logger.info("rank %d/%d: %d of %d shard(s) already done; embedding %d shard(s), %d item(s) with %s",
                rank, world, len(mine) - len(todo), len(mine), len(todo), n_items, teacher.id)
    desc = f"teacher cache {teacher.id}" + (f" [rank {rank}]" if world > 1 else "")
    position = rank if world > 1 else None
    with tqdm(total=n_items, unit="item", desc=desc, disable=not progress, position=position) as bar:
        for i in todo:
            lo, hi = bounds[i]
            rows, bad = _embed_items(teacher, corpus.slice(lo, hi), batch_size, bar.update)
            cio.atomic_write_json(cio.bad_path(shards_dir, i), [{**b, "row": lo + b["row"]} for b in bad])
            cio.atomic_save_npy(cio.shard_path(shards_dir, i), rows)  # last: a finished shard has its bad list


def _load(item: CorpusItem, row: int, bad: list[dict[str, Any]]) -> Any:
    """The item's payload, or None (recorded in ``bad``) when an image cannot be decoded."""
    try:
        return item.load()
    except (ValueError, OSError) as exc:  # the runtime's loader: missing, truncated, hostile or oversized images
        if item.kind != "image":
            raise
        bad.append({"row": row, "id": item.id, "origin": item.origin, "reason": " ".join(str(exc).split())[:300]})
        logger.warning("skipping %s: %s", item.origin or item.id, bad[-1]["reason"])
        return None


def _embed_items(
    teacher: Teacher, items: list[CorpusItem], batch_size: int, advance: Callable[[int], Any]
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Embed items in batches of one kind and one instruction; rows come back in item order, with the items that
    could not be loaded (their rows stay zero)."""
    out = np.zeros((len(items), teacher.dim), dtype=np.float16)
    bad: list[dict[str, Any]] = []
    groups: dict[tuple[str, str | None], list[int]] = {}
    for row, item in enumerate(items):
        groups.setdefault((item.kind, item.instruction), []).append(row)
    for (kind, instruction), rows in groups.items():
        if kind == "text":  # texts of similar length share a batch: much less padding
            rows = sorted(rows, key=lambda r: len(items[r].text or ""))
        for batch in cio.chunks(rows, batch_size):
            loaded = [(r, _load(items[r], r, bad)) for r in batch]
            batch, payload = [r for r, x in loaded if x is not None], [x for _, x in loaded if x is not None]
            advance(len(loaded) - len(batch))
            if not batch:
                continue
            if kind == "text":
                emb = teacher.embed_texts(payload, instruction=instruction, batch_size=batch_size)
            else:
                emb = teacher.embed_images(payload, batch_size=batch_size)
            if emb.shape != (len(batch), teacher.dim):
                raise RuntimeError(f"teacher {teacher.id} returned {emb.shape}, expected ({len(batch)}, "
                                   f"{teacher.dim})")
            out[batch] = emb
            advance(len(batch))
    return out, bad


def _merge(out: Path, corpus: Corpus, ident: dict[str, Any], dim: int, keep_shards: bool) -> None:
    """Rank 0: stream the shards into embeddings.f16.npy, then write ids.json and (last) the meta."""
    count, shard_size = len(corpus), ident["shard_size"]
    shards_dir, final = out / cio.SHARDS, out / cio.EMBEDDINGS
    tmp = cio.tmp_path(final)
    try:
        merged = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(count, dim))
        for i in range(cio.num_shards(count, shard_size)):
            lo, hi = cio.shard_bounds(i, shard_size, count)
            path = cio.shard_path(shards_dir, i)
            if not cio.is_finished_shard(path, hi - lo, dim):
                raise RuntimeError(f"shard {i} ({path}) is missing or invalid after all ranks finished")
            merged[lo:hi] = np.load(path, mmap_mode="r", allow_pickle=False)
        merged.flush()
        del merged
        cio.fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    cio.fsync_dir(out)
    bad = [entry for i in range(cio.num_shards(count, shard_size)) for entry in _shard_bad(shards_dir, i)]
    bad_rows = [b["row"] for b in bad]
    cio.atomic_write(out / ITEMS, lambda f: None, after=lambda tmp: write_item_table(tmp, corpus, bad_rows))
    cio.atomic_write(out / cio.IDS, lambda f: cio.write_json_lines_list(f, corpus.iter_ids()))
    meta = {**ident, "dim": dim, "normalised": True, "dtype": "float16", "created": cio.now_iso(),
            "versions": cio.package_versions(), "bad": {"count": len(bad), "items": bad[:BAD_SHOWN]}}
    cio.atomic_write_json(out / cio.META, meta)
    if not keep_shards:
        shutil.rmtree(shards_dir, ignore_errors=True)
        (out / cio.PLAN).unlink(missing_ok=True)
    logger.info("teacher cache complete: %s (%d x %d float16%s)", out, count, dim,
                f"; {len(bad)} item(s) could not be embedded" if bad else "")


def _shard_bad(shards_dir: Path, index: int) -> list[dict[str, Any]]:
    path = cio.bad_path(shards_dir, index)
    return cio.read_json(path) if path.is_file() else []


