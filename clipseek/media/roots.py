"""Media roots: the Flow only reads files under the folders the user configured.

A path is resolved (``..`` collapsed, symlinks followed) before it is checked, so neither a
``..`` trick nor a symlink that points out of a media folder gets through.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from clipseek.errors import MediaPathError

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".wmv", ".flv", ".3gp", ".ogv",
)


DEFAULT_WORKSPACE = "workspace"  # the indexer's default workspace (tests/test_client.py holds them equal)
UPLOADS_FOLDER = "uploads"


def default_upload_dir(workspace: str = DEFAULT_WORKSPACE) -> Path:
    """Where the page stores uploads unless told otherwise: ``<workspace>/uploads``. ``clipseek serve``
    makes this folder one of the video loader's media roots, so uploads work with no setting at all."""
    return Path(os.path.expanduser(workspace)).resolve() / UPLOADS_FOLDER


def resolve_roots(roots: Sequence[str]) -> list[Path]:
    """Absolute, symlink-free media roots; at least one must be given."""
    if not roots:
        raise MediaPathError("no media folders are configured (set CLIPSEEK_MEDIA_ROOTS)")
    return [Path(os.path.expanduser(root)).resolve() for root in roots]


def resolve_media_path(uri: str, roots: Sequence[Path]) -> Path:
    """The real path of ``uri`` if it exists under one of ``roots``; raises MediaPathError otherwise.

    A relative ``uri`` is looked up under each root in turn.
    """
    if not uri or not uri.strip():
        raise MediaPathError("empty path")
    if "\x00" in uri:
        raise MediaPathError(f"{uri!r}: path contains a NUL byte")
    raw = Path(os.path.expanduser(uri.strip()))
    candidates = [raw] if raw.is_absolute() else [root / raw for root in roots]
    for candidate in candidates:
        try:
            real = candidate.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, RuntimeError) as exc:  # symlink loops, permission problems
            raise MediaPathError(f"{uri}: cannot be resolved ({exc})") from None
        if not any(real == root or real.is_relative_to(root) for root in roots):
            shown = ", ".join(str(r) for r in roots)
            raise MediaPathError(f"{uri}: outside the media folders ({shown}); refusing to read it")
        return real
    raise MediaPathError(f"{uri}: no such file or folder")


def iter_videos(folder: Path, roots: Sequence[Path],
                extensions: Sequence[str] = VIDEO_EXTENSIONS) -> Iterator[Path]:
    """Video files under ``folder``, recursively, sorted; symlinks out of the media roots are skipped."""
    wanted = {e.lower() for e in extensions}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in wanted:
                continue
            try:
                yield resolve_media_path(str(Path(dirpath) / name), roots)
            except MediaPathError:
                continue
