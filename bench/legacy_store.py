"""THE OLD INDEX, kept only as the benchmark's baseline (bench/index_commit.py): clipseek.store as of commit
e8798a6, the snapshot store that rewrote the whole index on every commit. Not used by the product.

The frame index: hnswlib (cosine) for the vectors, plain arrays and JSON for what they mean.

Layout of a workspace::

    CURRENT            name of the committed snapshot (replaced atomically)
    snap-000042/       index.bin (hnswlib), meta.json (videos, shots), frames.npz (label -> video, time),
                       vectors.npy (float16 unit vectors, one row per live frame: scoring the
                       frames around a hit; frames.npz maps label -> row)

A commit writes a whole new snapshot folder, flushes it to disk, then replaces CURRENT with
``os.replace``: a crash at any moment leaves CURRENT naming a complete snapshot, so what was
committed before is never corrupted. Old snapshots are removed after the switch.

Labels are never reused (deleted frames keep their 16 bytes of metadata); hnswlib reuses the
slots of deleted vectors (``allow_replace_deleted``), and each commit drops the float16 rows of
deleted frames, so neither grows with churn.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import shutil
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import hnswlib
import numpy as np

from clipseek.errors import ClipseekError, QueryError
from clipseek.index.clips import Clip, Margin, ScoredFrame, clamp, clips_in_shot, merge_touching, rank

logger = logging.getLogger("bench.legacy_store")

RANGE_EPSILON_S = 0.05


@dataclass
class ShotSpan:
    start_s: float
    end_s: float
    starts_at_cut: bool = True


@dataclass
class VideoRecord:
    video_id: str
    path: str
    content_hash: str
    duration_s: float
    size_bytes: int = 0
    width_px: int = 0
    height_px: int = 0
    fps: float = 0.0
    indexed_at: str = ""
    shots: list[ShotSpan] = field(default_factory=list)
    ranges: list[list[float]] = field(default_factory=list)  # indexed [start, end) ranges, merged

    def covers(self, start_s: float, end_s: float) -> bool:
        return any(a <= start_s + RANGE_EPSILON_S and end_s - RANGE_EPSILON_S <= b for a, b in self.ranges)

    @property
    def complete(self) -> bool:
        return self.covers(0.0, self.duration_s)

    @classmethod
    def from_json(cls, data: dict) -> VideoRecord:
        data = dict(data)
        data["shots"] = [ShotSpan(**s) for s in data.get("shots", [])]
        return cls(**data)


@dataclass
class IndexSettings:
    space: str = "cosine"
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 256  # recall@10 at 1M synthetic frames: 0.975 at 128, 0.995 at 256 (+0.4 ms)
    threads: int = 0  # 0 = all cores


def _merge_ranges(ranges: list[list[float]]) -> list[list[float]]:
    merged: list[list[float]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + RANGE_EPSILON_S:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FrameStore:
    """Vectors and metadata of every indexed frame, persisted under ``workspace``."""

    def __init__(self, workspace: Path, settings: IndexSettings | None = None):
        self.workspace = Path(workspace)
        self.settings = settings or IndexSettings()
        self._lock = threading.RLock()
        self.videos: dict[str, VideoRecord] = {}
        self.model = ""
        self.dim = 0
        self._index: hnswlib.Index | None = None
        self._frame_video = np.zeros(0, dtype=np.int32)  # label -> video number, -1 when deleted
        self._frame_time = np.zeros(0, dtype=np.float64)
        # A float16 copy of every live vector (1 KB a frame at 512-d): a search scores all frames of
        # the shots it hits, and reading them back from hnswlib (get_items) costs ~20 us a frame.
        self._frame_row = np.zeros(0, dtype=np.int32)  # label -> row of _vecs, -1 when deleted
        self._vecs = np.zeros((0, 0), dtype=np.float16)
        self._n_rows = 0  # rows of _vecs in use (deleted frames' rows are dropped at commit)
        self._next_label = 0
        self._video_numbers: dict[str, int] = {}  # video_id -> number used in _frame_video
        self._generation = 0
        self._by_video: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
        self._live: int | None = None  # cache of num_frames
        self.workspace.mkdir(parents=True, exist_ok=True)
        self._load()

    # -- persistence -------------------------------------------------------------------------
    def _load(self) -> None:
        current = self.workspace / "CURRENT"
        for stray in self.workspace.glob("snap-*.tmp"):
            shutil.rmtree(stray, ignore_errors=True)
        if not current.exists():
            return
        name = current.read_text().strip()
        snap = self.workspace / name
        meta = json.loads((snap / "meta.json").read_text())
        self._generation = int(meta["generation"])
        self.model = meta.get("model", "")
        self.dim = int(meta.get("dim", 0))
        self.videos = {v["video_id"]: VideoRecord.from_json(v) for v in meta["videos"]}
        self._video_numbers = {k: int(v) for k, v in meta["video_numbers"].items()}
        arrays = np.load(snap / "frames.npz")
        self._frame_video = arrays["video"].astype(np.int32)
        self._frame_time = arrays["time"].astype(np.float64)
        self._next_label = int(meta["next_label"])
        if self.dim:
            index = hnswlib.Index(space=self.settings.space, dim=self.dim)
            index.load_index(str(snap / "index.bin"), allow_replace_deleted=True)
            index.set_ef(self.settings.ef_search)
            self._index = index
            live = np.flatnonzero(self._frame_video[: self._next_label] >= 0)
            if (snap / "vectors.npy").is_file():
                self._vecs = np.load(snap / "vectors.npy")
                if "row" in arrays:
                    self._frame_row = arrays["row"].astype(np.int32)
                else:  # written with one row per label
                    self._frame_row = np.full(len(self._frame_video), -1, dtype=np.int32)
                    self._frame_row[live] = live
            else:  # a workspace from before the copy existed: take the vectors from the index once
                self._vecs = np.zeros((len(live), self.dim), dtype=np.float16)
                for start in range(0, len(live), 50_000):
                    self._vecs[start:start + 50_000] = index.get_items(live[start:start + 50_000],
                                                                      return_type="numpy")
                self._frame_row = np.full(len(self._frame_video), -1, dtype=np.int32)
                self._frame_row[live] = np.arange(len(live), dtype=np.int32)
            self._n_rows = len(self._vecs)
        for old in self.workspace.glob("snap-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        logger.info("loaded index %s: %d videos, %d frames", snap, len(self.videos), self.num_frames)

    def commit(self) -> None:
        """Write a new snapshot and switch to it atomically."""
        with self._lock:
            self._generation += 1
            name = f"snap-{self._generation:06d}"
            tmp = self.workspace / f"{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            if self._index is not None:
                self._index.save_index(str(tmp / "index.bin"))
            n = self._next_label
            self._compact_rows()
            with open(tmp / "frames.npz", "wb") as handle:
                np.savez(handle, video=self._frame_video[:n], time=self._frame_time[:n], row=self._frame_row[:n])
            if self.dim:
                with open(tmp / "vectors.npy", "wb") as handle:
                    np.save(handle, self._vecs[: self._n_rows])
            meta = {
                "generation": self._generation,
                "model": self.model,
                "dim": self.dim,
                "next_label": self._next_label,
                "video_numbers": self._video_numbers,
                "videos": [asdict(v) for v in self.videos.values()],
            }
            (tmp / "meta.json").write_text(json.dumps(meta))
            for child in tmp.iterdir():
                with open(child, "rb") as handle:
                    os.fsync(handle.fileno())
            _fsync_dir(tmp)
            os.replace(tmp, self.workspace / name)
            pointer = self.workspace / "CURRENT.tmp"
            with open(pointer, "w") as handle:
                handle.write(name)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(pointer, self.workspace / "CURRENT")
            _fsync_dir(self.workspace)
            for old in self.workspace.glob("snap-*"):
                if old.name != name:
                    shutil.rmtree(old, ignore_errors=True)

    def _compact_rows(self) -> None:
        """Drop the float16 rows of deleted frames (live frames keep their order)."""
        live = np.flatnonzero(self._frame_row[: self._next_label] >= 0)
        if len(live) == self._n_rows:
            return
        self._vecs = self._vecs[self._frame_row[live]]
        self._frame_row[live] = np.arange(len(live), dtype=np.int32)
        self._n_rows = len(live)

    # -- reading -----------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        """Live (not deleted) frames; counted once, then kept up to date by add and delete."""
        if self._live is None:
            self._live = int((self._frame_video[: self._next_label] >= 0).sum())
        return self._live

    def find_video(self, key: str) -> VideoRecord | None:
        """A video by id, id prefix (8+ chars), content hash or path."""
        key = key.strip()
        if key in self.videos:
            return self.videos[key]
        for record in self.videos.values():
            if key in (record.path, record.content_hash) or (len(key) >= 8 and record.video_id.startswith(key)):
                return record
        resolved = os.path.realpath(key) if key else key
        for record in self.videos.values():
            if record.path == resolved:
                return record
        return None

    def find_by_hash(self, content_hash: str) -> VideoRecord | None:
        return next((v for v in self.videos.values() if v.content_hash == content_hash), None)

    def frames_of(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(times, labels) of a video's live frames, sorted by time."""
        number = self._video_numbers.get(video_id)
        if number is None:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        if self._by_video is None:
            n = self._next_label
            videos, times = self._frame_video[:n], self._frame_time[:n]
            live = np.nonzero(videos >= 0)[0]
            order = live[np.lexsort((times[live], videos[live]))]
            self._by_video = {}
            if len(order):
                keys = videos[order]
                bounds = np.flatnonzero(np.diff(keys)) + 1
                for chunk in np.split(order, bounds):
                    self._by_video[int(videos[chunk[0]])] = (times[chunk], chunk.astype(np.int64))
        return self._by_video.get(number, (np.zeros(0), np.zeros(0, dtype=np.int64)))

    # -- writing -----------------------------------------------------------------------------
    def _ensure_index(self, dim: int, model: str, extra: int) -> hnswlib.Index:
        if self.dim and dim != self.dim:
            raise ClipseekError(
                f"this workspace holds {self.dim}-d embeddings from model '{self.model}'; these are "
                f"{dim}-d from '{model}'. Use another workspace (CLIPSEEK_WORKSPACE) or delete it to re-index.")
        if self.model and model and model != self.model:
            raise ClipseekError(
                f"this workspace was indexed with model '{self.model}', not '{model}'. Use another "
                f"workspace (CLIPSEEK_WORKSPACE) for each model.")
        if self._index is None:
            self.dim, self.model = dim, model or self.model
            self._index = hnswlib.Index(space=self.settings.space, dim=dim)
            self._index.init_index(max_elements=max(1024, extra), ef_construction=self.settings.ef_construction,
                                   M=self.settings.m, allow_replace_deleted=True)
            self._index.set_ef(self.settings.ef_search)
        index = self._index
        needed = index.get_current_count() + extra
        if needed > index.get_max_elements():
            index.resize_index(max(needed, 2 * index.get_max_elements()))
        return index

    def _grow_arrays(self, extra: int) -> None:
        needed = self._next_label + extra
        if needed > len(self._frame_video):
            capacity = max(needed, 2 * len(self._frame_video), 1024)
            self._frame_video = np.concatenate(
                [self._frame_video, np.full(capacity - len(self._frame_video), -1, dtype=np.int32)])
            self._frame_time = np.concatenate(
                [self._frame_time, np.zeros(capacity - len(self._frame_time), dtype=np.float64)])
            self._frame_row = np.concatenate(
                [self._frame_row, np.full(capacity - len(self._frame_row), -1, dtype=np.int32)])
        rows_needed = self._n_rows + extra
        if rows_needed > len(self._vecs) or self._vecs.shape[1] != self.dim:
            grown = np.zeros((max(rows_needed, 2 * len(self._vecs), 1024), self.dim), dtype=np.float16)
            if self._vecs.shape[1] == self.dim:
                grown[: self._n_rows] = self._vecs[: self._n_rows]
            self._vecs = grown

    def _delete_labels(self, labels: np.ndarray) -> None:
        for label in labels.tolist():
            self._index.mark_deleted(int(label))
        self._frame_video[labels] = -1
        self._frame_row[labels] = -1
        self._by_video = None
        self._live = None

    def delete(self, video_id: str) -> VideoRecord | None:
        """Remove a video and its frames (not committed until ``commit``)."""
        with self._lock:
            record = self.videos.pop(video_id, None)
            if record is None:
                return None
            _, labels = self.frames_of(video_id)
            if len(labels):
                self._delete_labels(labels)
            self._video_numbers.pop(video_id, None)
            self._by_video = None
            return record

    def add(self, record: VideoRecord, shots: list[ShotSpan], times_s: np.ndarray, embeddings: np.ndarray,
            model: str, range_start_s: float, range_end_s: float) -> VideoRecord:
        """Add (or replace) the frames and shots of [range_start_s, range_end_s) of a video."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        times_s = np.asarray(times_s, dtype=np.float64)
        if len(times_s) != len(embeddings):
            raise ValueError(f"{len(times_s)} frame times for {len(embeddings)} embeddings")
        with self._lock:
            if len(embeddings):
                index = self._ensure_index(int(embeddings.shape[1]), model, len(embeddings))
            existing = self.videos.get(record.video_id)
            if existing is not None:
                record.shots = [s for s in existing.shots if s.end_s <= range_start_s or s.start_s >= range_end_s]
                record.ranges = existing.ranges
                old_times, old_labels = self.frames_of(record.video_id)
                stale = old_labels[(old_times >= range_start_s) & (old_times < range_end_s)]
                if len(stale):
                    self._delete_labels(stale)
            number = self._video_numbers.setdefault(
                record.video_id, max(self._video_numbers.values(), default=-1) + 1)
            record.shots = _join_shots(record.shots + shots)
            record.ranges = _merge_ranges(record.ranges + [[range_start_s, range_end_s]])
            record.indexed_at = datetime.now(UTC).isoformat(timespec="seconds")
            if len(embeddings):
                labels = np.arange(self._next_label, self._next_label + len(embeddings), dtype=np.int64)
                self._grow_arrays(len(labels))
                index.add_items(embeddings, labels, num_threads=self.settings.threads or -1, replace_deleted=True)
                self._frame_video[labels] = number
                self._frame_time[labels] = times_s
                norms = np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
                rows = np.arange(self._n_rows, self._n_rows + len(labels), dtype=np.int32)
                self._vecs[rows] = embeddings / norms
                self._frame_row[labels] = rows
                self._n_rows += len(labels)
                self._next_label += len(labels)
            self.videos[record.video_id] = record
            self._by_video = None
            self._live = None
            return record

    # -- search ------------------------------------------------------------------------------
    def search(self, query: np.ndarray, top_k: int, video_ids: list[str] | None = None,
               margin: Margin | None = None, oversample: int = 8, min_candidates: int = 100
               ) -> list[tuple[VideoRecord, Clip]]:
        """Ranked, non-overlapping clips for a unit query vector."""
        with self._lock:
            if self._index is None or self.num_frames == 0:
                return []
            query = np.asarray(query, dtype=np.float32).reshape(1, -1)
            if query.shape[1] != self.dim:
                raise QueryError(f"query has {query.shape[1]} dimensions, the index {self.dim} "
                                 f"(model '{self.model}'): the text encoder uses another model")
            allowed: set[int] | None = None
            live = self.num_frames
            if video_ids:
                allowed = {self._video_numbers[v] for v in video_ids if v in self._video_numbers}
                live = sum(len(self.frames_of(v)[0]) for v in video_ids)
            k = min(live, max(top_k * oversample, min_candidates))
            if k <= 0:
                return []
            index = self._index
            index.set_ef(max(self.settings.ef_search, k))
            video_of = self._frame_video
            filter_fn = None if allowed is None else (lambda label: int(video_of[label]) in allowed)
            labels, distances = index.knn_query(query, k=k, filter=filter_fn)
            hits = dict(zip(labels[0].tolist(), (1.0 - distances[0]).tolist(), strict=True))
            margin = replace(margin or Margin(), background=float(np.median(1.0 - distances[0])))
            numbers = {n: vid for vid, n in self._video_numbers.items()}
            shot_starts: dict[str, list[float]] = {}  # per video, built once per query
            by_shot: dict[tuple[str, int], None] = {}
            for label in hits:
                video_id = numbers.get(int(video_of[label]))
                record = self.videos.get(video_id) if video_id else None
                if record is None:
                    continue
                if video_id not in shot_starts:
                    shot_starts[video_id] = [s.start_s for s in record.shots]
                starts = shot_starts[video_id]
                shot = max(0, bisect.bisect_right(starts, float(self._frame_time[label])) - 1)
                by_shot[(video_id, shot)] = None
            # Every frame of every hit shot is scored, so a clip grows over frames that were not
            # among the candidates too. One get_items call for all of them: per shot it cost ~0.06 ms
            # a call, most of a search's time.
            spans: list[tuple[str, ShotSpan, np.ndarray, np.ndarray]] = []
            for video_id, shot_no in by_shot:
                shot = self.videos[video_id].shots[shot_no]
                times, shot_labels = self.frames_of(video_id)
                lo, hi = np.searchsorted(times, [shot.start_s, shot.end_s], side="left")
                if hi > lo:
                    spans.append((video_id, shot, times[lo:hi], shot_labels[lo:hi]))
            if not spans:
                return []
            all_labels = np.concatenate([labels for *_, labels in spans])
            unit_query = query[0] / max(float(np.linalg.norm(query[0])), 1e-12)
            all_scores = self._vecs[self._frame_row[all_labels]].astype(np.float32) @ unit_query
            results: list[tuple[str, Clip]] = []
            per_video: dict[str, list[Clip]] = {}
            offset = 0
            for video_id, shot, times, shot_labels in spans:
                scores = all_scores[offset:offset + len(shot_labels)]
                offset += len(shot_labels)
                # Candidates keep hnswlib's exact float32 score; the others come from the float16 copy.
                frames = [ScoredFrame(t, hits.get(lab, s), lab in hits)
                          for t, s, lab in zip(times.tolist(), scores.tolist(), shot_labels.tolist(), strict=True)]
                per_video.setdefault(video_id, []).extend(
                    clips_in_shot(shot.start_s, shot.end_s, frames, margin))
            for video_id, clips in per_video.items():
                duration = self.videos[video_id].duration_s
                results.extend((video_id, clamp(c, duration)) for c in merge_touching(clips, margin))
            return [(self.videos[v], clip) for v, clip in rank(results, top_k)]


def _join_shots(shots: list[ShotSpan]) -> list[ShotSpan]:
    """Sort shots; join a shot that starts at a range boundary (not a cut) to the one before it."""
    joined: list[ShotSpan] = []
    for shot in sorted(shots, key=lambda s: s.start_s):
        if joined and not shot.starts_at_cut and abs(joined[-1].end_s - shot.start_s) <= RANGE_EPSILON_S:
            joined[-1] = ShotSpan(joined[-1].start_s, shot.end_s, joined[-1].starts_at_cut)
        else:
            joined.append(ShotSpan(shot.start_s, shot.end_s, shot.starts_at_cut))
    return joined
