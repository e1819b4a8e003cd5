"""An append-only, fsynced log of labelled vectors: what makes a commit cost what changed.

Each commit appends one record (its new frames' labels and float32 vectors) and fsyncs the file, so
adding a 20-frame video writes ~40 KB at 512-d whatever the index's size. The log is cut into
segments (``log-000007.bin``); a checkpoint of the graph covers every segment up to a number, after
which those segments are deleted.

Record layout (little-endian): ``b"CSV1"``, count (u32), dim (u32), labels (count x i64), vectors
(count x dim x f32), CRC-32 of the labels and vectors (u32). A record cut short by a crash, or one
whose checksum does not match, ends the log: it is cut off when the log is next opened for writing.
A failed append (disk full) is cut off at once, so the file holds only whole records.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from clipseek.index.embedded.files import fsync_dir

logger = logging.getLogger("clipseek.index")

MAGIC = b"CSV1"
HEADER = struct.Struct("<4sII")
CRC = struct.Struct("<I")
SEGMENT = re.compile(r"^log-(\d{6,})\.bin$")


def segment_name(seq: int) -> str:
    return f"log-{seq:06d}.bin"


def encode_record(labels: np.ndarray, vectors: np.ndarray) -> bytes:
    labels = np.ascontiguousarray(labels, dtype="<i8")
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    if vectors.ndim != 2 or len(vectors) != len(labels):
        raise ValueError(f"{len(labels)} labels for vectors of shape {vectors.shape}")
    body = labels.tobytes() + vectors.tobytes()
    return HEADER.pack(MAGIC, len(labels), vectors.shape[1]) + body + CRC.pack(zlib.crc32(body))


def decode_records(data: bytes) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(end offset, labels, vectors) of each whole, intact record; stops at the first that is not."""
    offset = 0
    while offset + HEADER.size <= len(data):
        magic, count, dim = HEADER.unpack_from(data, offset)
        body_size = count * 8 + count * dim * 4
        end = offset + HEADER.size + body_size + CRC.size
        if magic != MAGIC or end > len(data):
            return
        body = data[offset + HEADER.size: offset + HEADER.size + body_size]
        if CRC.unpack_from(data, end - CRC.size)[0] != zlib.crc32(body):
            return
        labels = np.frombuffer(body, dtype="<i8", count=count).astype(np.int64)
        vectors = np.frombuffer(body, dtype="<f4", offset=count * 8).reshape(count, dim).astype(np.float32)
        yield end, labels, vectors
        offset = end


class VectorLog:
    """The segments of the log in ``folder``; appends go to the newest one."""

    def __init__(self, folder: Path, first_seq: int = 1):
        """``first_seq``: the number of the first segment when there is none yet (past the checkpoint's)."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        seqs = self.segments()
        self.seq = max(seqs[-1] if seqs else first_seq, first_seq)
        self._path = self.folder / segment_name(self.seq)
        self._fd: int | None = None

    def segments(self) -> list[int]:
        found = (SEGMENT.match(p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def read(self, after_seq: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The records of every segment numbered above ``after_seq``, oldest first."""
        for seq in self.segments():
            if seq <= after_seq:
                continue
            path = self.folder / segment_name(seq)
            data = path.read_bytes()
            good = 0
            for end, labels, vectors in decode_records(data):
                good = end
                yield labels, vectors
            if good != len(data):
                logger.warning("%s: %d bytes after the last whole record (a write cut short by a crash) "
                               "are ignored", path, len(data) - good)
                if seq == self.seq:
                    self._truncate_tail(path, good)

    def _truncate_tail(self, path: Path, size: int) -> None:
        with open(path, "r+b") as handle:
            handle.truncate(size)
            os.fsync(handle.fileno())

    def bytes_after(self, seq: int) -> int:
        return sum((self.folder / segment_name(s)).stat().st_size for s in self.segments() if s > seq)

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            fsync_dir(self.folder)
        return self._fd

    def append(self, labels: np.ndarray, vectors: np.ndarray) -> tuple[int, int]:
        """Write one record and fsync it. Returns a mark for ``undo``. On failure (e.g. ENOSPC) the
        partial record is cut off again and the OSError raised."""
        record = encode_record(labels, vectors)
        fd = self._open()
        start = os.fstat(fd).st_size
        try:
            view = memoryview(record)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError:
            self._cut(start)
            raise
        return self.seq, start

    def undo(self, mark: tuple[int, int]) -> None:
        """Remove what was appended since ``mark`` (a later failure of the same commit)."""
        seq, size = mark
        if seq == self.seq:
            self._cut(size)

    def _cut(self, size: int) -> None:
        try:
            os.ftruncate(self._open(), size)
            os.fsync(self._open())
        except OSError as exc:  # the record stays; its labels are not in the catalogue, so it is ignored
            logger.warning("%s: could not cut a failed write off (%s); it will be ignored", self._path, exc)

    def rotate(self) -> int:
        """Start a new segment; returns the number of the one just closed."""
        closed = self.seq
        self.close()
        self.seq += 1
        self._path = self.folder / segment_name(self.seq)
        return closed

    def drop_through(self, seq: int) -> None:
        """Delete the segments numbered ``seq`` and below (a checkpoint covers them)."""
        for old in self.segments():
            if old <= seq and old != self.seq:
                (self.folder / segment_name(old)).unlink(missing_ok=True)
        fsync_dir(self.folder)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
