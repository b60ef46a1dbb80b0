"""``Retriever``: open a bundle, embed texts and images, index them, search. No torch anywhere.

    from edgeret import Retriever
    r = Retriever.open("bundle/", threads=1)
    r.add_images(["cat.png"], ["photos/cat.png"], metadata=[{"year": 2021}])
    r.search(text="a cat", k=5, filter={"year": {"gte": 2020}})   # -> [SearchResult(id, score, metadata)]
    r.save()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .bundle import Manifest, load_manifest, remove_manifest_temporaries, update_index_section
from .errors import BundleError
from .index import SearchResult, VectorIndex
from .index_formats import DEFAULT_FORMAT
from .persist import writer_lock
from .text import TextEncoder
from .vectors import as_matrix, truncate

if TYPE_CHECKING:  # runtime.image (Pillow) is imported when the first image is encoded
    from .image import ImageEncoder, ImageLike

logger = logging.getLogger(__name__)

__all__ = ["Retriever", "SearchResult"]


class Retriever:
    """Encoders + index of one bundle. Thread-safe: searches run concurrently with adds/deletes."""

    def __init__(self, manifest: Manifest, text: TextEncoder | None, image: ImageEncoder | None,
                 index: VectorIndex, *, image_loader: Callable[[], ImageEncoder] | None = None) -> None:
        """``image_loader`` (instead of ``image``) creates the image encoder on first use."""
        self.manifest, self.text_encoder, self.index = manifest, text, index
        self._image, self._image_loader = image, image_loader
        self._image_lock = threading.Lock()
        self._save_lock = threading.Lock()

    @property
    def image_encoder(self) -> ImageEncoder | None:
        """The image encoder (``None`` for a text-only bundle); created on first access when lazy."""
        if self._image is None and self._image_loader is not None:
            with self._image_lock:
                if self._image is None and self._image_loader is not None:
                    self._image = self._image_loader()
                    self._image_loader = None
        return self._image

    @property
    def has_image_encoder(self) -> bool:
        """Whether the bundle can embed images (without creating the encoder)."""
        return self._image is not None or self._image_loader is not None

    @classmethod
    def open(
        cls, bundle_dir: str | Path, *, threads: int | None = None, dim: int | None = None,
        verify: bool | str = True, exact_threshold: int = 2048, optimization: str = "all",
        providers: Sequence[str] | None = None, lazy_image: bool = True, model_format: str = "auto",
        index_format: str | None = None,
    ) -> Retriever:
        """Verify and open a bundle (and its saved index, if any).

        Args:
            threads: onnxruntime intra-op threads and hnswlib insert threads (``None``: all cores).
            dim: Matryoshka dimension to index/search at (one of the manifest's ``matryoshka_dims``
                or the full dim); default: the saved index's dim, else the manifest index dim.
            verify: ``True`` checks sha256 + size of every file; ``"size"`` only sizes; ``False`` none.
            exact_threshold: collections (or filtered subsets) up to this size are searched exactly.
            optimization, providers: passed to :func:`runtime.sessions.create_session`.
            lazy_image: create the image session (and import Pillow) on the first image, which keeps a
                text-search start fast; ``False`` creates it now, so an unloadable image model fails here.
            model_format: ``"auto"`` starts the text tower from its ORT-format twin (``edgeret compress
                --ort``; opens ~3x faster) when the manifest names one and the image tower from its ``.onnx``
                (optimised at load for this CPU: faster per image), each falling back to the other file;
                ``"onnx"`` or ``"ort"`` force one for both towers.
            index_format: the index format of a new index (:mod:`runtime.index_formats`; default: the manifest's
                ``index.format``, else ``hnswlib-f32``); a saved index keeps its own, and naming another is an error.

        Raises:
            BundleError: missing/altered files, newer format, dim/space/index format mismatches, unloadable models,
                an index format whose library is not installed.
        """
        manifest = load_manifest(bundle_dir, verify=verify)
        try:
            return cls._open(manifest, threads=threads, dim=dim, exact_threshold=exact_threshold,
                             lazy_image=lazy_image, index_format=index_format,
                             kwargs={"threads": threads, "optimization": optimization, "providers": providers,
                                     "model_format": model_format})
        except BaseException:
            if manifest.saved_index is not None:
                manifest.saved_index.release()  # (on success the index holds it while it reads files in place)
            raise

    @classmethod
    def _open(cls, manifest: Manifest, *, threads: int | None, dim: int | None, exact_threshold: int,
              lazy_image: bool, index_format: str | None, kwargs: dict[str, Any]) -> Retriever:
        saved = manifest.saved_index
        if saved is not None and index_format is not None and saved.format.name != index_format:
            raise BundleError(f"the saved index in {saved.directory} is {saved.format.name} but index_format="
                              f"{index_format!r} was requested; open it as it is or rebuild the index")
        chosen = dim if dim is not None else (saved.meta["dim"] if saved else manifest.index["dim"])
        if chosen not in manifest.allowed_dims:
            raise BundleError(f"dim {chosen} is not one of the bundle's dims {manifest.allowed_dims}")
        if saved is not None and saved.meta["dim"] != chosen:
            raise BundleError(
                f"the saved index in {saved.directory} is {saved.meta['dim']}-d but dim={chosen} was requested; "
                "open with that dim or rebuild the index"
            )
        root, full = manifest.root, manifest.dim
        text = TextEncoder.from_spec(root, manifest.text, full, **kwargs) if manifest.text else None
        image_loader = None
        if manifest.image:
            def image_loader() -> ImageEncoder:
                from .image import ImageEncoder  # lazy: Pillow and the image session only on the first image

                return ImageEncoder.from_spec(root, manifest.image, full, **kwargs)
        if saved is not None:
            index = VectorIndex.load(saved, exact_threshold=exact_threshold, threads=threads)
        else:
            cfg = manifest.index
            index = VectorIndex(chosen, space=cfg["space"], M=cfg["M"], ef_construction=cfg["ef_construction"],
                                ef_search=cfg["ef_search"], exact_threshold=exact_threshold, threads=threads,
                                format=index_format or cfg.get("format") or DEFAULT_FORMAT)
        logger.debug("opened %s: %d items, dim %d", root, len(index), chosen)
        retriever = cls(manifest, text, None, index, image_loader=image_loader)
        if not lazy_image:
            _ = retriever.image_encoder
        return retriever

    # ---- embedding ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """The dimension vectors are indexed and searched at."""
        return self.index.dim

    def _fit(self, full: np.ndarray) -> np.ndarray:
        # encoder outputs are already L2-normalised: only a Matryoshka prefix needs renormalising
        return full if full.shape[1] == self.dim else truncate(full, self.dim)

    def embed_texts(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """``(n, dim)`` float32, L2-normalised (Matryoshka-truncated to :attr:`dim`)."""
        if self.text_encoder is None:
            raise ValueError("this bundle has no text encoder")
        return self._fit(self.text_encoder.encode(texts, batch_size=batch_size, progress=progress))

    def embed_images(self, images: Sequence[ImageLike], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """``(n, dim)`` float32, L2-normalised; images are paths, encoded bytes, PIL images or arrays."""
        if self.image_encoder is None:
            raise ValueError("this bundle has no image encoder")
        return self._fit(self.image_encoder.encode(images, batch_size=batch_size, progress=progress))

    # ---- indexing ----------------------------------------------------------------------------
    def add_texts(self, ids: Sequence[str], texts: Sequence[str], metadata: Sequence[Mapping[str, Any] | None]
                  | None = None, *, batch_size: int = 64, progress: bool = False) -> None:
        """Embed and add (or replace) texts. Every input is checked before anything is indexed."""
        self._check_lengths(ids, texts, "texts")
        self.add_embeddings(ids, self.embed_texts(texts, batch_size=batch_size, progress=progress), metadata)

    def add_images(self, ids: Sequence[str], images: Sequence[ImageLike], metadata: Sequence[Mapping[str, Any] | None]
                   | None = None, *, batch_size: int = 32, progress: bool = False) -> None:
        """Embed and add (or replace) images. One bad image fails the call and nothing is indexed."""
        self._check_lengths(ids, images, "images")
        self.add_embeddings(ids, self.embed_images(images, batch_size=batch_size, progress=progress), metadata)

    def add_embeddings(self, ids: Sequence[str], vectors: Any,
                       metadata: Sequence[Mapping[str, Any] | None] | None = None) -> None:
        """Add precomputed vectors: ``(n, dim)``, or full-dim ones (truncated to :attr:`dim`)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim == 2 and vectors.shape[1] == self.manifest.dim != self.dim:
            vectors = truncate(as_matrix(vectors, self.manifest.dim), self.dim)
        self.index.add(ids, vectors, metadata)

    @staticmethod
    def _check_lengths(ids: Sequence[str], items: Sequence[Any], what: str) -> None:
        if isinstance(ids, str) or isinstance(items, str | bytes):
            raise TypeError(f"ids and {what} must be lists")
        if len(ids) != len(items):
            raise ValueError(f"{len(ids)} ids but {len(items)} {what}")

    def delete(self, ids: Sequence[str]) -> None:
        """Remove items; unknown ids raise :class:`runtime.errors.UnknownIdError` and nothing is removed."""
        self.index.delete(ids)

    # ---- search ------------------------------------------------------------------------------
    def search(
        self, text: str | None = None, image: ImageLike | None = None, *, vector: Any = None, k: int = 10,
        filter: Mapping[str, Any] | None = None, exact: bool | None = None,
    ) -> list[SearchResult]:
        """Top ``k`` items for one query (exactly one of ``text``, ``image``, ``vector``), best first.

        ``filter`` restricts to items whose metadata match (see :mod:`runtime.store`); ``exact``
        forces brute-force (``True``) or HNSW (``False``) search; ``None`` picks by collection size.
        """
        given = [name for name, value in (("text", text), ("image", image), ("vector", vector)) if value is not None]
        if len(given) != 1:
            raise ValueError(f"search needs exactly one of text=, image=, vector= (got {given or 'none'})")
        if text is not None:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"search text must be a non-empty string, got {text!r}")
            query = self.embed_texts([text])
        elif image is not None:
            query = self.embed_images([image])
        else:
            query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
            if query.shape[1] == self.manifest.dim != self.dim:
                query = truncate(as_matrix(query, self.manifest.dim, "query vector"), self.dim)
        return self.index.search(query, k=k, filter=filter, exact=exact)

    # ---- bookkeeping -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, item: object) -> bool:
        return item in self.index

    @property
    def ef_search(self) -> int:
        """The index's HNSW search breadth (settable; saved with the index)."""
        return self.index.ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self.index.ef_search = value

    def close(self) -> None:
        """Release the index files read in place (the retriever must not be used afterwards)."""
        self.index.close()

    def save(self) -> Path:
        """Atomically save the index into the bundle's index folder; returns the new generation folder.

        Takes the index's cross-process writers' lock; if another process saved since this bundle was
        opened (or last saved), merges its items in first (see :class:`runtime.index.VectorIndex`).
        Leftover temporaries of killed saves are removed.

        Raises:
            IndexBusyError: another process held the writers' lock too long.
            BundleError: the index on disk changed dim/space meanwhile, or the folder is not writable.
        """
        index_dir = self.manifest.index_dir
        with writer_lock(index_dir), self._save_lock:  # the file lock first, as in VectorIndex.save
            manifest_index = self.manifest.index
            mine = (self.index.dim, self.index.space, self.index.format)
            if (manifest_index["dim"], manifest_index["space"], manifest_index.get("format", DEFAULT_FORMAT)) != mine:
                # first index at another Matryoshka dim or format: record it before the generation appears
                update_index_section(self.manifest, strict=True, dim=mine[0], space=mine[1], format=mine[2])
            saved = self.index.save(index_dir)
            update_index_section(self.manifest, count=saved.meta["count"], ef_search=saved.meta["ef_search"])
            remove_manifest_temporaries(self.manifest.root)
            self.manifest = Manifest(self.manifest.root, self.manifest.data, saved)
            return saved.directory
