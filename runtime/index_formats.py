"""The index formats a bundle may hold, and the backend each one is served by.

``index.json`` names its generation's ``format`` (absent: ``hnswlib-f32``, every generation written before
formats existed). The loader refuses a format it does not know, and a known one whose library is missing, with
a :class:`BundleError` that says what to install. A backend is imported only when its format is used (faiss is
an optional extra: ``pip install 'edgeret[faiss]'``).

=================  =======================  =========================================================
format             index.json version       files (besides ``meta.sqlite`` and ``filters.npz``)
=================  =======================  =========================================================
``hnswlib-f32``    1.1 (1.x runtimes read)  ``hnsw.bin``: hnswlib's graph + float32 vectors (default)
``faiss-hnsw-sq8`` 2.0 (1.x runtimes refuse) ``index.faiss``: faiss IndexHNSWSQ, 8-bit per-dimension
                                            codes, memory-mapped; ``tombstones.npy``: deleted labels
=================  =======================  =========================================================
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from .errors import BundleError, shorten

DEFAULT_FORMAT = "hnswlib-f32"


@dataclass(frozen=True)
class IndexFormat:
    """One on-disk index format: the ``index.json`` version it writes, its files and its backend."""

    name: str
    version: str
    files: tuple[str, ...]
    module: str
    backend: str
    library: str | None = None
    requirement: str | None = None
    extra: str | None = None

    @property
    def major(self) -> str:
        """The major ``index.json`` version of this format."""
        return self.version.split(".")[0]


FORMATS = {
    "hnswlib-f32": IndexFormat("hnswlib-f32", "1.1", ("hnsw.bin", "meta.sqlite"), ".hnsw_backend", "HnswBackend"),
    "faiss-hnsw-sq8": IndexFormat("faiss-hnsw-sq8", "2.0", ("index.faiss", "tombstones.npy", "meta.sqlite"),
                                  ".faiss_backend", "FaissSQ8Backend", library="faiss", requirement="faiss-cpu>=1.14",
                                  extra="faiss"),
}
#: ``index.json`` major versions this runtime reads
MAJORS = sorted({fmt.major for fmt in FORMATS.values()})


def index_format(name: Any, where: str = "index") -> IndexFormat:
    """The :class:`IndexFormat` called ``name`` (``None``: the default), or a BundleError naming the known ones."""
    if name is None:
        name = DEFAULT_FORMAT
    if not isinstance(name, str) or name not in FORMATS:
        raise BundleError(f"{where}: index format {shorten(name, 60)} is not supported by this runtime "
                          f"(known: {', '.join(FORMATS)})")
    return FORMATS[name]


def missing_library(fmt: IndexFormat) -> str | None:
    """Why ``fmt``'s library cannot be used here (a sentence with the pip command), or ``None`` when it can."""
    if fmt.library is None or importlib.util.find_spec(fmt.library) is not None:
        return None
    return (f"index format {fmt.name!r} needs {fmt.requirement}, which is not installed: "
            f"pip install 'edgeret[{fmt.extra}]'")


def backend_class(name: Any, where: str = "index") -> type:
    """The backend class serving format ``name`` (imported now); BundleError if unknown or its library is missing."""
    fmt = index_format(name, where)
    problem = missing_library(fmt)
    if problem:
        raise BundleError(f"{where}: {problem}")
    return getattr(importlib.import_module(fmt.module, __package__), fmt.backend)
