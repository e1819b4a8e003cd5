"""The embedded layout's version mark, and small durable-file helpers: fsync a folder, replace a small
file atomically."""

from __future__ import annotations

import os
from pathlib import Path

FORMAT = "clipseek-index 2"  # written to <workspace>/FORMAT; a workspace without it is older (migrate.py)


def fsync_dir(path: Path) -> None:
    """Make the names in a folder (new, renamed or removed files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: readers see the old or the new content, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
