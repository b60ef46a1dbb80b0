"""Exceptions raised by the runtime; both subclass the builtin a caller would expect."""

from __future__ import annotations

from collections.abc import Iterable


class BundleError(ValueError):
    """A bundle (or its index) is missing a file, is corrupt, too new, or inconsistent."""


class UnknownIdError(KeyError):
    """Some ids are not in the index; ``ids`` lists them. Nothing was changed."""

    def __init__(self, ids: Iterable[str], action: str = "delete") -> None:
        self.ids = list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:10]) + (" ..." if len(self.ids) > 10 else "")
        self.message = f"cannot {action} {len(self.ids)} unknown id(s): {shown}; nothing was changed"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message
