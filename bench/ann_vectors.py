"""Vectors for the ANN study: real student embeddings where we have them, synthetic clustered ones beyond.

Real: a bundle's embeddings of every WordNet synset (gloss and lemmas) and every OpenMoji emoji
(rendered image and captions), about 66k 384-d vectors, cached as ``.npy`` (keyed by the bundle's
manifest) so reruns reuse them. Synthetic: each vector is a random *parent* (a real vector, or
without real ones a random centre) plus isotropic Gaussian noise of norm ``spread``, renormalised,
so the collection keeps the clusters and hubs of the real embeddings (cosine to the parent ~
1/sqrt(1 + spread^2)). Everything is L2-normalised float32.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from edgeret.data.openmoji import emojis
from edgeret.data.render import render_emoji
from edgeret.data.wordnet import synsets
from edgeret.runtime.retriever import Retriever
from edgeret.runtime.vectors import l2_normalise

logger = logging.getLogger(__name__)

SPREAD = 0.5


def real_embeddings(bundle: Path, cache_dir: Path) -> np.ndarray:
    """A bundle's embeddings of all WordNet synsets and OpenMoji emoji (cached in ``cache_dir``)."""
    key = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()[:16]
    path = cache_dir / f"real-{bundle.name}-{key}.npy"
    if path.is_file():
        return np.load(path)
    retriever = Retriever.open(bundle, threads=None, verify="size")
    texts = [t for s in synsets("all") for t in (s.gloss, s.lemmas)]
    texts += [c for e in emojis("all") for c in e.captions]
    logger.info("embedding %d real texts with %s", len(texts), bundle)
    parts = [retriever.embed_texts(texts, batch_size=128, progress=True)]
    if retriever.image_encoder is not None:
        images = [render_emoji(e.text) for e in emojis("all")]
        logger.info("embedding %d real images", len(images))
        parts.append(retriever.embed_images(images, batch_size=64, progress=True))
    vectors = np.concatenate(parts).astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), vectors)
    path.with_suffix(".tmp.npy").replace(path)
    return vectors


def synthetic(n: int, parents: np.ndarray, rng: np.random.Generator, spread: float = SPREAD,
              chunk: int = 100_000) -> np.ndarray:
    """``n`` vectors scattered around random ``parents`` (noise norm ~ ``spread``), normalised."""
    dim = parents.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        noise = rng.standard_normal((hi - lo, dim), dtype=np.float32) * np.float32(spread / np.sqrt(dim))
        out[lo:hi] = parents[rng.integers(0, len(parents), hi - lo)] + noise
        out[lo:hi] = l2_normalise(out[lo:hi])
    return out


def random_centres(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random unit vectors (cluster centres when there are no real embeddings)."""
    return l2_normalise(rng.standard_normal((n, dim), dtype=np.float32))


def split_queries(real: np.ndarray, n_queries: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(base, queries): ``n_queries`` real vectors held out as queries, never indexed."""
    order = rng.permutation(len(real))
    return real[order[n_queries:]], real[order[:n_queries]]


def collection(size: int, base: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``size`` vectors: the real ``base`` first (as many as fit), synthetic children of it beyond."""
    n_real = min(size, len(base))
    if n_real == size:
        return np.ascontiguousarray(base[:size]), n_real
    out = np.empty((size, base.shape[1]), dtype=np.float32)
    out[:n_real] = base[:n_real]
    out[n_real:] = synthetic(size - n_real, base, rng)
    return out, n_real


def exact_topk(data: np.ndarray, queries: np.ndarray, k: int = 10, chunk: int = 100_000) -> np.ndarray:
    """Indices of the ``k`` most similar rows of ``data`` (inner product) per query, best first."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    for lo in range(0, len(data), chunk):
        scores = queries @ data[lo : lo + chunk].T
        take = min(k, scores.shape[1])
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, part, 1)], axis=1)
        best_ids = np.concatenate([best_ids, part + lo], axis=1)
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores, best_ids = np.take_along_axis(best_scores, keep, 1), np.take_along_axis(best_ids, keep, 1)
    return best_ids


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k found in its approximate top-k."""
    k = exact.shape[1]
    return float(np.mean([len(set(f[:k]) & set(e)) / k for f, e in zip(found, exact, strict=True)]))
