"""The embedded backend: SQLite catalogue + hnswlib vectors in one workspace folder, one writer.

Layout of a workspace::

    FORMAT              "clipseek-index 2": the layout below (older workspaces are migrated on load)
    LOCK                flock of the process that writes it (pid inside)
    catalog.sqlite3     videos, paths, pieces, frames, tombstones (SQLite, WAL mode)
    vectors/            log-NNNNNN.bin (appended, fsynced), ckpt-NNNNNN/ (graph + float16 copy), CHECKPOINT

A change is applied in this order: its new vectors are appended to the log and fsynced; the
catalogue transaction commits (its ``frames`` rows say which logged vectors exist); then memory is
updated. A crash between the two writes leaves vectors in the log that no frame row names: they
are ignored at the next start. A failure of either write undoes the other and raises
IndexWriteError: nothing of the change is visible, now or after a restart.

Reads are served from memory (a mirror of the catalogue, built at start-up), under a lock held only
for as long as it takes to copy a few references.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import numpy as np

from clipseek.index.backend import Change, IndexWriteError, ModelIdentity
from clipseek.index.clips import FrameHit
from clipseek.index.embedded.catalog import SqlCatalog
from clipseek.index.embedded.files import FORMAT, write_atomically
from clipseek.index.embedded.vectors import HnswSettings, HnswVectors
from clipseek.index.locks import WorkspaceLock
from clipseek.index.records import VideoRecord

logger = logging.getLogger("clipseek.index")

EMPTY_TIMES = np.zeros(0, dtype=np.float64)
EMPTY_LABELS = np.zeros(0, dtype=np.int64)


class EmbeddedBackend:
    def __init__(self, workspace: Path, settings: HnswSettings | None = None):
        from clipseek.index.migrate import migrate_snapshot_workspace

        self.workspace = Path(workspace).expanduser()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self._lock = WorkspaceLock(self.workspace).acquire()
        try:
            migrate_snapshot_workspace(self.workspace)
            self.catalog = SqlCatalog(self.workspace / "catalog.sqlite3")
            if not (self.workspace / "FORMAT").is_file():
                write_atomically(self.workspace / "FORMAT", FORMAT + "\n")
            state = self.catalog.load()
            self._write = threading.Lock()  # one change at a time
            self.vectors = HnswVectors(self.workspace / "vectors", settings or HnswSettings(),
                                       state.frame_labels, state.model.dim if state.model else 0, self._write)
        except BaseException:
            self._lock.release()
            raise
        self._state = threading.Lock()  # the mirror below
        self._model = state.model
        self._videos = state.videos
        self._at_path = {path: video_id for video_id, r in self._videos.items() for path in r.paths}
        self._tombstones = state.tombstones
        self._numbers: dict[str, int] = {}
        self._ids: list[str] = []
        self._label_video = np.full(0, -1, dtype=np.int32)
        self._label_time = np.zeros(0, dtype=np.float64)
        self._frames: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # video -> (times, labels), by time
        self._frame_total: int | None = None  # sum over _frames; _publish forgets it, frame_count counts again
        labels, times, videos = state.frame_labels, state.frame_times, state.frame_videos
        if len(self.vectors.missing):
            lost = set(self.vectors.missing.tolist())
            logger.warning("%s: %d frames have no vector in the log or checkpoint (damaged files?): dropping them; "
                           "re-index the videos they belonged to", self.workspace, len(lost))
            keep = np.array([label not in lost for label in labels.tolist()], dtype=bool)
            labels, times = labels[keep], times[keep]
            videos = [v for v, k in zip(videos, keep.tolist(), strict=True) if k]
            self.catalog.drop_frames(sorted(lost))
        self._add_frames(labels, np.array([self._number(v) for v in videos], dtype=np.int32), times)
        self._next_label = max(int(labels.max()) if len(labels) else -1, self.vectors.max_label) + 1
        logger.info("index at %s: %d videos, %d frames", self.workspace, len(self._videos), len(labels))

    # -- the mirror ----------------------------------------------------------------------------
    def _number(self, video_id: str) -> int:
        number = self._numbers.get(video_id)
        if number is None:
            number = self._numbers[video_id] = len(self._ids)
            self._ids.append(video_id)
        return number

    def _add_frames(self, labels: np.ndarray, numbers: np.ndarray, times: np.ndarray) -> None:
        if not len(labels):
            return
        size = int(labels.max()) + 1
        if size > len(self._label_video):
            capacity = max(size, 2 * len(self._label_video), 1024)
            grown_video = np.full(capacity, -1, dtype=np.int32)
            grown_video[: len(self._label_video)] = self._label_video
            grown_time = np.zeros(capacity, dtype=np.float64)
            grown_time[: len(self._label_time)] = self._label_time
            self._label_video, self._label_time = grown_video, grown_time
        self._label_video[labels] = numbers
        self._label_time[labels] = times
        order = np.lexsort((times, numbers))
        numbers, times, labels = numbers[order], times[order], labels[order]
        bounds = np.flatnonzero(np.diff(numbers)) + 1
        for chunk in np.split(np.arange(len(labels)), bounds):
            video_id = self._ids[int(numbers[chunk[0]])]
            old_times, old_labels = self._frames.get(video_id, (EMPTY_TIMES, EMPTY_LABELS))
            all_times = np.concatenate([old_times, times[chunk]])
            all_labels = np.concatenate([old_labels, labels[chunk]])
            by_time = np.argsort(all_times, kind="stable")
            self._frames[video_id] = (all_times[by_time], all_labels[by_time])

    def _frames_in(self, video_id: str, start_s: float, end_s: float) -> np.ndarray:
        times, labels = self._frames.get(video_id, (EMPTY_TIMES, EMPTY_LABELS))
        return labels[(times >= start_s) & (times < end_s)]

    # -- reads ---------------------------------------------------------------------------------
    @property
    def model(self) -> ModelIdentity | None:
        return self._model

    def video(self, video_id: str) -> VideoRecord | None:
        return self._videos.get(video_id)

    def videos(self, video_ids: list[str] | None = None) -> list[VideoRecord]:
        with self._state:
            if video_ids is None:
                return list(self._videos.values())
            return [self._videos[v] for v in video_ids if v in self._videos]

    def video_at(self, path: str) -> VideoRecord | None:
        with self._state:
            video_id = self._at_path.get(path)
            return self._videos.get(video_id) if video_id else None

    def tombstone(self, key: str) -> float:
        return self._tombstones.get(key, 0.0)

    def frame_count(self, video_id: str | None = None) -> int:
        with self._state:
            if video_id is not None:
                return len(self._frames.get(video_id, (EMPTY_TIMES,))[0])
            if self._frame_total is None:  # every search asks: not summed over every video each time
                self._frame_total = sum(len(times) for times, _ in self._frames.values())
            return self._frame_total

    def search_frames(self, query: np.ndarray, k: int, video_ids: list[str] | None = None) -> list[FrameHit]:
        allowed = None
        if video_ids is not None:
            with self._state:
                parts = [self._frames[v][1] for v in video_ids if v in self._frames]
            allowed = np.concatenate(parts) if parts else EMPTY_LABELS
            if not len(allowed):
                return []
        labels, scores = self.vectors.search(query, k, allowed)
        with self._state:
            video_of, time_of, ids = self._label_video, self._label_time, self._ids
        hits = []
        for label, score in zip(labels.tolist(), scores.tolist(), strict=True):
            if label < len(video_of) and video_of[label] >= 0:
                hits.append(FrameHit(ids[int(video_of[label])], float(time_of[label]), float(score)))
        return hits

    def score_spans(self, query: np.ndarray, spans: list[tuple[str, float, float]]
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
        picked = []
        with self._state:
            for video_id, start_s, end_s in spans:
                times, labels = self._frames.get(video_id, (EMPTY_TIMES, EMPTY_LABELS))
                lo, hi = times.searchsorted((start_s, end_s))
                picked.append((times[lo:hi], labels[lo:hi]))
        if not picked:
            return []
        scores = self.vectors.score(query, np.concatenate([labels for _, labels in picked]))  # frames (x rows)
        out, offset = [], 0
        for times, labels in picked:
            out.append((times, scores[offset:offset + len(labels)]))
            offset += len(labels)
        return out

    # words and topics live in the catalogue only (SQLite answers them)
    def metadata_rows(self, matches: list[str]) -> dict[str, dict[str, dict]]:
        return self.catalog.metadata_rows(matches)

    def videos_matching_keys(self, matches: list[str]) -> list[str]:
        return self.catalog.videos_matching_keys(matches)

    def video_meta(self, video_ids: list[str]) -> dict[str, dict]:
        return self.catalog.video_meta(video_ids)

    def has_metadata(self) -> bool:
        return self.catalog.has_metadata()

    def text_search(self, terms: list[str], k: int, video_ids: list[str] | None = None) -> list[tuple[str, float]]:
        return self.catalog.text_search(terms, k, video_ids)

    def videos_where(self, where: dict[str, str]) -> set[str]:
        return self.catalog.videos_where(where)

    def shot_topics(self, video_ids: list[str] | None = None):
        return self.catalog.shot_topics(video_ids)

    def vocabulary(self):
        return self.catalog.vocabulary()

    # -- writes --------------------------------------------------------------------------------
    def apply(self, change: Change) -> None:
        if not change:
            return
        with self._write:
            if change.frames:
                self.vectors.wait_for_room()
            dead = [self._frames.get(v, (EMPTY_TIMES, EMPTY_LABELS))[1] for v in change.removed_videos]
            dead += [self._frames_in(v, a, b) for v, a, b in change.removed_frames]
            dead_labels = np.unique(np.concatenate(dead)) if dead else EMPTY_LABELS
            new_labels, new_vectors, rows = [], [], []
            label = self._next_label
            for batch in change.frames:
                vectors = np.asarray(batch.vectors, dtype=np.float32)
                labels = np.arange(label, label + len(vectors), dtype=np.int64)
                label += len(vectors)
                new_labels.append(labels)
                new_vectors.append(vectors)
                rows += [(int(lab), batch.video_id, float(t))
                         for lab, t in zip(labels.tolist(), np.asarray(batch.times_s).tolist(), strict=True)]
            labels = np.concatenate(new_labels) if new_labels else EMPTY_LABELS
            vectors = np.concatenate(new_vectors) if new_vectors else np.zeros((0, 0), dtype=np.float32)
            mark = None
            try:
                if len(labels):
                    mark = self.vectors.log_append(labels, vectors)
                self.catalog.write(change, rows)
            except (OSError, sqlite3.Error) as exc:
                if mark is not None:
                    self.vectors.log_undo(mark)
                raise IndexWriteError(f"could not write to the index at {self.workspace} ({exc}); nothing of this "
                                      f"request was applied") from exc
            self._next_label = label
            self._publish(change, labels, rows, dead_labels)
            self.vectors.publish(labels, vectors, dead_labels)

    def _publish(self, change: Change, labels: np.ndarray, rows: list[tuple[int, str, float]],
                 dead_labels: np.ndarray) -> None:
        with self._state:
            self._frame_total = None
            videos, at_path = dict(self._videos), dict(self._at_path)
            for video_id in change.removed_videos:
                old = videos.pop(video_id, None)
                for path in old.paths if old else ():
                    if at_path.get(path) == video_id:
                        del at_path[path]
                self._frames.pop(video_id, None)
            for video_id, start_s, end_s in change.removed_frames:
                times, old_labels = self._frames.get(video_id, (EMPTY_TIMES, EMPTY_LABELS))
                keep = (times < start_s) | (times >= end_s)
                self._frames[video_id] = (times[keep], old_labels[keep])
            for record in change.videos:
                old = videos.get(record.video_id)
                for path in old.paths if old else ():
                    if at_path.get(path) == record.video_id:
                        del at_path[path]
                videos[record.video_id] = record
            for record in change.videos:
                for path in record.paths:
                    at_path[path] = record.video_id
            if len(dead_labels):
                self._label_video[dead_labels[dead_labels < len(self._label_video)]] = -1
            if rows:
                self._add_frames(labels, np.array([self._number(v) for _, v, _ in rows], dtype=np.int32),
                                 np.array([t for _, _, t in rows], dtype=np.float64))
            self._tombstones.update(change.tombstones)
            if change.model is not None:
                self._model = change.model
            self._videos, self._at_path = videos, at_path

    def close(self) -> None:
        try:
            self.vectors.close()
            self.catalog.close()
        finally:
            self._lock.release()
