"""A build's stages: each is skipped when its output is current for the recipe, timed, and measured for peak RSS.

Every stage has a *fingerprint*: a hash of what determines its output (its recipe section and its inputs'
fingerprints). ``build_state.json`` in the work folder records the fingerprint of every stage that
finished; a stage whose recorded fingerprint matches and whose output is there is *current* and does not run.
Stages that resume (the cache, training) pick up where an interrupted run stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeret.bench.memory import peak_rss_mb

logger = logging.getLogger(__name__)

STATE = "build_state.json"


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def reset_peak_rss() -> bool:
    """Restart the process's peak-RSS counter (Linux ``/proc/self/clear_refs``); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class StageRecord:
    """What one stage did."""

    name: str
    status: str  # "ran" or "current"
    seconds: float = 0.0
    peak_rss_mb: float | None = None
    detail: str = ""


@dataclass
class Stages:
    """Runs the stages of one build in ``work_dir``."""

    work_dir: Path
    force: bool = False
    records: list[StageRecord] = field(default_factory=list)

    def _state(self) -> dict[str, str]:
        path = self.work_dir / STATE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def _remember(self, name: str, print_: str) -> None:
        state = self._state()
        state[name] = print_
        self.work_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.work_dir / f".{STATE}.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.work_dir / STATE)

    def is_current(self, name: str, print_: str, output: Path | None = None) -> bool:
        """Whether ``name`` finished with this fingerprint (and its ``output`` is there)."""
        return (not self.force and self._state().get(name) == print_
                and (output is None or output.exists()))

    def run(self, name: str, print_: str, build: Callable[[], Any], *, output: Path | None = None,
            load: Callable[[], Any] | None = None) -> Any:
        """``load()`` when the stage is current, else ``build()``, timed and measured; returns its value."""
        if load is not None and self.is_current(name, print_, output):
            logger.info("==> %s: current, skipped", name)
            self.records.append(StageRecord(name, "current"))
            return load()
        logger.info("==> %s", name)
        measured = reset_peak_rss()
        start = time.perf_counter()
        value = build()
        seconds = time.perf_counter() - start
        self.records.append(StageRecord(name, "ran", round(seconds, 1), round(peak_rss_mb(), 1) if measured else None))
        logger.info("    %s: %.0f s%s", name, seconds,
                    f", peak RSS {self.records[-1].peak_rss_mb:.0f} MB" if measured else "")
        self._remember(name, print_)
        return value

    def table(self) -> str:
        """The stages as a markdown table."""
        lines = ["| stage | status | seconds | peak RSS MB |", "|---|---|---|---|"]
        for r in self.records:
            rss = "–" if r.peak_rss_mb is None else f"{r.peak_rss_mb:,.0f}"
            lines.append(f"| {r.name} | {r.status} | {r.seconds:,.1f} | {rss} |")
        return "\n".join(lines)
