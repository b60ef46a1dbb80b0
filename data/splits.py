"""Deterministic train/val/test assignment that is stable across runs, machines and data versions."""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")


def split_of(key: str, fractions: tuple[float, float, float], seed: int = 0) -> str:
    """Assign ``key`` to 'train', 'val' or 'test' by a seeded sha256 hash.

    Each key's split depends only on the key, the seed and the fractions, so adding or removing
    other keys (e.g. a newer emoji release) never moves an existing key to another split.
    """
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "val"
    return "test"


def check_split(split: str) -> str:
    """Validate a split name ('train', 'val', 'test' or 'all')."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS + ('all',)}")
    return split
