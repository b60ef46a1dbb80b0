"""The teacher cache: a teacher's embeddings of a corpus, computed once and memory-mapped.

Layout of a finished cache directory (see DESIGN.md, "Formats"):

- ``embeddings.f16.npy``: float16 (N, D) .npy, rows in corpus order, L2-normalised;
- ``ids.json``: the corpus ids in that order;
- ``cache_meta.json``: teacher description, corpus identity, instructions, dim, versions. It is
  written last and atomically, so its presence marks a complete cache.

While building, ``plan.json`` records what is being built and ``shards/shard-NNNNN.f16.npy`` hold
contiguous row ranges; each shard is written to a temp name, fsynced and renamed, so an interrupted
run resumes from the shards that were finished. Under ``torchrun`` the shards are split between
ranks (shard i goes to rank i % world_size) and rank 0 merges them.

Reading a cache (:func:`load_cache`) never imports torch.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from . import cache_files as cio

if TYPE_CHECKING:
    from edgeret.data.items import Corpus, CorpusItem
    from edgeret.distill.teachers.base import Teacher

logger = logging.getLogger(__name__)

FORMAT = "edgeret-teacher-cache"
VERSION = 1
#: Meta fields that must agree between a cache and a request (shard_size only for unfinished builds).
_IDENTITY_KEYS = ("format", "version", "teacher", "corpus", "instructions")


class CacheMismatchError(ValueError):
    """An existing cache (or unfinished build) was made from a different teacher, corpus or layout."""

    def __init__(self, path: Path, diffs: list[str], hint: str = "") -> None:
        self.path = Path(path)
        self.fields = [d.split(":", 1)[0] for d in diffs]
        message = f"teacher cache at {path} does not match the request: " + "; ".join(diffs)
        super().__init__(message + (f". {hint}" if hint else ""))


@dataclass
class TeacherCache:
    """An opened teacher cache: ``embeddings`` is a read-only float16 memmap, row i is ``ids[i]``."""

    embeddings: np.ndarray
    ids: list[str]
    meta: dict[str, Any]
    dim: int
    path: Path | None = None
    _index: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        teacher = self.meta.get("teacher", {}).get("id")
        return f"TeacherCache(path={str(self.path)!r}, n={len(self)}, dim={self.dim}, teacher={teacher!r})"

    @property
    def corpus_name(self) -> str:
        """The name of the corpus the cache holds (``openmoji``, ``wordnet``, ...)."""
        return str(self.meta["corpus"]["name"])

    def index_of(self, item_id: str) -> int:
        """Row of ``item_id``; KeyError if the cache does not hold it."""
        if self._index is None:
            self._index = {item: row for row, item in enumerate(self.ids)}
        try:
            return self._index[item_id]
        except KeyError:
            raise KeyError(f"id {item_id!r} is not in the teacher cache at {self.path}") from None

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """The embeddings of ``ids`` (in that order) as a float32 array of shape (len(ids), dim)."""
        index = np.fromiter((self.index_of(i) for i in ids), dtype=np.int64, count=len(ids))
        return np.asarray(self.embeddings[index], dtype=np.float32).reshape(len(ids), self.dim)


def corpus_identity(corpus: Corpus) -> dict[str, Any]:
    """What identifies a corpus in cache metadata: name, meta, count and id-order hash."""
    return cio.jsonable(
        {"name": corpus.name, "meta": corpus.meta, "count": len(corpus), "ids_sha256": corpus.ids_sha256()}
    )


def cache_identity(teacher: Teacher, corpus: Corpus, shard_size: int) -> dict[str, Any]:
    """The fields an existing cache or plan must share with a request to be reused."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "teacher": cio.jsonable(teacher.describe()),
        "corpus": corpus_identity(corpus),
        "instructions": cio.jsonable(corpus.instructions()),
        "shard_size": shard_size,
    }


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
    _check_corpus(corpus)
    rank, world = _rank_world()
    ident = cache_identity(teacher, corpus, shard_size)
    done: list[bool] = []
    _phase(world, True, lambda: done.append(_inspect(out, ident, force)))
    if done[0]:
        logger.info("teacher cache at %s is complete and matches; nothing to do", out)
        return load_cache(out)
    n_shards = cio.num_shards(len(corpus), shard_size)
    _phase(world, rank == 0, lambda: _prepare(out, ident, teacher.dim, n_shards, force))
    mine = [i for i in range(n_shards) if i % world == rank]
    _phase(world, True, lambda: _embed_shards(teacher, corpus, out, mine, shard_size, batch_size, progress))
    _phase(world, rank == 0, lambda: _merge(out, corpus, ident, teacher.dim, keep_shards))
    return load_cache(out)


def load_cache(
    out_dir: str | Path,
    expect_teacher: dict[str, Any] | Teacher | None = None,
    expect_corpus: Corpus | None = None,
) -> TeacherCache:
    """Open a finished cache read-only (memmap), checking it against what the caller expects.

    ``expect_teacher`` is a ``Teacher.describe()`` dict (or a teacher); ``expect_corpus`` the corpus
    the cache should hold. A difference raises :class:`CacheMismatchError`; a cache whose files
    disagree with each other (shape vs ids, id hash) raises ValueError.
    """
    out = Path(out_dir)
    meta_path = out / cio.META
    if not meta_path.is_file():
        unfinished = " (an unfinished build left plan.json)" if (out / cio.PLAN).exists() else ""
        raise FileNotFoundError(f"no finished teacher cache at {out}: {cio.META} is missing{unfinished}")
    meta = cio.read_json(meta_path)
    expected: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    if expect_teacher is not None:
        described = expect_teacher.describe() if hasattr(expect_teacher, "describe") else expect_teacher
        expected["teacher"] = cio.jsonable(described)
    if expect_corpus is not None:
        expected["corpus"] = corpus_identity(expect_corpus)
        expected["instructions"] = cio.jsonable(expect_corpus.instructions())
    diffs = cio.diff_fields(expected, {key: meta.get(key) for key in expected})
    if diffs:
        raise CacheMismatchError(out, diffs, "Rebuild it (build_cache(..., force=True) / --force)")
    ids = cio.read_json(out / cio.IDS)
    embeddings = np.load(out / cio.EMBEDDINGS, mmap_mode="r", allow_pickle=False)
    dim = int(meta["dim"])
    problems = []
    if embeddings.dtype != np.float16 or embeddings.shape != (len(ids), dim):
        problems.append(f"embeddings are {embeddings.dtype} {embeddings.shape}, expected float16 "
                        f"({len(ids)}, {dim}) from {cio.IDS} and meta")
    if len(ids) != meta["corpus"]["count"] or cio.ids_sha256(ids) != meta["corpus"]["ids_sha256"]:
        problems.append(f"{cio.IDS} does not match the id count/sha256 in {cio.META}")
    if problems:
        raise ValueError(f"corrupt teacher cache at {out}: " + "; ".join(problems))
    return TeacherCache(embeddings=embeddings, ids=ids, meta=meta, dim=dim, path=out)


def load_caches(paths: Sequence[str | Path | None]) -> list[TeacherCache]:
    """Open every finished cache in ``paths`` (``None`` and ``"none"`` entries are skipped)."""
    return [load_cache(path) for path in paths if path is not None and str(path).lower() != "none"]


def init_distributed_from_env(backend: str | None = None) -> tuple[int, int]:
    """Initialise ``torch.distributed`` from torchrun's environment; returns (rank, world_size).

    Does nothing (returns (0, 1)) unless ``WORLD_SIZE`` > 1. The backend defaults to nccl when
    CUDA is available (each rank then uses GPU ``LOCAL_RANK``) and gloo otherwise. Safe to call
    when the process group is already initialised.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch  # lazy: building and reading caches is torch-free; torch only under torchrun
    import torch.distributed as dist  # lazy: building and reading caches is torch-free; torch only under torchrun

    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        logger.info("initialised torch.distributed (%s): rank %d of %d",
                    backend, dist.get_rank(), dist.get_world_size())
    return dist.get_rank(), dist.get_world_size()


# --------------------------------------------------------------------------- build steps


def _check_corpus(corpus: Corpus) -> None:
    if len(corpus) == 0:
        raise ValueError(f"corpus {corpus.name!r} is empty; nothing to cache")
    for item in corpus.items:
        if item.kind == "image" and item.instruction is not None:
            raise ValueError(f"item {item.id!r}: image items cannot carry an instruction "
                             "(Teacher.embed_images takes none)")


def _inspect(out: Path, ident: dict[str, Any], force: bool) -> bool:
    """True if a finished matching cache exists; raises on a mismatching cache or plan."""
    if force:
        return False
    hint = "Pass force=True (CLI --force) to rebuild, or use another output directory"
    if (out / cio.META).is_file():
        meta = cio.read_json(out / cio.META)
        keys = _IDENTITY_KEYS
        diffs = cio.diff_fields({k: ident[k] for k in keys}, {k: meta.get(k) for k in keys})
        if diffs:
            raise CacheMismatchError(out, diffs, hint)
        return True
    if (out / cio.PLAN).is_file():
        plan = cio.read_json(out / cio.PLAN)
        keys = (*_IDENTITY_KEYS, "shard_size")
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
    rank, world = _rank_world()
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
            rows = _embed_items(teacher, corpus.items[lo:hi], batch_size, bar.update)
            cio.atomic_save_npy(cio.shard_path(shards_dir, i), rows)


def _embed_items(
    teacher: Teacher, items: list[CorpusItem], batch_size: int, advance: Callable[[int], Any]
) -> np.ndarray:
    """Embed items in batches of one kind and one instruction; rows come back in item order."""
    out = np.empty((len(items), teacher.dim), dtype=np.float16)
    groups: dict[tuple[str, str | None], list[int]] = {}
    for row, item in enumerate(items):
        groups.setdefault((item.kind, item.instruction), []).append(row)
    for (kind, instruction), rows in groups.items():
        if kind == "text":  # texts of similar length share a batch: much less padding
            rows = sorted(rows, key=lambda r: len(items[r].text or ""))
        for batch in cio.chunks(rows, batch_size):
            payload = [items[r].load() for r in batch]
            if kind == "text":
                emb = teacher.embed_texts(payload, instruction=instruction, batch_size=batch_size)
            else:
                emb = teacher.embed_images(payload, batch_size=batch_size)
            if emb.shape != (len(batch), teacher.dim):
                raise RuntimeError(f"teacher {teacher.id} returned {emb.shape}, expected ({len(batch)}, "
                                   f"{teacher.dim})")
            out[batch] = emb
            advance(len(batch))
    return out


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
    cio.atomic_write_json(out / cio.IDS, corpus.ids)
    meta = {**ident, "dim": dim, "normalised": True, "dtype": "float16", "created": cio.now_iso(),
            "versions": cio.package_versions()}
    cio.atomic_write_json(out / cio.META, meta)
    if not keep_shards:
        shutil.rmtree(shards_dir, ignore_errors=True)
        (out / cio.PLAN).unlink(missing_ok=True)
    logger.info("teacher cache complete: %s (%d x %d float16)", out, count, dim)


# --------------------------------------------------------------------------- distributed plumbing


def _rank_world() -> tuple[int, int]:
    """(rank, world_size) of an initialised process group, else (0, 1); never imports torch itself."""
    if "torch" not in sys.modules:
        return 0, 1
    import torch.distributed as dist  # lazy: building and reading caches is torch-free; torch only under torchrun

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _phase(world: int, active: bool, fn: Callable[[], Any]) -> None:
    """Run ``fn`` where ``active``, then synchronise all ranks; every rank raises if any failed.

    The synchronisation doubles as the barrier between build steps, and keeps a failure on one
    rank from leaving the others waiting at a barrier forever.
    """
    error: BaseException | None = None
    if active:
        try:
            fn()
        except BaseException as exc:  # re-raised below, after telling the other ranks
            error = exc
    ok = _all_ok(error is None, world)
    if error is not None:
        raise error
    if not ok:
        raise RuntimeError("teacher cache build failed on another rank; see that rank's log")


def _all_ok(ok: bool, world: int) -> bool:
    """All-reduce a success flag across ranks (a barrier); trivially ``ok`` in one process."""
    if world == 1:
        return ok
    import torch  # lazy: building and reading caches is torch-free; torch only under torchrun
    import torch.distributed as dist  # lazy: building and reading caches is torch-free; torch only under torchrun

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([0 if ok else 1], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) == 0
