"""Versions of edgeret and of the packages around it, read from installed metadata (nothing is imported)."""

from __future__ import annotations

import platform
from collections.abc import Iterable

DISTRIBUTION = "edgeret"
#: what a results file records by default
CORE_PACKAGES = ("edgeret", "numpy", "onnxruntime", "torch", "transformers")


def edgeret_version() -> str:
    """The installed edgeret version (``0+unknown`` when running from an uninstalled source tree)."""
    from importlib import metadata  # lazy: importing it costs tens of ms of every runtime start

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        return "0+unknown"


def package_versions(names: Iterable[str] = CORE_PACKAGES, *, python: bool = False) -> dict[str, str | None]:
    """``{distribution: version or None}`` for each name (``edgeret`` always resolves); ``python`` adds the
    interpreter's version under ``"python"``."""
    from importlib import metadata  # lazy: see edgeret_version

    out: dict[str, str | None] = {"python": platform.python_version()} if python else {}
    for name in names:
        if name == DISTRIBUTION:
            out[name] = edgeret_version()
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
