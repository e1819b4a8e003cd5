"""The embedded catalogue: SQLite in WAL mode, one transaction per change.

Tables: ``videos`` (one row per content), ``paths`` (path -> video), ``pieces`` (indexed time ranges
and their shots), ``frames`` (label -> video and time: which vectors of the log exist), ``tombstones``
(deletes, so that late ranges of a deleted video are refused), ``meta`` (schema version, model).
SQLite writes only the pages a transaction touched, so a commit costs what changed; ``synchronous
= FULL`` makes it durable when ``COMMIT`` returns. A failed transaction (disk full, I/O error) is
rolled back by SQLite and leaves the database as it was.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipseek.index.backend import Change, ModelIdentity
from clipseek.index.records import Piece, ShotSpan, VideoRecord

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    video_id TEXT PRIMARY KEY, content_hash TEXT NOT NULL, duration_s REAL NOT NULL, size_bytes INTEGER NOT NULL,
    width_px INTEGER NOT NULL, height_px INTEGER NOT NULL, fps REAL NOT NULL, indexed_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS paths (path TEXT PRIMARY KEY, video_id TEXT NOT NULL, position INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS paths_by_video ON paths (video_id);
CREATE TABLE IF NOT EXISTS pieces (
    video_id TEXT NOT NULL, start_s REAL NOT NULL, end_s REAL NOT NULL, shots TEXT NOT NULL, indexed_at TEXT NOT NULL,
    PRIMARY KEY (video_id, start_s));
CREATE TABLE IF NOT EXISTS frames (label INTEGER PRIMARY KEY, video_id TEXT NOT NULL, time_s REAL NOT NULL);
CREATE INDEX IF NOT EXISTS frames_by_video ON frames (video_id, time_s);
CREATE TABLE IF NOT EXISTS tombstones (key TEXT PRIMARY KEY, generation REAL NOT NULL);
"""


@dataclass
class CatalogState:
    """Everything the catalogue holds, as loaded at start-up."""

    videos: dict[str, VideoRecord] = field(default_factory=dict)
    tombstones: dict[str, float] = field(default_factory=dict)
    model: ModelIdentity | None = None
    frame_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    frame_videos: list[str] = field(default_factory=list)
    frame_times: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))


def shots_json(shots: tuple[ShotSpan, ...]) -> str:
    return json.dumps([[s.start_s, s.end_s, s.starts_at_cut] for s in shots])


def shots_from_json(text: str) -> tuple[ShotSpan, ...]:
    return tuple(ShotSpan(float(a), float(b), bool(cut)) for a, b, cut in json.loads(text))


class SqlCatalog:
    def __init__(self, path: Path):
        self.path = Path(path)
        # Used by one writer at a time (the backend's write lock) and at start-up; reads are served
        # from the backend's memory.
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        version = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None:
            self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(version[0]) > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer clipseek (schema {version[0]}, "
                               f"this one reads {SCHEMA_VERSION})")

    def load(self) -> CatalogState:
        state = CatalogState()
        meta = dict(self.db.execute("SELECT key, value FROM meta"))
        if meta.get("model_dim"):
            state.model = ModelIdentity(meta.get("model_name", ""), int(meta["model_dim"]))
        paths: dict[str, list[str]] = {}
        for path, video_id in self.db.execute("SELECT path, video_id FROM paths ORDER BY video_id, position"):
            paths.setdefault(video_id, []).append(path)
        pieces: dict[str, list[Piece]] = {}
        for video_id, start_s, end_s, shots, indexed_at in self.db.execute(
                "SELECT video_id, start_s, end_s, shots, indexed_at FROM pieces ORDER BY video_id, start_s"):
            pieces.setdefault(video_id, []).append(Piece(start_s, end_s, shots_from_json(shots), indexed_at))
        for row in self.db.execute("SELECT video_id, content_hash, duration_s, size_bytes, width_px, height_px, fps, "
                                   "indexed_at FROM videos"):
            video_id = row[0]
            state.videos[video_id] = VideoRecord(
                video_id=video_id, content_hash=row[1], duration_s=row[2], size_bytes=row[3], width_px=row[4],
                height_px=row[5], fps=row[6], indexed_at=row[7], paths=tuple(paths.get(video_id, ())),
                pieces=tuple(pieces.get(video_id, ())))
        state.tombstones = dict(self.db.execute("SELECT key, generation FROM tombstones"))
        rows = self.db.execute("SELECT label, video_id, time_s FROM frames").fetchall()
        if rows:
            labels, videos, times = zip(*rows, strict=True)
            state.frame_labels = np.fromiter(labels, dtype=np.int64, count=len(rows))
            state.frame_videos = list(videos)
            state.frame_times = np.fromiter(times, dtype=np.float64, count=len(rows))
        return state

    def write(self, change: Change, frame_rows: list[tuple[int, str, float]]) -> None:
        """Apply ``change`` in one transaction; ``frame_rows`` are its new frames (label, video, time)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for video_id in change.removed_videos:
                for table in ("videos", "paths", "pieces", "frames"):
                    db.execute(f"DELETE FROM {table} WHERE video_id = ?", (video_id,))
            for video_id, start_s, end_s in change.removed_frames:
                db.execute("DELETE FROM frames WHERE video_id = ? AND time_s >= ? AND time_s < ?",
                           (video_id, start_s, end_s))
            for video_id, start_s in change.removed_pieces:
                db.execute("DELETE FROM pieces WHERE video_id = ? AND start_s = ?", (video_id, start_s))
            for record in change.videos:
                db.execute("DELETE FROM paths WHERE video_id = ?", (record.video_id,))
            for record in change.videos:
                db.execute("INSERT OR REPLACE INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (record.video_id, record.content_hash, record.duration_s, record.size_bytes,
                            record.width_px, record.height_px, record.fps, record.indexed_at))
                db.executemany("INSERT OR REPLACE INTO paths VALUES (?, ?, ?)",
                               [(path, record.video_id, i) for i, path in enumerate(record.paths)])
            db.executemany("INSERT INTO pieces VALUES (?, ?, ?, ?, ?)",
                           [(video_id, p.start_s, p.end_s, shots_json(p.shots), p.indexed_at)
                            for video_id, p in change.pieces])
            db.executemany("INSERT INTO frames VALUES (?, ?, ?)", frame_rows)
            db.executemany("INSERT OR REPLACE INTO tombstones VALUES (?, ?)", list(change.tombstones.items()))
            if change.model is not None:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                               [("model_name", change.model.name), ("model_dim", str(change.model.dim))])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def drop_frames(self, labels: list[int]) -> None:
        """Forget frames whose vectors were lost (a log damaged outside clipseek)."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("DELETE FROM frames WHERE label = ?", [(label,) for label in labels])
        self.db.execute("COMMIT")

    def prune_tombstones(self, older_than: float) -> None:
        self.db.execute("DELETE FROM tombstones WHERE generation < ?", (older_than,))

    def close(self) -> None:
        self.db.close()
