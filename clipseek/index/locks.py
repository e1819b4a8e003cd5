"""Locks: one writer per workspace (across processes), and many readers or one writer (threads)."""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clipseek.errors import WorkspaceBusyError


class WorkspaceLock:
    """An exclusive ``flock`` on ``<workspace>/LOCK``, held while a process writes the workspace.

    The kernel drops it when the holder dies (even by kill -9), so a crashed engine never blocks the
    next start; a second live writer is refused with the holder's pid.
    """

    def __init__(self, workspace: Path):
        self.path = Path(workspace) / "LOCK"
        self._fd: int | None = None

    def acquire(self) -> WorkspaceLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise WorkspaceBusyError(
                f"the index workspace {self.path.parent} is in use by {holder}: only one clipseek indexer may "
                f"write to a workspace. Stop the other one, or give this one its own CLIPSEEK_WORKSPACE"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class ReadWriteLock:
    """Many readers at once, or one writer, phase-fair: a waiting writer keeps new readers out (a stream
    of searches cannot starve it), and the readers that queued during a write go in before the next
    write (a stream of writes cannot starve them). Writers are expected to hold it briefly."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0
        self._waiting_readers = 0
        self._readers_turn = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            self._waiting_readers += 1
            while self._writer or (self._waiting_writers and not self._readers_turn):
                self._cond.wait()
            self._waiting_readers -= 1
            self._readers += 1
            if not self._waiting_readers:
                self._readers_turn = False
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers or self._readers_turn:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._readers_turn = self._waiting_readers > 0
                self._cond.notify_all()
