"""Vector helpers: validation, L2 normalisation and Matryoshka truncation (numpy only)."""

from __future__ import annotations

import numpy as np

_EPS = 1e-12
#: float32 rows whose norm falls outside (_TINY, inf) are renormalised in float64 (no overflow/underflow)
_TINY = 1e-15


def as_matrix(vectors: object, dim: int, what: str = "vectors") -> np.ndarray:
    """``vectors`` as a C-contiguous float32 ``(n, dim)`` array; a single ``(dim,)`` vector becomes ``(1, dim)``.

    Raises:
        ValueError: not numeric, wrong shape or dim, or any NaN/inf or value beyond the float32 range
            (naming the first bad rows).
    """
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{what} must be a numeric (n, {dim}) array ({str(exc)[:200]})") from exc
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {tuple(array.shape)}")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"{what} contain NaN, infinite or beyond-float32 values (rows {bad[:10].tolist()})")
    return np.ascontiguousarray(array)


def l2_normalise(array: np.ndarray, what: str = "vectors") -> np.ndarray:
    """Rows scaled to unit L2 norm (float32). Zero rows cannot be normalised and raise ValueError.

    Rows whose float32 norm overflows (values near 3e38) or underflows are normalised in float64 after
    scaling by their largest magnitude, so huge or tiny but finite vectors keep their direction.
    """
    array = np.asarray(array, dtype=np.float32)
    with np.errstate(over="ignore", under="ignore"):
        norms = np.linalg.norm(array, axis=1, keepdims=True)
    odd = ~np.isfinite(norms[:, 0]) | (norms[:, 0] < _TINY)
    if not odd.any():
        return np.ascontiguousarray(array / norms, dtype=np.float32)
    out = np.empty_like(array)
    regular = ~odd
    out[regular] = array[regular] / norms[regular]
    rows = array[odd].astype(np.float64)
    peak = np.abs(rows).max(axis=1, keepdims=True)
    zero = peak[:, 0] == 0
    if zero.any():
        bad = np.flatnonzero(odd)[zero]
        raise ValueError(f"{what}: rows {bad[:10].tolist()} have zero norm and cannot be normalised")
    scaled = rows / peak
    out[odd] = (scaled / np.linalg.norm(scaled, axis=1, keepdims=True)).astype(np.float32)
    return out


def truncate(array: np.ndarray, dim: int) -> np.ndarray:
    """Matryoshka truncation: keep the first ``dim`` components, then renormalise."""
    if dim > array.shape[1]:
        raise ValueError(f"cannot truncate {array.shape[1]}-d vectors to {dim} dims")
    if dim == array.shape[1]:
        return l2_normalise(array)
    return l2_normalise(array[:, :dim], what=f"vectors truncated to {dim} dims")
