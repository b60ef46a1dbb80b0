"""Fail early, and helpfully, when a stage's optional dependencies are missing."""

from __future__ import annotations

import importlib.util


def require_extra(extra: str, modules: list[str]) -> None:
    """Raise ImportError naming the pip extra if any of ``modules`` cannot be imported.

    Only checks that the modules are findable; it does not import them, so calling this at
    package import time stays cheap.
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"edgeret's '{extra}' stage needs {', '.join(missing)}, which is not installed. "
            f"Install it with: pip install 'edgeret[{extra}]'"
        )
