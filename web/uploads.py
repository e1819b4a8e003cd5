"""Storing uploaded videos in a media folder, once per content (no Streamlit in here).

An upload is written to a hidden part file, hashed (SHA-256, as the Flow hashes it), checked to be a
video with ffprobe, and renamed to ``<hash prefix>-<original name>``; the same content uploaded again,
under any name, finds the stored file and is neither stored nor indexed twice.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from clipseek.errors import ClipseekError, MediaPathError, VideoOpenError
from clipseek.media.roots import DEFAULT_WORKSPACE, UPLOADS_FOLDER, VIDEO_EXTENSIONS, default_upload_dir, resolve_roots
from clipseek.media.video import content_hash, probe

HASH_PREFIX_CHARS = 16  # as the Flow's video ids


class UploadError(ClipseekError):
    """An uploaded file that is not stored: wrong type, too large, not a video."""


@dataclass(frozen=True)
class StoredUpload:
    name: str  # as uploaded
    path: Path  # where it is stored
    is_new: bool  # False when the same content was stored before


def upload_folder(upload_dir: str, media_roots: Sequence[str], workspace: str = DEFAULT_WORKSPACE) -> Path:
    """The folder uploads go to: ``upload_dir``; else ``uploads`` in the first media root; else, with no
    media roots given, ``<workspace>/uploads``, which ``clipseek serve`` always reads. It must lie under a
    media root or be that default folder (the Flow reads nothing else). Raises MediaPathError."""
    roots = resolve_roots([r for r in media_roots if r.strip()]) if any(r.strip() for r in media_roots) else []
    default = default_upload_dir(workspace)
    allowed = [*roots, default]
    if upload_dir.strip():
        folder = Path(upload_dir).expanduser().resolve()
    else:
        folder = roots[0] / UPLOADS_FOLDER if roots else default
    if not any(folder == root or folder.is_relative_to(root) for root in allowed):
        shown = ", ".join(str(r) for r in allowed)
        raise MediaPathError(f"upload folder {folder} is not under a media folder ({shown}): "
                             f"set CLIPSEEK_UPLOAD_DIR to a folder inside CLIPSEEK_MEDIA_ROOTS")
    return folder


def check_extension(name: str, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> str:
    """The file's extension, lower case; raises UploadError when it is not a video extension."""
    suffix = Path(name).suffix.lower()
    if suffix not in extensions:
        raise UploadError(f"{name}: '{suffix or 'no extension'}' is not a video extension "
                          f"({', '.join(extensions)})")
    return suffix


def stored_name(content_hash_hex: str, original_name: str, suffix: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(original_name).stem).strip("._-")[:60] or "video"
    return f"{content_hash_hex[:HASH_PREFIX_CHARS]}-{stem}{suffix}"


def find_stored(folder: Path, content_hash_hex: str) -> Path | None:
    """The file already stored for this content, if any."""
    prefix = content_hash_hex[:HASH_PREFIX_CHARS]
    for candidate in sorted(folder.glob(f"{prefix}-*")):
        if candidate.is_file() and content_hash(candidate) == content_hash_hex:
            return candidate
    return None


def store_upload(name: str, data: BinaryIO, size_bytes: int, folder: Path, max_bytes: int) -> StoredUpload:
    """Store one upload in ``folder``; raises UploadError (wrong extension, too large, not a video)."""
    suffix = check_extension(name)
    if size_bytes > max_bytes:
        raise UploadError(f"{name}: {size_bytes / 2**20:.0f} MB is over the upload limit of "
                          f"{max_bytes / 2**20:.0f} MB (CLIPSEEK_UPLOAD_MAX_MB)")
    folder.mkdir(parents=True, exist_ok=True)
    # A hidden name: a folder index running meanwhile skips it (clipseek.media.iter_videos).
    part = folder / f".upload-{uuid.uuid4().hex}{suffix}"
    try:
        with open(part, "wb") as handle:
            shutil.copyfileobj(data, handle, length=4 << 20)
        digest = content_hash(part)
        existing = find_stored(folder, digest)
        if existing is not None:
            return StoredUpload(name, existing, is_new=False)
        try:
            probe(part)
        except VideoOpenError as exc:  # name the upload, not the part file
            said = exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else ""
            raise UploadError(f"{name}: {exc.reason}" + (f" (ffmpeg said: {said})" if said else "")) from None
        target = folder / stored_name(digest, name, suffix)
        part.replace(target)
        return StoredUpload(name, target, is_new=True)
    finally:
        part.unlink(missing_ok=True)
