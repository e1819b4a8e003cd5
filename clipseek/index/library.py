"""The library: every decision about what the index holds, over any backend.

- **Content, not paths.** A video is its content (``video_id`` from the SHA-256). The same content at a
  second path adds that path to the video (one set of vectors, both paths listed); it replaces the
  old path only when the old file is gone (a move). A path whose content changed is detached from the
  old video (removed with it when that was its last path) and indexed as new content.
- **Ranges.** A video arrives as time ranges; a range replaces whatever was indexed over that time
  before (frames and shots), and leaves the rest. A range already covered is ``unchanged`` unless forced.
- **A delete wins.** Deleting records a tombstone with the time of the delete. An index run carries
  the time it was planned (``generation``, from ``probe``); a range of a run planned before the delete
  is refused (status ``deleted``), so ranges still in flight cannot bring a deleted video back.
- **Durable means what it says.** Every change is one ``Backend.apply``: the outcome is reported only
  after it returned; if it raised, nothing changed and the caller gets the error.
- **Bad input never reaches the index**: numbers are checked (finite, in range) before anything is
  decided.

The executors under services/ only translate documents to these calls and back.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from clipseek.errors import ClipseekError, QueryError
from clipseek.index.backend import Backend, Change, FrameBatch, ModelIdentity
from clipseek.index.clips import Clip, HitShot, Margin, clips_from_hits, shots_of_hits
from clipseek.index.confidence import (
    SAMPLE_SIZE,
    at_least,
    calibration_for,
    check_level,
    level,
    sample_rows,
    sample_spans,
    standing,
)
from clipseek.index.metadata import MetadataRow, match_keys, merged, query_terms, rrf
from clipseek.index.records import RANGE_EPSILON_S, Piece, VideoRecord, is_finite, replace_range
from clipseek.index.topics import ShotTopic, TopicTime, Vocabulary, label_vectors, seconds_per_topic, tag_shots
from clipseek.types import Shot

logger = logging.getLogger("clipseek.index")


@dataclass
class SearchSettings:
    max_top_k: int = 100  # largest top_k a search may ask for
    oversample: int = 8  # frame candidates fetched per requested clip
    min_candidates: int = 100
    merge_margin: float = 0.03  # frames within this score of a clip's best frame join the clip ...
    merge_relative: float = 0.5  # ... or within this share of the way down to the candidates' median
    cut_margin: float = 0.03  # clips touching across a detected cut merge within this score (0: never)


@dataclass
class RangeUpload:
    """One time range of one video, decoded and embedded: what ``index_range`` stores."""

    video_id: str
    content_hash: str
    path: str
    duration_s: float
    start_s: float
    end_s: float
    shots: list[Shot] = field(default_factory=list)
    times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    model: str = ""
    size_bytes: int = 0
    width_px: int = 0
    height_px: int = 0
    fps: float = 0.0
    force: bool = False
    generation: float = 0.0  # when the index run was planned (from probe, seconds since the epoch); 0: now
    container_meta: dict | None = None  # the file's own tags (clipseek.index.metadata); None: not read
    sidecar_meta: dict | None = None  # the fields of the sidecar file next to it; None: not read


@dataclass(frozen=True)
class Outcome:
    status: str  # "indexed", "unchanged", "deleted"
    record: VideoRecord | None
    message: str = ""


@dataclass(frozen=True)
class SearchHit:
    """One result: a clip of a video, why it was found, and what the video is about."""

    record: VideoRecord
    clip: Clip  # clip.score: the cosine of its best frame to the query
    rank_score: float  # what the ranking sorted on: the cosine (frames) or the fused score (text, hybrid)
    match: str = "frames"  # "frames", "text" or "frames+text"
    text_score: float = 0.0  # BM25 of the video's metadata for the query's words (0: no text match)
    metadata: dict = field(default_factory=dict)  # the video's effective metadata (title, category, ...)
    topic: str = ""  # the topic of the shot the clip is in (when the library has a vocabulary)
    confidence: float = 0.0  # how far clip.score stands above the query's scores over the library (z)
    level: str = ""  # "high", "medium" or "low" (clipseek.index.confidence)


@dataclass(frozen=True)
class ImportReport:
    rows: int  # rows stored
    videos: int  # indexed videos whose metadata changed
    waiting: int  # rows that name no indexed video yet (kept; they attach when it arrives)


def _topic_at(topics: list[ShotTopic], time_s: float) -> str:
    return next((t.topic for t in topics if t.start_s <= time_s < t.end_s), "")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def check_upload(u: RangeUpload) -> None:
    """Raise ValueError naming the first number of ``u`` that is not finite or not in range."""
    if not u.video_id or not u.content_hash or not u.path:
        raise ValueError("a range needs its video id, content hash and path (did the video loader run?)")
    for name in ("duration_s", "start_s", "end_s", "fps"):
        if not is_finite(getattr(u, name)):
            raise ValueError(f"{u.path}: {name} must be a finite number, got {getattr(u, name)!r}")
    if u.start_s < 0 or u.end_s <= u.start_s:
        raise ValueError(f"{u.path}: empty or reversed time range {u.start_s!r}-{u.end_s!r} s")
    if u.duration_s > 0 and u.end_s > u.duration_s + 1.0:
        raise ValueError(f"{u.path}: range ends at {u.end_s:.3f} s, after the video's end ({u.duration_s:.3f} s)")
    times = np.asarray(u.times_s, dtype=np.float64)
    vectors = np.asarray(u.vectors)
    if vectors.ndim != 2 or len(vectors) != len(times):
        raise ValueError(f"{u.path}: {len(times)} frame times for vectors of shape {vectors.shape}")
    if not np.isfinite(times).all() or not np.isfinite(vectors).all():
        raise ValueError(f"{u.path}: frame times and vectors must be finite numbers")
    if len(times) and (times.min() < u.start_s - RANGE_EPSILON_S or times.max() > u.end_s + RANGE_EPSILON_S):
        raise ValueError(f"{u.path}: frame times {times.min():.3f}-{times.max():.3f} s fall outside the range "
                         f"{u.start_s:.3f}-{u.end_s:.3f} s")
    if len(vectors) and (np.linalg.norm(vectors, axis=1) < 1e-6).any():
        raise ValueError(f"{u.path}: a frame vector is all zeros")
    for shot in u.shots:
        if not is_finite(shot.start_s, shot.end_s) or shot.end_s < shot.start_s:
            raise ValueError(f"{u.path}: bad shot {shot.start_s!r}-{shot.end_s!r} s")


class Library:
    """Decisions over a ``Backend``; safe to call from several threads (writes are serialised)."""

    def __init__(self, backend: Backend, search: SearchSettings | None = None,
                 exists: Callable[[str], bool] = os.path.exists, clock: Callable[[], float] = time.time):
        self.backend = backend
        self.search_settings = search or SearchSettings()
        self._exists = exists  # is a file still there (a copy or a move?)
        self._clock = clock
        self._lock = threading.RLock()  # writes, one at a time (a write may call another)
        self._sample: tuple[int, np.ndarray] | None = None  # (frame count, frame vectors) for confidence

    # -- reading -------------------------------------------------------------------------------
    @property
    def model(self) -> ModelIdentity | None:
        return self.backend.model

    def generation(self) -> float:
        """Now (seconds since the epoch), as an index run should remember it (see the module's docstring)."""
        return self._clock()

    def videos(self) -> list[VideoRecord]:
        return sorted(self.backend.videos(), key=lambda r: (r.path, r.video_id))

    def frame_count(self, video_id: str | None = None) -> int:
        return self.backend.frame_count(video_id)

    def find(self, key: str) -> tuple[VideoRecord | None, str]:
        """A video by id, id prefix (8+ characters), content hash or path; and the path, when the
        key named one of the video's paths (else "")."""
        key = (key or "").strip()
        if not key:
            return None, ""
        record = self.backend.video(key)
        if record is not None:
            return record, ""
        for path in (key, os.path.realpath(key)):
            record = self.backend.video_at(path)
            if record is not None:
                return record, path
        for record in self.backend.videos():
            if key == record.content_hash or (len(key) >= 8 and record.video_id.startswith(key)):
                return record, ""
        return None, ""

    # -- index runs ----------------------------------------------------------------------------
    def probe(self, video_id: str, content_hash: str, path: str) -> VideoRecord | None:
        """The video with this content, if any. When it is complete and ``path`` is new to it, the path
        is recorded (a copy, or a move if the old file is gone) before this returns."""
        with self._lock:
            known = self.backend.video(video_id)
            if known is None or not known.complete or path in known.paths:
                return known
            change = Change()
            self._detach(change, path, keep=video_id)
            change.videos.append(known.with_changes(paths=self._paths_with(known, path)))
            self._apply(change)
            return self.backend.video(video_id)

    def index_range(self, u: RangeUpload) -> Outcome:
        check_upload(u)
        with self._lock:
            deleted_at = max(self.backend.tombstone(f"video:{u.video_id}"), self.backend.tombstone(f"path:{u.path}"))
            if u.generation and deleted_at > u.generation:
                return Outcome("deleted", None, f"{u.path}: deleted while it was being indexed; this range was "
                                                f"not indexed (index it again to bring it back)")
            known = self.backend.video(u.video_id)
            change = Change()
            self._detach(change, u.path, keep=u.video_id)
            if known is not None and not u.force and known.covers(u.start_s, u.end_s):
                paths = self._paths_with(known, u.path)
                if paths != known.paths or change:
                    change.videos.append(known.with_changes(paths=paths))
                    self._apply(change)
                return Outcome("unchanged", self.backend.video(u.video_id))
            vectors = unit_rows(u.vectors)
            if not len(vectors):
                raise ClipseekError(f"{u.path}: no embedded frames arrived (is the image encoder in the Flow?)")
            change.model = self._check_model(u.model, vectors.shape[1])
            stamp = now_iso()
            piece = Piece(u.start_s, u.end_s, tuple(sorted(u.shots, key=lambda shot: shot.start_s)), stamp)
            pieces, removed, remnants = replace_range(known.pieces if known else (), piece)
            change.removed_pieces += [(u.video_id, p.start_s) for p in removed]
            change.pieces += [(u.video_id, p) for p in (*remnants, piece)]
            if known is not None:
                change.removed_frames.append((u.video_id, u.start_s, u.end_s))
            record = VideoRecord(
                video_id=u.video_id, content_hash=u.content_hash, duration_s=u.duration_s,
                paths=self._paths_with(known, u.path) if known else (u.path,), size_bytes=u.size_bytes,
                width_px=u.width_px, height_px=u.height_px, fps=u.fps, indexed_at=stamp, pieces=pieces)
            change.videos.append(record)
            change.frames.append(FrameBatch(u.video_id, np.asarray(u.times_s, dtype=np.float64), vectors))
            if u.container_meta is not None:
                change.metadata.append((f"video:{u.video_id}", "container", u.container_meta))
            if u.sidecar_meta is not None:
                change.metadata.append((f"path:{u.path}", "sidecar", u.sidecar_meta))
            self._apply(change)
            self._retag([u.video_id])
            return Outcome("indexed", self.backend.video(u.video_id) or record)

    def delete(self, key: str) -> Outcome:
        """Delete by id/hash (the video and all its paths) or by path (that path only, when the same
        content is also at another path)."""
        with self._lock:
            record, path = self.find(key)
            if record is None:
                raise ClipseekError(f"no indexed video matches '{key}'")
            now = self._clock()
            change = Change()
            rest = tuple(p for p in record.paths if p != path)
            if path and rest:
                change.videos.append(record.with_changes(paths=rest))
                change.tombstones[f"path:{path}"] = now
                message = f"removed the path {path}; the same content stays indexed at {', '.join(rest)}"
            else:
                change.removed_videos.append(record.video_id)
                change.tombstones[f"video:{record.video_id}"] = now
                for p in record.paths:
                    change.tombstones[f"path:{p}"] = now
                message = ""
            self._apply(change)
            return Outcome("deleted", record.with_changes(paths=(path,)) if path and rest else record, message)

    def _apply(self, change: Change) -> None:
        """Apply ``change`` with the effective metadata of every video it touches recomputed."""
        pending = {(match, source): fields for match, source, fields in change.metadata}
        touched = {r.video_id: r.paths for r in change.videos if r.video_id not in change.removed_videos}
        if change.metadata:
            for video_id in self.backend.videos_matching_keys(sorted({m for m, _, _ in change.metadata})):
                if video_id not in touched and video_id not in change.removed_videos:
                    record = self.backend.video(video_id)
                    touched[video_id] = record.paths if record else ()
        for video_id, paths in touched.items():
            change.video_meta[video_id] = self._effective_metadata(video_id, paths, pending)
        self.backend.apply(change)

    def _effective_metadata(self, video_id: str, paths: tuple[str, ...],
                            pending: dict[tuple[str, str], dict] | None = None) -> dict:
        """Container tags < sidecar < manifest rows by file name stem < manifest rows by path."""
        keys = [f"video:{video_id}", *match_keys(paths)]
        stored = self.backend.metadata_rows(keys)
        for (match, source), fields in (pending or {}).items():
            if match in keys:
                stored.setdefault(match, {})[source] = fields
        layers = [stored.get(f"video:{video_id}", {}).get("container", {})]
        layers += [stored.get(f"path:{p}", {}).get("sidecar", {}) for p in paths]
        layers += [stored.get(key, {}).get("manifest", {}) for key in match_keys(paths)]
        return merged(layers)

    def import_metadata(self, rows: list[MetadataRow]) -> ImportReport:
        """Store manifest rows (a re-import replaces a row's fields); the indexed videos they name get
        them at once, the others when they are indexed."""
        with self._lock:
            change = Change(metadata=[(row.match, "manifest", row.fields) for row in rows])
            self._apply(change)
            matched = set()
            for row in rows:
                if self.backend.videos_matching_keys([row.match]):
                    matched.add(row.match)
            return ImportReport(len(rows), len(change.video_meta), sum(1 for r in rows if r.match not in matched))

    def metadata(self, video_ids: list[str]) -> dict[str, dict]:
        return self.backend.video_meta(video_ids)

    # -- topics --------------------------------------------------------------------------------
    def set_vocabulary(self, vocabulary: Vocabulary, prompt_vectors: np.ndarray) -> int:
        """Use ``vocabulary`` (its prompts embedded by the text encoder, in ``vocabulary.prompts()``
        order) and tag every shot of the library with it; returns the number of shots tagged."""
        vectors = label_vectors(vocabulary, unit_rows(prompt_vectors))
        known = self.backend.model
        if known is not None and vectors.shape[1] != known.dim:
            raise ClipseekError(f"the vocabulary was embedded in {vectors.shape[1]} dimensions, the index holds "
                                f"{known.dim}-d vectors of '{known.name}': embed it with the same model")
        with self._lock:
            self.backend.apply(Change(vocabulary=(vocabulary, vectors)))
            return self._retag([r.video_id for r in self.backend.videos()])

    def _retag(self, video_ids: list[str]) -> int:
        """Tag the shots of these videos with the library's vocabulary (if it has one). The caller holds
        the write lock, so the shots cannot change meanwhile."""
        found = self.backend.vocabulary()
        if found is None or not video_ids:
            return 0
        vocabulary, vectors = found
        change, tagged = Change(), 0
        for record in self.backend.videos(video_ids):
            spans = [(record.video_id, shot.start_s, shot.end_s) for shot in record.shots]
            scored = self.backend.score_spans(vectors, spans)
            topics: list[ShotTopic] = []
            for (_, start, end), (times, scores) in zip(spans, scored, strict=True):
                if len(times):
                    topics += tag_shots([(start, end)], times, np.asarray(scores).reshape(len(times), -1),
                                        vocabulary.names)
            change.shot_topics[record.video_id] = topics
            tagged += len(topics)
        self.backend.apply(change)
        return tagged

    def vocabulary(self) -> Vocabulary | None:
        found = self.backend.vocabulary()
        return found[0] if found else None

    def topic_table(self, video_keys: list[str] | None = None) -> list[TopicTime]:
        """Seconds per topic of each video (all, or these), in the order of ``videos()``."""
        video_ids = self.resolve(video_keys) if video_keys else None
        topics = self.backend.shot_topics(video_ids)
        order = [r.video_id for r in self.videos() if video_ids is None or r.video_id in video_ids]
        return [seconds_per_topic(v, topics.get(v, [])) for v in order]

    def shot_topics(self, video_id: str) -> list[ShotTopic]:
        return self.backend.shot_topics([video_id]).get(video_id, [])

    def _paths_with(self, record: VideoRecord, path: str) -> tuple[str, ...]:
        """``record``'s paths once ``path`` holds its content too: the paths whose file is gone are
        dropped (a move), the others kept (copies)."""
        if path in record.paths:
            return record.paths
        kept = tuple(p for p in record.paths if self._exists(p))
        return (*kept, path)

    def _detach(self, change: Change, path: str, keep: str) -> None:
        """``path`` now holds other content than the video it was recorded for: drop it from that video
        (and the video, if that was its last path)."""
        other = self.backend.video_at(path)
        if other is None or other.video_id == keep:
            return
        rest = tuple(p for p in other.paths if p != path)
        if rest:
            change.videos.append(other.with_changes(paths=rest))
        else:
            logger.info("%s changed on disk: replacing video %s", path, other.video_id)
            change.removed_videos.append(other.video_id)

    def _check_model(self, model: str, dim: int) -> ModelIdentity | None:
        """The identity to record when the workspace has none yet; raises on a mismatch."""
        given = ModelIdentity.parse(model, dim)
        known = self.backend.model
        if known is None:
            return given
        if dim != known.dim:
            raise ClipseekError(
                f"this workspace holds {known.dim}-d embeddings from model '{known.text}'; these are {dim}-d from "
                f"'{given.text}'. Use another workspace (CLIPSEEK_WORKSPACE) or delete it to re-index.")
        if known.differs_from(given):
            raise ClipseekError(f"this workspace was indexed with model '{known.text}', not '{given.text}'. Use "
                                f"another workspace (CLIPSEEK_WORKSPACE) for each model.")
        return None

    def check_model(self, model: str, dim: int = 0) -> None:
        """Fail fast (at start-up) when the encoders are set up with another model than the one this
        workspace's vectors came from: ``model`` as clipseek.model.spec.expected_identity gives it."""
        known, given = self.backend.model, ModelIdentity.parse(model, dim)
        if known is not None and given.name and known.differs_from(given):
            raise ClipseekError(f"this workspace holds {known.dim}-d embeddings of model '{known.text}', but the "
                                f"encoders are set up with '{given.text}': set CLIPSEEK_MODEL/CLIPSEEK_PRETRAINED "
                                f"to the workspace's model, or use another workspace (CLIPSEEK_WORKSPACE)")

    # -- search --------------------------------------------------------------------------------
    def resolve(self, keys: list[str]) -> list[str]:
        """Video ids for ids, prefixes, hashes or paths; QueryError naming the unknown ones."""
        found = {key: self.find(key)[0] for key in keys}
        unknown = [key for key, record in found.items() if record is None]
        if unknown:
            raise QueryError(f"unknown video(s) in the filter: {', '.join(unknown)}")
        return sorted({record.video_id for record in found.values() if record is not None})

    def search(self, query: np.ndarray, top_k: int, video_keys: list[str] | None = None, model: str = "",
               text: str = "", mode: str = "auto", text_weight: float = 1.0,
               where: dict[str, str] | None = None, min_confidence: str = "low",
               query_kind: str = "text") -> list[SearchHit]:
        """Ranked, non-overlapping clips inside their videos.

        ``mode``: ``frames`` (the query vector against the frames), ``text`` (``text`` against the videos'
        metadata, BM25), ``hybrid`` (both, fused by reciprocal rank fusion, ``text_weight`` the weight
        of the text ranking), ``auto`` (hybrid when there is text and the library has metadata, else
        frames). ``where``: field = value filters on the metadata (``topic`` = a shot topic).
        ``min_confidence``: leave out results below this level; ``query_kind`` (``text`` or ``image``):
        which of the model's thresholds apply (clipseek.index.confidence)."""
        s = self.search_settings
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= s.max_top_k:
            raise QueryError(f"top_k must be between 1 and {s.max_top_k}, got {top_k!r}")
        if mode not in ("auto", "frames", "text", "hybrid"):
            raise QueryError(f"mode must be auto, frames, text or hybrid, got {mode!r}")
        if not is_finite(text_weight) or not 0 <= text_weight <= 100:
            raise QueryError(f"text_weight must be a number from 0 to 100, got {text_weight!r}")
        try:
            wanted = check_level(min_confidence)
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        query = self._check_query(query, model)
        if mode == "auto":
            mode = "hybrid" if text.strip() and self.backend.has_metadata() else "frames"
        video_ids = self.resolve(list(video_keys)) if video_keys else None
        where = dict(where or {})
        topic = where.get("topic", "")
        if where:
            allowed = self.backend.videos_where(where)
            video_ids = sorted(allowed if video_ids is None else allowed & set(video_ids))
            if not video_ids:
                return []
        depth = max(top_k * 3, 30) if mode != "frames" else top_k
        frames = self._frame_clips(query, depth, video_ids, topic) if mode != "text" else []
        texts = self._text_videos(text, depth, video_ids) if mode != "frames" else []
        if mode == "frames":
            hits = [SearchHit(record, clip, clip.score) for record, clip in frames]
        else:
            hits = self._fuse(query, frames, texts, text_weight, topic)
        hits = [h for h in self._with_confidence(hits, query, query_kind) if at_least(h.level, wanted)][:top_k]
        meta = self.backend.video_meta(sorted({h.record.video_id for h in hits}))
        topics = self.backend.shot_topics(sorted({h.record.video_id for h in hits}))
        return [replace(h, metadata=meta.get(h.record.video_id, {}),
                        topic=_topic_at(topics.get(h.record.video_id, []), h.clip.best_time_s)) for h in hits]

    # -- confidence and "more like this" (clipseek.index.confidence) ---------------------------
    def _with_confidence(self, hits: list[SearchHit], query: np.ndarray, kind: str) -> list[SearchHit]:
        """``hits`` with their confidence (z against a sample of the library) and level."""
        if not hits:
            return hits
        sample = self._sample_vectors()
        # einsum, not BLAS: a 1024 x dim product is too small to share out, and BLAS's threads waking up on a busy
        # machine made it ~6 ms at the median against ~0.1 ms (measured on 2 loaded cores)
        sample_scores = np.einsum("ij,j->i", sample, query) if len(sample) else np.zeros(0)
        known = self.backend.model
        thresholds = calibration_for(known.name if known else "").for_kind(kind)
        z = standing(np.array([h.clip.score for h in hits]), sample_scores)
        return [replace(h, confidence=float(zi), level=level(h.clip.score, float(zi), thresholds))
                for h, zi in zip(hits, z, strict=True)]

    def _sample_vectors(self) -> np.ndarray:
        """An evenly spread sample of the library's frame vectors, kept until the library grows or
        shrinks by a tenth (every change, while it is smaller than the sample)."""
        count = self.backend.frame_count()
        cached = self._sample
        if cached is not None and (cached[0] == count
                                   or (count > SAMPLE_SIZE and abs(count - cached[0]) < 0.1 * cached[0])):
            return cached[1]
        known = self.backend.model
        if known is None or count == 0:
            return np.zeros((0, 0), dtype=np.float32)
        spans = sample_spans({r.video_id: r.duration_s for r in self.backend.videos()})
        # score_spans against the identity gives each frame's stored vector: the Backend has no other reader
        found = [vectors for _, vectors in self.backend.score_spans(np.eye(known.dim, dtype=np.float32), spans)]
        vectors = np.concatenate([v.reshape(-1, known.dim) for v in found]) if found else np.zeros((0, known.dim))
        vectors = np.asarray(vectors[sample_rows(len(vectors))], dtype=np.float32)
        self._sample = (count, vectors)
        return vectors

    def frame_vector(self, key: str, time_s: float) -> tuple[VideoRecord, float, np.ndarray]:
        """The stored vector of the frame of video ``key`` (id, prefix, hash or path) nearest ``time_s``,
        and that frame's time: a "more like this" query, with no re-encoding."""
        if not is_finite(time_s) or time_s < 0:
            raise QueryError(f"the time of a 'more like this' frame must be a number of seconds >= 0, got {time_s!r}")
        record, _ = self.find(key)
        known = self.backend.model
        if record is None or known is None:
            raise QueryError(f"no indexed video matches '{key}'")
        spans = [(record.video_id, 0.0, max(record.duration_s, time_s) + 1.0)]
        times, vectors = self.backend.score_spans(np.eye(known.dim, dtype=np.float32), spans)[0]
        if not len(times):
            raise QueryError(f"video '{key}' has no indexed frames")
        nearest = int(np.argmin(np.abs(np.asarray(times) - time_s)))
        vector = np.asarray(vectors, dtype=np.float32).reshape(len(times), known.dim)[nearest]
        return record, float(times[nearest]), vector / max(float(np.linalg.norm(vector)), 1e-12)

    def _check_query(self, query: np.ndarray, model: str) -> np.ndarray:
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if not np.isfinite(query).all() or float(np.linalg.norm(query)) < 1e-6:
            raise QueryError("the query vector must be finite and not all zeros")
        known = self.backend.model
        if known is not None:
            if len(query) != known.dim:
                raise QueryError(f"the query has {len(query)} dimensions, the index {known.dim} (model "
                                 f"'{known.text}'): the text encoder uses another model")
            given = ModelIdentity.parse(model, len(query))
            if model and known.differs_from(given):
                raise QueryError(f"the query was embedded with '{given.text}' but the index holds '{known.text}' "
                                 f"embeddings: use the same model in both encoders")
        return query / float(np.linalg.norm(query))

    def _frame_clips(self, query: np.ndarray, top_k: int, video_ids: list[str] | None,
                     topic: str = "") -> list[tuple[VideoRecord, Clip]]:
        """Clips ranked by the cosine of their best frame (only in shots of ``topic`` when given)."""
        s = self.search_settings
        live = (self.backend.frame_count() if video_ids is None
                else sum(self.backend.frame_count(v) for v in video_ids))
        k = min(live, max(top_k * s.oversample, s.min_candidates))
        if k <= 0:
            return []
        hits = self.backend.search_frames(query, k, video_ids)
        if not hits:
            return []
        records = {r.video_id: r for r in self.backend.videos(sorted({h.video_id for h in hits}))}
        spans = shots_of_hits(hits, {v: r.shot_starts for v, r in records.items()},
                              {v: r.shot_ends for v, r in records.items()})
        if topic:
            tagged = self.backend.shot_topics(sorted(records))
            spans = [(v, a, b) for v, a, b in spans if _topic_at(tagged.get(v, []), (a + b) / 2).lower()
                     == topic.lower()]
        scored = self.backend.score_spans(query, spans)
        shots = [HitShot(v, a, b, tuple(times.tolist()), tuple(np.asarray(scores).reshape(-1).tolist()))
                 for (v, a, b), (times, scores) in zip(spans, scored, strict=True)]
        background = float(np.median([h.score for h in hits]))
        margin = Margin(s.merge_margin, s.merge_relative, background if math.isfinite(background) else None,
                        s.cut_margin)
        ranked = clips_from_hits(hits, shots, {v: r.duration_s for v, r in records.items()}, margin, top_k)
        return [(records[v], clip) for v, clip in ranked]

    def _text_videos(self, text: str, k: int, video_ids: list[str] | None) -> list[tuple[str, float]]:
        """Videos whose metadata matches the words of ``text``, best first; matches far weaker than the
        best (under a fifth of its score, e.g. on one common word) are left out."""
        found = self.backend.text_search(query_terms(text), k, video_ids)
        if not found:
            return []
        best = found[0][1]
        return [(v, score) for v, score in found if score >= 0.2 * best]

    def _fuse(self, query: np.ndarray, frames: list[tuple[VideoRecord, Clip]], texts: list[tuple[str, float]],
              text_weight: float, topic: str) -> list[SearchHit]:
        """Reciprocal rank fusion: a clip's rank among the frame results and its video's rank among the
        text results. The words are about the whole video, so they lift its best clip only (its other
        clips keep their frame rank); a video found by its words only is shown by its best clip."""
        text_rank = {v: i for i, (v, _) in enumerate(texts, 1)}
        text_score = dict(texts)
        hits = []
        shown = set()
        for rank, (record, clip) in enumerate(frames, 1):
            v = record.video_id
            first = v not in shown
            shown.add(v)
            words = text_rank.get(v) if first else None
            hits.append(SearchHit(record, clip, rrf(rank, words, text_weight),
                                  "frames+text" if words else "frames", text_score.get(v, 0.0) if words else 0.0))
        for v, _ in texts:
            if v in shown:
                continue
            best = self._frame_clips(query, 1, [v], topic)
            if best:
                record, clip = best[0]
                hits.append(SearchHit(record, clip, rrf(None, text_rank[v], text_weight), "text", text_score[v]))
        return sorted(hits, key=lambda h: (-h.rank_score, -h.clip.score, h.record.video_id, h.clip.start_s))

    def close(self) -> None:
        self.backend.close()
