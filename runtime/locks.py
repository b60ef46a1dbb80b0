"""Locks: a readers-writer lock inside a process, and ``flock`` file locks between processes.

* :class:`RWLock`: many concurrent readers (searches) or one writer (add/delete) in one process.
* :func:`exclusive_lock`: a writer's cross-process lock on a lock file (re-entrant within a process).
* :class:`SharedLock` / :func:`try_exclusive`: readers hold a generation's lock file shared while they
  open it; a writer deletes a generation only when it can take that lock exclusively at once.

Where ``fcntl`` is missing (Windows) the file locks are no-ops: saves are then serialised only within one
process, and readers rely on the writer keeping the previous generation.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import IndexBusyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, saves are then serialised only within a process
    fcntl = None

logger = logging.getLogger(__name__)


class RWLock:
    """Writer-preferring readers-writer lock (a waiting writer blocks new readers, so it cannot starve).

    Not re-entrant: a thread holding the lock must not acquire it again.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        """Shared access."""
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Exclusive access."""
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


# ---- cross-process locks (fcntl.flock) ------------------------------------------------------------------
#: how often a blocked writer polls the lock, and after how long it says so in the log
_POLL_S, _ANNOUNCE_S = 0.02, 2.0


class _Held:
    """One lock file as held by this process: a thread lock (re-entrant) and the flock'ed descriptor."""

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_HELD: dict[str, _Held] = {}
_HELD_GUARD = threading.Lock()


def _open_lock_file(path: Path, create: bool) -> int | None:
    flags = (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY) | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
    except FileNotFoundError:
        if create:
            raise
        return None


def _flock_exclusive(path: Path, timeout: float) -> int:
    fd = _open_lock_file(path, create=True)
    if fcntl is None:  # pragma: no cover
        return fd
    start, announced = time.monotonic(), False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            waited = time.monotonic() - start
            if waited >= timeout:
                os.close(fd)
                raise IndexBusyError(
                    f"{path}: another process has been saving this index for {waited:.0f} s; try again later"
                ) from None
            if waited >= _ANNOUNCE_S and not announced:
                logger.info("waiting for another process to finish saving (%s)", path)
                announced = True
            time.sleep(_POLL_S)


@contextmanager
def exclusive_lock(path: Path, timeout: float = 300.0) -> Iterator[None]:
    """Hold ``path`` (created if needed, never through a symlink) exclusively against other processes.

    Re-entrant within a process (a thread holding it may take it again); other threads of the process wait.

    Raises:
        IndexBusyError: the lock was not free within ``timeout`` seconds.
    """
    key = os.path.abspath(path)
    with _HELD_GUARD:
        held = _HELD.setdefault(key, _Held())
    if not held.rlock.acquire(timeout=timeout):
        raise IndexBusyError(f"{path}: another thread has been saving this index for {timeout:.0f} s")
    try:
        if held.depth == 0:
            held.fd = _flock_exclusive(Path(path), timeout)
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0 and held.fd is not None:
                os.close(held.fd)  # closing the descriptor releases the flock
                held.fd = None
    finally:
        held.rlock.release()


class SharedLock:
    """A shared (reader) hold on an existing lock file; a no-op where the file is absent or fcntl is missing."""

    def __init__(self, path: Path) -> None:
        self.fd: int | None = None
        try:
            self.fd = _open_lock_file(path, create=False)
        except OSError:  # e.g. a symlink planted as the lock file: never followed, no hold
            return
        if self.fd is not None and fcntl is not None:
            fcntl.flock(self.fd, fcntl.LOCK_SH)

    def release(self) -> None:
        """Give the hold up (idempotent)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.release()


def try_exclusive(path: Path) -> int | None:
    """A descriptor holding ``path`` exclusively if no one holds it (shared or not), else ``None``.

    An absent lock file counts as free: ``-1`` is returned (nothing to close).
    """
    try:
        fd = _open_lock_file(path, create=False)
    except OSError:  # a symlink planted as the lock file: no reader can hold it (readers don't follow it either)
        return -1
    if fd is None:
        return -1
    if fcntl is None:  # pragma: no cover
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
