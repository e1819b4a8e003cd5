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
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import numpy as np

from clipseek.index.backend import Change, ModelIdentity
from clipseek.index.metadata import fts_query, indexable_text
from clipseek.index.records import Piece, VideoRecord
from clipseek.index.topics import Label, ShotTopic, Vocabulary
from clipseek.types import Shot

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
CREATE TABLE IF NOT EXISTS metadata (
    match TEXT NOT NULL, source TEXT NOT NULL, fields TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (match, source));
CREATE TABLE IF NOT EXISTS video_meta (video_id TEXT PRIMARY KEY, fields TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS video_fields (video_id TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS video_fields_by_value ON video_fields (field, value COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS video_fields_by_video ON video_fields (video_id);
CREATE VIRTUAL TABLE IF NOT EXISTS video_text USING fts5(
    video_id UNINDEXED, title, description, category, tags, extra, tokenize = 'porter unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS shot_topics (
    video_id TEXT NOT NULL, start_s REAL NOT NULL, end_s REAL NOT NULL, topic TEXT NOT NULL, score REAL NOT NULL,
    margin REAL NOT NULL, PRIMARY KEY (video_id, start_s));
CREATE INDEX IF NOT EXISTS shot_topics_by_topic ON shot_topics (topic COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS vocabulary (position INTEGER PRIMARY KEY, name TEXT NOT NULL, zh TEXT NOT NULL,
    prompts TEXT NOT NULL, vector BLOB NOT NULL);
"""
# the columns of video_text and their BM25 weights: a title word counts most, an extra field least
TEXT_COLUMNS = ("title", "description", "category", "tags", "extra")
TEXT_WEIGHTS = (5.0, 1.0, 3.0, 2.0, 0.5)


@dataclass
class CatalogState:
    """Everything the catalogue holds, as loaded at start-up."""

    videos: dict[str, VideoRecord] = field(default_factory=dict)
    tombstones: dict[str, float] = field(default_factory=dict)
    model: ModelIdentity | None = None
    frame_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    frame_videos: list[str] = field(default_factory=list)
    frame_times: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))


def shots_json(shots: tuple[Shot, ...]) -> str:
    return json.dumps([[s.start_s, s.end_s, s.starts_at_cut] for s in shots])


def shots_from_json(text: str) -> tuple[Shot, ...]:
    return tuple(Shot(float(a), float(b), bool(cut)) for a, b, cut in json.loads(text))


class SqlCatalog:
    def __init__(self, path: Path):
        self.path = Path(path)
        # Used by one writer at a time (the backend's write lock) and at start-up; reads are served
        # from the backend's memory.
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(paths)")}
        if "stem" not in columns:  # catalogues of the first schema: the file name stem, for manifest rows by id
            self.db.execute("ALTER TABLE paths ADD COLUMN stem TEXT NOT NULL DEFAULT ''")
            for (path,) in self.db.execute("SELECT path FROM paths").fetchall():
                self.db.execute("UPDATE paths SET stem = ? WHERE path = ?", (PurePosixPath(path).stem, path))
        self.db.execute("CREATE INDEX IF NOT EXISTS paths_by_stem ON paths (stem)")
        self._readers = threading.local()  # reads from search threads go through their own connections
        self._reader_list: list[sqlite3.Connection] = []  # all of them, to close them with the catalogue
        self._reader_lock = threading.Lock()
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
            state.model = ModelIdentity.parse(meta.get("model_name", ""), int(meta["model_dim"]))
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
                for table in ("videos", "paths", "pieces", "frames", "video_meta", "video_fields", "video_text",
                              "shot_topics"):
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
                db.executemany("INSERT OR REPLACE INTO paths (path, video_id, position, stem) VALUES (?, ?, ?, ?)",
                               [(path, record.video_id, i, PurePosixPath(path).stem)
                                for i, path in enumerate(record.paths)])
            db.executemany("INSERT INTO pieces VALUES (?, ?, ?, ?, ?)",
                           [(video_id, p.start_s, p.end_s, shots_json(p.shots), p.indexed_at)
                            for video_id, p in change.pieces])
            db.executemany("INSERT INTO frames VALUES (?, ?, ?)", frame_rows)
            db.executemany("INSERT OR REPLACE INTO tombstones VALUES (?, ?)", list(change.tombstones.items()))
            if change.model is not None:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                               [("model_name", change.model.text), ("model_dim", str(change.model.dim))])
            self._write_words(change)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _write_words(self, change: Change) -> None:
        """Metadata rows, the effective metadata of videos (and its search indexes), topics, vocabulary."""
        db = self.db
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for match, source, fields in change.metadata:
            if fields:
                db.execute("INSERT OR REPLACE INTO metadata VALUES (?, ?, ?, ?)",
                           (match, source, json.dumps(fields, ensure_ascii=False), now))
            else:
                db.execute("DELETE FROM metadata WHERE match = ? AND source = ?", (match, source))
        for video_id, fields in change.video_meta.items():
            for table in ("video_meta", "video_fields", "video_text"):
                db.execute(f"DELETE FROM {table} WHERE video_id = ?", (video_id,))
            if not fields:
                continue
            db.execute("INSERT INTO video_meta VALUES (?, ?)", (video_id, json.dumps(fields, ensure_ascii=False)))
            flat = [(video_id, name, str(item)) for name, value in fields.items()
                    for item in (value if isinstance(value, list) else [value]) if not isinstance(item, dict)]
            db.executemany("INSERT INTO video_fields VALUES (?, ?, ?)", flat)
            text = indexable_text(fields)
            db.execute("INSERT INTO video_text (video_id, title, description, category, tags, extra) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (video_id, *(text[c] for c in TEXT_COLUMNS)))
        for video_id, topics in change.shot_topics.items():
            db.execute("DELETE FROM shot_topics WHERE video_id = ?", (video_id,))
            db.executemany("INSERT OR REPLACE INTO shot_topics VALUES (?, ?, ?, ?, ?, ?)",
                           [(video_id, t.start_s, t.end_s, t.topic, t.score, t.margin) for t in topics])
        if change.vocabulary is not None:
            vocabulary, vectors = change.vocabulary
            db.execute("DELETE FROM vocabulary")
            db.executemany("INSERT INTO vocabulary VALUES (?, ?, ?, ?, ?)", [
                (i, label.name, label.zh, json.dumps(label.prompts, ensure_ascii=False),
                 np.asarray(vectors[i], dtype="<f4").tobytes()) for i, label in enumerate(vocabulary.labels)])

    # -- reads of words and topics (from any thread, through its own read-only connection) --------
    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._readers, "db", None)
        if db is None:
            db = self._readers.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            with self._reader_lock:
                self._reader_list.append(db)
        return db

    def metadata_rows(self, matches: list[str]) -> dict[str, dict[str, dict]]:
        out: dict[str, dict[str, dict]] = {}
        db = self._reader()
        for start in range(0, len(matches), 500):
            chunk = matches[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for match, source, fields in db.execute(
                    f"SELECT match, source, fields FROM metadata WHERE match IN ({marks})", chunk):
                out.setdefault(match, {})[source] = json.loads(fields)
        return out

    def videos_matching_keys(self, matches: list[str]) -> list[str]:
        db = self._reader()
        found: dict[str, None] = {}
        for match in matches:
            kind, _, value = match.partition(":")
            if kind == "video":
                rows = db.execute("SELECT video_id FROM videos WHERE video_id = ?", (value,))
            elif kind == "path":
                rows = db.execute("SELECT video_id FROM paths WHERE path = ?", (value,))
            elif kind == "stem":
                rows = db.execute("SELECT video_id FROM paths WHERE stem = ?", (value,))
            else:
                continue
            found.update((row[0], None) for row in rows)
        return list(found)

    def video_meta(self, video_ids: list[str]) -> dict[str, dict]:
        db = self._reader()
        out = {}
        for start in range(0, len(video_ids), 500):
            chunk = video_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for video_id, fields in db.execute(
                    f"SELECT video_id, fields FROM video_meta WHERE video_id IN ({marks})", chunk):
                out[video_id] = json.loads(fields)
        return out

    def has_metadata(self) -> bool:
        return self._reader().execute("SELECT 1 FROM video_meta LIMIT 1").fetchone() is not None

    def text_search(self, terms: list[str], k: int, video_ids: list[str] | None = None) -> list[tuple[str, float]]:
        if not terms or k <= 0:
            return []
        weights = ", ".join(str(w) for w in TEXT_WEIGHTS)
        sql = (f"SELECT video_id, -bm25(video_text, 0.0, {weights}) AS score FROM video_text "
               f"WHERE video_text MATCH ?")
        args: list = [fts_query(terms)]
        if video_ids is not None:
            if not video_ids:
                return []
            sql += f" AND video_id IN ({','.join('?' * len(video_ids))})"
            args += list(video_ids)
        sql += " ORDER BY score DESC LIMIT ?"
        try:
            return [(video_id, float(score)) for video_id, score in self._reader().execute(sql, [*args, k])]
        except sqlite3.OperationalError:  # a query FTS5 cannot parse: no text matches
            return []

    def videos_where(self, where: dict[str, str]) -> set[str]:
        db = self._reader()
        result: set[str] | None = None
        for name, value in where.items():
            if name == "topic":
                rows = db.execute("SELECT DISTINCT video_id FROM shot_topics WHERE topic = ? COLLATE NOCASE", (value,))
            else:
                rows = db.execute("SELECT DISTINCT video_id FROM video_fields WHERE field = ? AND "
                                  "value = ? COLLATE NOCASE", (name, value))
            ids = {row[0] for row in rows}
            result = ids if result is None else result & ids
        return result if result is not None else set()

    def shot_topics(self, video_ids: list[str] | None = None) -> dict[str, list[ShotTopic]]:
        db = self._reader()
        out: dict[str, list[ShotTopic]] = {}
        if video_ids is None:
            rows = db.execute("SELECT video_id, start_s, end_s, topic, score, margin FROM shot_topics "
                              "ORDER BY video_id, start_s").fetchall()
        else:
            rows = []
            for start in range(0, len(video_ids), 500):
                chunk = video_ids[start:start + 500]
                rows += db.execute(f"SELECT video_id, start_s, end_s, topic, score, margin FROM shot_topics WHERE "
                                   f"video_id IN ({','.join('?' * len(chunk))}) ORDER BY video_id, start_s",
                                   chunk).fetchall()
        for video_id, start_s, end_s, topic, score, margin in rows:
            out.setdefault(video_id, []).append(ShotTopic(start_s, end_s, topic, score, margin))
        return out

    def vocabulary(self) -> tuple[Vocabulary, np.ndarray] | None:
        rows = self._reader().execute("SELECT name, zh, prompts, vector FROM vocabulary ORDER BY position").fetchall()
        if not rows:
            return None
        labels = tuple(Label(name, zh, tuple(json.loads(prompts))) for name, zh, prompts, _ in rows)
        vectors = np.stack([np.frombuffer(blob, dtype="<f4") for *_, blob in rows]).astype(np.float32)
        return Vocabulary(labels), vectors

    def drop_frames(self, labels: list[int]) -> None:
        """Forget frames whose vectors were lost (a log damaged outside clipseek)."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("DELETE FROM frames WHERE label = ?", [(label,) for label in labels])
        self.db.execute("COMMIT")

    def prune_tombstones(self, older_than: float) -> None:
        self.db.execute("DELETE FROM tombstones WHERE generation < ?", (older_than,))

    def close(self) -> None:
        """Close every connection; the last one folds the WAL into the database file, so the next start
        does not begin by checkpointing what this one wrote."""
        with self._reader_lock:
            for reader in self._reader_list:
                reader.close()
            self._reader_list.clear()
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:  # (a full disk, say) the WAL stays and is folded in at the next start
            pass
        self.db.close()
