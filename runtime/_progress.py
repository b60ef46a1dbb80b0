"""Progress bars only when asked for: tqdm is imported lazily (it costs tens of ms of cold start)."""

from __future__ import annotations

from typing import Any


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None


def progress_bar(enabled: bool, **kwargs: Any) -> Any:
    """A ``tqdm`` bar (context manager with ``update``) when ``enabled``, else a no-op stand-in."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm  # lazy: importing tqdm costs tens of ms of cold start

    return tqdm(**kwargs)
