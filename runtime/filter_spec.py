"""What metadata may hold and what a filter means: checked, normalised input for both filter engines.

Each top-level metadata value that is a string, number or bool (or a list of them) is *filterable*: it becomes
one ``(label, key, number, text)`` attribute row per value (:func:`attr_rows`). Filters (all conditions must
hold)::

    {"lang": "en"}                       equality (for a list value: the list contains "en")
    {"year": {"gte": 2000, "lt": 2010}}  ranges: gt, gte, lt, lte (numbers; strings compare as text)
    {"kind": {"in": ["cat", "dog"]}}     any of (any number of values)
    {"kind": {"ne": "cat"}}              not equal (items without the key match too)
    {"lang": {"eq": "en"}}               explicit equality

Bools are stored as 1/0, so ``{"flag": True}`` and ``{"flag": 1}`` are the same filter. Nested objects, nulls
and integers beyond the float range are stored and returned, but are not filterable. :func:`plan_filter`
turns a filter into checked steps; :mod:`runtime.store` runs them as SQL, :mod:`runtime.filters` on numpy
columns, with the same result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import shorten

Scalar = str | int | float | bool
#: a filter step: ``(op, operand)``; operand ``(column, value)``, for ``in`` a list of those
Step = tuple[str, Any]
RANGE = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
OPERATORS = ("eq", "ne", "in", *RANGE)
#: deepest metadata nesting accepted (objects and lists)
MAX_METADATA_DEPTH = 64


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth > limit:
                return False
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, Mapping) else item))
    return True


def check_metadata(metadata: Any, where: str) -> str | None:
    """Validate one item's metadata (a dict with str keys, JSON-serialisable, no NaN); return its JSON."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping) or not all(isinstance(key, str) for key in metadata):
        raise TypeError(f"{where} must be a dict with str keys or None, got {type(metadata).__name__}")
    if not _depth_ok(metadata, MAX_METADATA_DEPTH):
        raise ValueError(f"{where} is nested more than {MAX_METADATA_DEPTH} levels deep")
    try:
        text = json.dumps(dict(metadata), allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{where} contains a lone surrogate (U+{ord(exc.object[exc.start]):04X}), not text") from exc
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{where} is not JSON-serialisable without NaN/inf ({shorten(str(exc), 200)})") from exc
    return text


def number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (not a number, NaN/inf, or an int beyond the float range)."""
    if not isinstance(value, bool | int | float):
        return None
    try:
        as_float = float(value)
    except OverflowError:
        return None
    return as_float if math.isfinite(as_float) else None


def attr_rows(label: int, metadata: Mapping[str, Any]) -> Iterable[tuple[int, str, float | None, str | None]]:
    """The filterable ``(label, key, number, text)`` rows of one item's metadata."""
    for key, value in metadata.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                yield label, key, None, item
            elif (as_number := number(item)) is not None:
                yield label, key, as_number, None


def text(value: str, what: str) -> str:
    """``value`` if it encodes as UTF-8 (no lone surrogates), else a ValueError naming ``what``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} contains a lone surrogate, not text") from exc
    return value


def _column(value: Any, key: str) -> tuple[str, Scalar]:
    if isinstance(value, str):
        return "txt", text(value, f"filter on {shorten(key, 60)}: value")
    as_number = number(value)
    if as_number is None:
        raise ValueError(f"filter on {shorten(key, 60)}: value {shorten(value, 60)} must be a string or a finite "
                         "number within the float range")
    return "num", as_number


def _steps(key: str, cond: Any) -> list[Step]:
    """Checked ``(op, operand)`` steps of one key's condition (``in``: a list of ``(column, value)``)."""
    ops = cond if isinstance(cond, Mapping) else {"eq": cond}
    if not ops:
        raise ValueError(f"filter on {shorten(key, 60)}: empty condition")
    steps: list[Step] = []
    for op, value in ops.items():
        if op == "in":
            if not isinstance(value, list | tuple) or not value:
                raise ValueError(f"filter on {shorten(key, 60)}: 'in' needs a non-empty list")
            steps.append((op, [_column(v, key) for v in value]))
        elif op in ("eq", "ne") or op in RANGE:
            steps.append((op, _column(value, key)))
        else:
            raise ValueError(f"filter on {shorten(key, 60)}: unknown operator {shorten(op, 40)}; "
                             f"use one of {', '.join(OPERATORS)}")
    return steps


def plan_filter(where: Any) -> list[tuple[str, list[Step]]]:
    """A filter as checked ``(key, steps)`` pairs (ValueError naming what is wrong)."""
    if not isinstance(where, Mapping) or not where:
        raise ValueError(f"filter must be a non-empty dict, got {shorten(where, 80)}")
    return [(text(str(key), "filter key"), _steps(str(key), cond)) for key, cond in where.items()]


def filter_key(plans: list[tuple[str, list[Step]]]) -> str:
    """A canonical text of a checked filter (equal filters, equal keys): what label sets are memoised by."""
    return json.dumps(plans, ensure_ascii=False, separators=(",", ":"))
