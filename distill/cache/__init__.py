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

Reading a cache (:func:`load_cache`) never imports torch. Modules: :mod:`.reader` (open and check),
:mod:`.builder` (embed, resumably, in shards), :mod:`.items` (the item table), :mod:`.files` (file helpers),
:mod:`.distributed` (torchrun).
"""

from .builder import build_cache
from .distributed import init_distributed_from_env
from .reader import (
    FORMAT,
    VERSION,
    CacheMismatchError,
    TeacherCache,
    cache_identity,
    corpus_identity,
    load_cache,
    load_caches,
)

__all__ = ["FORMAT", "VERSION", "CacheMismatchError", "TeacherCache", "build_cache", "cache_identity",
           "corpus_identity", "init_distributed_from_env", "load_cache", "load_caches"]
