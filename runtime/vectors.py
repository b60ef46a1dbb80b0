"""Vector helpers: validation, L2 normalisation and Matryoshka truncation (numpy only)."""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def as_matrix(vectors: object, dim: int, what: str = "vectors") -> np.ndarray:
    """``vectors`` as a C-contiguous float32 ``(n, dim)`` array; a single ``(dim,)`` vector becomes ``(1, dim)``.

    Raises:
        ValueError: wrong shape or dim, or any NaN/inf (naming the first bad row).
    """
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {tuple(np.shape(vectors))}")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"{what} contain NaN or infinite values (rows {bad[:10].tolist()})")
    return np.ascontiguousarray(array)


def l2_normalise(array: np.ndarray, what: str = "vectors") -> np.ndarray:
    """Rows scaled to unit L2 norm (float32). Zero rows cannot be normalised and raise ValueError."""
    array = np.asarray(array, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    zero = norms[:, 0] < _EPS
    if zero.any():
        raise ValueError(f"{what}: rows {np.flatnonzero(zero)[:10].tolist()} have zero norm and cannot be normalised")
    return np.ascontiguousarray(array / norms, dtype=np.float32)


def truncate(array: np.ndarray, dim: int) -> np.ndarray:
    """Matryoshka truncation: keep the first ``dim`` components, then renormalise."""
    if dim > array.shape[1]:
        raise ValueError(f"cannot truncate {array.shape[1]}-d vectors to {dim} dims")
    if dim == array.shape[1]:
        return l2_normalise(array)
    return l2_normalise(array[:, :dim], what=f"vectors truncated to {dim} dims")
