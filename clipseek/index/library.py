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
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from clipseek.errors import ClipseekError, QueryError
from clipseek.index.backend import Backend, Change, FrameBatch, ModelIdentity
from clipseek.index.clips import Clip, HitShot, Margin, clips_from_hits, shots_of_hits
from clipseek.index.records import RANGE_EPSILON_S, Piece, ShotSpan, VideoRecord, is_finite, replace_range

logger = logging.getLogger("clipseek.index")


@dataclass
class SearchSettings:
    max_top_k: int = 100  # largest top_k a search may ask for
    oversample: int = 8  # frame candidates fetched per requested clip
    min_candidates: int = 100
    merge_margin: float = 0.03  # frames within this score of a clip's best frame join the clip ...
    merge_relative: float = 0.5  # ... or within this share of the way down to the candidates' median


@dataclass
class RangeUpload:
    """One time range of one video, decoded and embedded: what ``index_range`` stores."""

    video_id: str
    content_hash: str
    path: str
    duration_s: float
    start_s: float
    end_s: float
    shots: list[ShotSpan] = field(default_factory=list)
    times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    model: str = ""
    size_bytes: int = 0
    width_px: int = 0
    height_px: int = 0
    fps: float = 0.0
    force: bool = False
    generation: float = 0.0  # when the index run was planned (from probe, seconds since the epoch); 0: now


@dataclass(frozen=True)
class Outcome:
    status: str  # "indexed", "unchanged", "deleted"
    record: VideoRecord | None
    message: str = ""


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
        self._lock = threading.Lock()

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
            self.backend.apply(change)
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
                    self.backend.apply(change)
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
            self.backend.apply(change)
            return Outcome("indexed", record)

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
            self.backend.apply(change)
            return Outcome("deleted", record.with_changes(paths=(path,)) if path and rest else record, message)

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
        known = self.backend.model
        if known is None:
            return ModelIdentity(model, dim)
        if dim != known.dim:
            raise ClipseekError(
                f"this workspace holds {known.dim}-d embeddings from model '{known.name}'; these are {dim}-d from "
                f"'{model}'. Use another workspace (CLIPSEEK_WORKSPACE) or delete it to re-index.")
        if model and known.name and model != known.name:
            raise ClipseekError(f"this workspace was indexed with model '{known.name}', not '{model}'. Use another "
                                f"workspace (CLIPSEEK_WORKSPACE) for each model.")
        return None

    # -- search --------------------------------------------------------------------------------
    def resolve(self, keys: list[str]) -> list[str]:
        """Video ids for ids, prefixes, hashes or paths; QueryError naming the unknown ones."""
        found = {key: self.find(key)[0] for key in keys}
        unknown = [key for key, record in found.items() if record is None]
        if unknown:
            raise QueryError(f"unknown video(s) in the filter: {', '.join(unknown)}")
        return sorted({record.video_id for record in found.values() if record is not None})

    def search(self, query: np.ndarray, top_k: int, video_keys: list[str] | None = None,
               model: str = "") -> list[tuple[VideoRecord, Clip]]:
        """Ranked, non-overlapping clips inside their videos for a query vector."""
        s = self.search_settings
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= s.max_top_k:
            raise QueryError(f"top_k must be between 1 and {s.max_top_k}, got {top_k!r}")
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if not np.isfinite(query).all() or float(np.linalg.norm(query)) < 1e-6:
            raise QueryError("the query vector must be finite and not all zeros")
        known = self.backend.model
        if known is not None:
            if len(query) != known.dim:
                raise QueryError(f"the query has {len(query)} dimensions, the index {known.dim} (model "
                                 f"'{known.name}'): the text encoder uses another model")
            if model and known.name and model != known.name:
                raise QueryError(f"the query was embedded with '{model}' but the index holds '{known.name}' "
                                 f"embeddings: use the same model in both encoders")
        query = query / float(np.linalg.norm(query))
        video_ids = self.resolve(list(video_keys)) if video_keys else None
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
                              {v: [shot.end_s for shot in r.shots] for v, r in records.items()})
        scored = self.backend.score_spans(query, spans)
        shots = [HitShot(v, a, b, tuple(times.tolist()), tuple(scores.tolist()))
                 for (v, a, b), (times, scores) in zip(spans, scored, strict=True)]
        background = float(np.median([h.score for h in hits]))
        margin = Margin(s.merge_margin, s.merge_relative, background if math.isfinite(background) else None)
        ranked = clips_from_hits(hits, shots, {v: r.duration_s for v, r in records.items()}, margin, top_k)
        return [(records[v], clip) for v, clip in ranked]

    def close(self) -> None:
        self.backend.close()
