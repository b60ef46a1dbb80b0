"""Exceptions raised by the runtime; each subclasses the builtin a caller would expect.

* :class:`BundleError` (a ``ValueError``): a bundle or its index is missing a file, corrupt, too new,
  inconsistent, or hostile (a path that leaves the bundle, a malformed graph file).
* :class:`IndexBusyError` (a ``BundleError`` and a ``TimeoutError``): another process held the index's
  writer lock for longer than the save was willing to wait.
* :class:`UnknownIdError` (a ``KeyError``): some ids are not in the index.

:func:`shorten` keeps user-supplied values (a 1 MB path, id or text) out of error messages.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

#: longest quoted value in an error message (longer ones are cut in the middle)
MESSAGE_VALUE_LIMIT = 160


class BundleError(ValueError):
    """A bundle (or its index) is missing a file, is corrupt, too new, inconsistent or unsafe."""


class IndexBusyError(BundleError, TimeoutError):
    """The index's cross-process writer lock could not be taken in time (another process is saving)."""


class UnknownIdError(KeyError):
    """Some ids are not in the index; ``ids`` lists them. Nothing was changed."""

    def __init__(self, ids: Iterable[str], action: str = "delete") -> None:
        self.ids = list(ids)
        shown = ", ".join(shorten(i, 60) for i in self.ids[:10]) + (" ..." if len(self.ids) > 10 else "")
        self.message = f"cannot {action} {len(self.ids)} unknown id(s): {shown}; nothing was changed"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def shorten(value: Any, limit: int = MESSAGE_VALUE_LIMIT) -> str:
    """``repr(value)`` (``os.fspath`` for paths) cut to about ``limit`` characters, middle elided."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str | bytes) and len(value) > 4 * limit:
        value = value[: 2 * limit] + value[-2 * limit :]  # repr of a 1 MB string is never built
    text = repr(value)
    if len(text) <= limit:
        return text
    half = max(1, (limit - 5) // 2)
    return f"{text[:half]} ... {text[-half:]}"
