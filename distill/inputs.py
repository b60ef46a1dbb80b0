"""Student inputs of the training items, prepared once per run and memory-mapped.

* :class:`TokenTable`: every training text's token ids at the student's max length (int32, padded with the
  pad id), tokenised in chunks as the texts stream from the item tables;
* :class:`PixelStore`: every training image resized and cropped to the student's resolution (uint8 NHWC),
  decoded once (exactly the pixels the teacher saw: renders are re-rendered, files re-decoded with the
  runtime's loader and the shared :class:`~edgeret.runtime.preprocess.ImagePreprocessor`). Above
  ``max_bytes`` the images are decoded per batch instead of stored.

Both files live in the run's work folder under a name derived from what they hold, so a resumed run reuses
them, and so does a later run (a pruned student's recovery) that names the earlier run's folder in ``reuse``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from edgeret.data.items import CorpusItem
from edgeret.runtime.image import load_image
from edgeret.runtime.preprocess import ImagePreprocessor

from .pairs import TrainData, corpus_for_cache

logger = logging.getLogger(__name__)

#: above this many bytes of pixels, training images are decoded per batch instead of memory-mapped
PIXEL_STORE_MAX_BYTES = 8 << 30
_CHUNK = 4096
#: threads that render or decode training images (~1.4x faster than one on a 2-core machine)
DECODE_WORKERS = min(4, os.cpu_count() or 1)


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def corpus_identity(caches: Sequence) -> list:
    """What the teacher caches say their corpora are (name, meta, count, id hash): part of a prepared file's key."""
    return [cache.meta.get("corpus") for cache in caches]


def find_prepared(name: str, workdir: Path, reuse: Sequence[Path] = ()) -> Path | None:
    """The first existing file ``name`` in ``workdir`` or in the earlier runs' folders ``reuse`` (read only)."""
    for folder in (workdir, *reuse):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def _publish(tmp: Path, final: Path) -> np.ndarray:
    tmp.replace(final)
    return np.load(final, mmap_mode="r")


class TokenTable:
    """Token ids (``ids``, int32 (n, max_length)) and lengths (``lengths``) of every training text."""

    def __init__(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        self.ids, self.lengths = ids, lengths

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def build(cls, texts: Iterable[str], count: int, tokenizer: Tokenizer, max_length: int, workdir: Path,
              progress: bool = False, reuse: Sequence[Path] = (), identity: object = None) -> TokenTable:
        """Tokenise ``texts`` (``count`` of them) without padding, truncated at ``max_length``; reused when the
        same texts and tokenizer were tokenised before in ``workdir`` or in one of the ``reuse`` folders
        (``identity``, e.g. :func:`corpus_identity`, goes into the key with the count and the first texts)."""
        tok = Tokenizer.from_str(tokenizer.to_str())
        tok.no_padding()
        tok.enable_truncation(max_length)
        texts = iter(texts)
        first = [t for _, t in zip(range(_CHUNK), texts, strict=False)]
        key = _key(tok.to_str(), max_length, count, first[:64], *([identity] if identity is not None else []))
        found = [find_prepared(f"tokens-{key}{suffix}.npy", workdir, reuse) for suffix in ("", ".lengths")]
        if found[0] is not None and found[1] is not None and found[0].parent == found[1].parent:
            return cls(np.load(found[0], mmap_mode="r"), np.load(found[1]))
        path, lengths_path = workdir / f"tokens-{key}.npy", workdir / f"tokens-{key}.lengths.npy"
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npy")
        ids = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int32, shape=(count, max_length))
        lengths = np.zeros(count, dtype=np.int32)
        done = 0
        with tqdm(total=count, desc="tokenising training texts", unit="text", disable=not progress) as bar:
            chunk = first
            while chunk:
                for i, enc in enumerate(tok.encode_batch(chunk)):
                    lengths[done + i] = len(enc.ids)
                    ids[done + i, : len(enc.ids)] = enc.ids
                done += len(chunk)
                bar.update(len(chunk))
                chunk = [t for _, t in zip(range(_CHUNK), texts, strict=False)]
        if done != count:
            raise ValueError(f"expected {count} training texts, got {done}")
        ids.flush()
        del ids
        np.save(lengths_path, lengths)
        return cls(_publish(tmp, path), lengths)

    def batch(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` int64 of texts ``index``, cut to the batch's longest text."""
        index = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[index]
        width = max(1, int(lengths.max(initial=1)))
        ids = torch.from_numpy(np.asarray(self.ids[index, :width], dtype=np.int64))
        mask = torch.from_numpy((np.arange(width)[None, :] < lengths[:, None]).astype(np.int64))
        return ids * mask, mask


class PixelStore:
    """Training images at the student's resolution: ``get(index)`` -> uint8 (B, S, S, 3)."""

    def __init__(self, data: TrainData, preprocessor: ImagePreprocessor, array: np.ndarray | None,
                 path: Path | None = None) -> None:
        self.data, self.preprocessor, self.array = data, preprocessor, array
        self.path = path  #: the memory-mapped file (None when decoded per batch)
        self._renders: dict[int, dict[str, CorpusItem]] = {}
        self._lock = threading.Lock()

    @property
    def stored(self) -> bool:
        """Whether the pixels are memory-mapped (else decoded per batch)."""
        return self.array is not None

    @classmethod
    def build(cls, data: TrainData, preprocessor: ImagePreprocessor, workdir: Path, progress: bool = False,
              max_bytes: int = PIXEL_STORE_MAX_BYTES, reuse: Sequence[Path] = ()) -> PixelStore:
        """Decode every training image once into ``workdir`` (reused when present there or in a ``reuse``
        folder), or, past ``max_bytes``, a store that decodes per batch."""
        size = preprocessor.size
        store = cls(data, preprocessor, None)
        if data.n_images * size * size * 3 > max_bytes:
            logger.info("%d training images exceed the pixel store limit: decoding them per batch", data.n_images)
            return store
        ids = [item[3] for item in data.image_items()]
        path = workdir / f"pixels-{_key(ids, preprocessor.to_dict(), corpus_identity(data.images.caches))}.npy"
        found = find_prepared(path.name, workdir, reuse)
        if found is not None:
            logger.info("reusing pre-rendered train images %s", found)
            store.array, store.path = np.load(found, mmap_mode="r"), found
            return store
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(data.n_images, size, size, 3))
        with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:  # resizing and decoding release the GIL
            decoded = pool.map(store._decode, data.image_items())
            for i, pixels in enumerate(tqdm(decoded, total=data.n_images, desc="rendering train images", unit="img",
                                            disable=not progress)):
                out[i] = pixels
        out.flush()
        del out
        store.array, store.path = _publish(tmp, path), path
        return store

    def _decode(self, item: tuple[int, int, str | None, str]) -> np.ndarray:
        cache, _, path, item_id = item
        image = load_image(path, item_id) if path else self._render(cache, item_id)
        return np.asarray(self.preprocessor.resize_crop(image), dtype=np.uint8)

    def _render(self, cache: int, item_id: str) -> Image.Image:
        """A built-in corpus's image, re-rendered from its corpus (rebuilt once per cache)."""
        with self._lock:  # decoding threads share one rebuilt corpus
            if cache not in self._renders:
                corpus = corpus_for_cache(self.data.images.caches[cache])
                self._renders[cache] = {it.id: it for it in corpus.iter_items() if it.kind == "image"}
        return self._renders[cache][item_id].load()

    def get(self, index: np.ndarray) -> np.ndarray:
        """uint8 (B, S, S, 3) of training images ``index``."""
        index = np.asarray(index, dtype=np.int64)
        if self.array is not None:
            return np.asarray(self.array[index])
        with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
            return np.stack(list(pool.map(self._decode, self.data.image_info(index))))


def normalise_pixels(pixels: np.ndarray, preprocessor: ImagePreprocessor) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW normalised exactly as ``ImagePreprocessor.__call__`` does."""
    mean = np.asarray(preprocessor.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(preprocessor.std, dtype=np.float32)[:, None, None]
    return (pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - mean) / std
