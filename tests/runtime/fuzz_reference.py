"""The metadata-filter semantics of ``runtime.store``, re-implemented in plain Python: the fuzz suite's oracle."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def _number(value: Any) -> float | None:
    if isinstance(value, bool | int | float) and not (isinstance(value, int) and abs(value) > 1.7e308):
        return float(value) if math.isfinite(float(value)) else None
    return None


def _valid_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _operand(value: Any) -> tuple[str, Any]:
    if isinstance(value, str):
        if not _valid_text(value):
            raise ValueError("surrogate")
        return "txt", value
    number = _number(value)
    if number is None:
        raise ValueError("not a scalar")
    return "num", number


def reference_filter(where: Any) -> Callable[[dict | None], bool]:
    """The filter semantics of ``runtime.store``, re-implemented in plain Python (ValueError when invalid)."""
    if not isinstance(where, dict) or not where:
        raise ValueError("empty")
    tests = []
    for key, cond in where.items():
        key = str(key)
        if not _valid_text(key):
            raise ValueError("surrogate key")
        ops = cond if isinstance(cond, dict) else {"eq": cond}
        if not ops:
            raise ValueError("empty condition")
        for op, value in ops.items():
            if op == "in":
                if not isinstance(value, list | tuple) or not value:
                    raise ValueError("in")
                tests.append((key, op, [_operand(v) for v in value]))
            elif op in ("eq", "ne", "gt", "gte", "lt", "lte"):
                tests.append((key, op, _operand(value)))
            else:
                raise ValueError("operator")

    def stored(meta: dict | None, key: str) -> list[tuple[str, Any]]:
        if not meta or key not in meta:
            return []
        items = meta[key] if isinstance(meta[key], list) else [meta[key]]
        return [("txt", v) if isinstance(v, str) else ("num", _number(v)) for v in items
                if isinstance(v, str) or _number(v) is not None]

    compare = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b,
               "lte": lambda a, b: a <= b}

    def matches(meta: dict | None) -> bool:
        for key, op, operand in tests:
            have = stored(meta, key)
            if op == "in":
                ok = any(item in operand for item in have)
            elif op in ("eq", "ne"):
                ok = (operand in have) == (op == "eq")
            else:
                ok = any(col == operand[0] and compare[op](v, operand[1]) for col, v in have)
            if not ok:
                return False
        return True

    return matches
