"""Subprocess, stamp-file and timing helpers shared by the ARM64 build steps."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class Arm64Error(RuntimeError):
    """A step of the ARM64 check failed; the message says which and why."""


def quote(cmd: Sequence[str | os.PathLike]) -> str:
    """A shell-quoted, copy-pasteable rendering of ``cmd``."""
    return " ".join(shlex.quote(os.fspath(part)) for part in cmd)


def run(
    cmd: Sequence[str | os.PathLike], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
    log: Path | None = None, what: str | None = None, check: bool = True, timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; its output goes to ``log`` (if given) and, on failure, into the raised error.

    Raises:
        Arm64Error: the command is missing, timed out, or (with ``check``) exited non-zero.
    """
    what = what or Path(os.fspath(cmd[0])).name
    logger.debug("$ %s", quote(cmd))
    try:
        proc = subprocess.run([os.fspath(c) for c in cmd], cwd=cwd, env=None if env is None else dict(env),
                              capture_output=True, text=True, errors="replace", timeout=timeout)
    except FileNotFoundError as exc:
        raise Arm64Error(f"{what}: command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise Arm64Error(f"{what}: timed out after {timeout:.0f} s: {quote(cmd)}") from exc
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {quote(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}", encoding="utf-8")
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise Arm64Error(f"{what} failed (exit {proc.returncode}): {quote(cmd)}\n{tail}")
    return proc


def fingerprint(*parts: object) -> str:
    """A short, stable hash of the inputs of a step (a changed input redoes the step)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Stamps:
    """One stamp file per finished step under ``folder``; a step is done when its stamp holds its key."""

    folder: Path

    def path(self, step: str) -> Path:
        return self.folder / f"{step}.stamp"

    def done(self, step: str, key: str) -> bool:
        stamp = self.path(step)
        return stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == key

    def mark(self, step: str, key: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path(step).write_text(key + "\n", encoding="utf-8")

    def clear(self, step: str) -> None:
        self.path(step).unlink(missing_ok=True)


class Timer:
    """Wall seconds per named phase, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 2)


def cached_step(stamps: Stamps, timer: Timer, step: str, key: str, action: Callable[[], object],
                outputs: Sequence[Path] = ()) -> bool:
    """Run ``action`` unless the step's stamp matches ``key`` and its ``outputs`` exist; stamp it after success.

    Returns True if the action ran (False: cached).
    """
    if stamps.done(step, key) and all(Path(p).exists() for p in outputs):
        logger.info("%-14s cached", step)
        timer.seconds.setdefault(step, 0.0)
        return False
    stamps.clear(step)
    logger.info("%-14s running", step)
    with timer.phase(step):
        action()
    stamps.mark(step, key)
    logger.info("%-14s done in %.1f s", step, timer.seconds[step])
    return True
