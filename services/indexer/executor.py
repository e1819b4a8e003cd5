"""Indexer: stores frame vectors in hnswlib and turns frame hits into ranked clips.

Endpoints: ``/index`` (store a video's frames; same content already indexed = no-op unless
``force``), ``/probe`` (mark videos already indexed), ``/search``, ``/videos``, ``/delete``.
Writes are committed as a new snapshot switched in atomically (see clipseek.store): at once when a
video is complete or deleted; the ranges of a video still arriving at most every
``commit_interval_s`` (a commit rewrites the whole index, so not after every range), and on close.
"""

# No `from __future__ import annotations` here: jina reads the endpoint types at run time.

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from docarray import DocList
from jina import requests

from clipseek.docs import Query, Segment, VideoDoc
from clipseek.errors import ClipseekError
from clipseek.segments import Margin
from clipseek.service import ClipseekExecutor
from clipseek.store import RANGE_EPSILON_S, FrameStore, IndexSettings, ShotSpan, VideoRecord


@dataclass
class IndexerSettings:
    workspace: str = "workspace"  # folder of the index (created if missing)
    hnsw_m: int = 16  # hnswlib graph degree
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 256  # recall@10 0.995 at 1M frames (0.975 at 128); at least the candidates asked for
    max_top_k: int = 100  # largest top_k a search may ask for
    merge_margin: float = 0.03  # frames within this score of a clip's best frame join the clip ...
    merge_relative: float = 0.5  # ... or within this share of the way down to the candidates' median
    oversample: int = 8  # frame candidates fetched per requested clip
    commit_interval_s: float = 30.0  # ranges of unfinished videos are written at least this often


class Indexer(ClipseekExecutor):
    settings_class = IndexerSettings
    service_name = "indexer"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        s = self.settings
        self.store = FrameStore(Path(os.path.expanduser(s.workspace)),
                                IndexSettings(m=s.hnsw_m, ef_construction=s.hnsw_ef_construction,
                                              ef_search=s.hnsw_ef_search))
        self._dirty_since: float | None = None  # when the first uncommitted change was made
        self.log.info("index at %s: %d videos, %d frames", s.workspace, len(self.store.videos), self.store.num_frames)

    # -- /index ------------------------------------------------------------------------------
    @requests(on="/index")
    def index(self, docs: DocList[VideoDoc], **kwargs: Any) -> DocList[VideoDoc]:
        changed = finished = False
        for doc in docs:
            if doc.error:
                doc.status = "failed"
            else:
                try:
                    changed |= self._index_one(doc)
                    finished |= self._video_done(doc)
                except (ClipseekError, ValueError) as exc:
                    doc.error, doc.status = str(exc), "failed"
                    self.log.warning("%s: %s", doc.path or doc.uri, exc)
            doc.frames = doc.frames.__class__()
        if changed and self._dirty_since is None:
            self._dirty_since = time.monotonic()
        if self._dirty_since is not None and (
                finished or time.monotonic() - self._dirty_since >= self.settings.commit_interval_s):
            self._commit()
        return docs

    @staticmethod
    def _video_done(doc: VideoDoc) -> bool:
        """The video is complete in the index and this was its last range (a forced re-index of a
        complete video stays complete all along: it is committed after its last range, not each)."""
        end_s = doc.end_s if doc.end_s is not None else doc.duration_s
        return bool(doc.already_indexed) and end_s >= doc.duration_s - RANGE_EPSILON_S

    def _commit(self) -> None:
        self.store.commit()
        self._dirty_since = None

    def close(self) -> None:
        try:
            if self._dirty_since is not None:
                self._commit()
        finally:
            super().close()

    def _index_one(self, doc: VideoDoc) -> bool:
        start_s = doc.start_s or 0.0
        end_s = doc.end_s if doc.end_s is not None else doc.duration_s
        known = self.store.find_by_hash(doc.content_hash)
        if known is not None and known.covers(start_s, end_s) and not doc.force:
            moved = known.path != doc.path
            known.path = doc.path
            self._describe(doc, known, "unchanged")
            return moved
        for other in list(self.store.videos.values()):
            if other.path == doc.path and other.content_hash != doc.content_hash:
                self.log.info("%s changed on disk: replacing video %s", doc.path, other.video_id)
                self.store.delete(other.video_id)
        if doc.force and known is not None and start_s <= 0 and end_s >= known.duration_s:
            self.store.delete(known.video_id)
        embedded = [f for f in doc.frames if f.embedding is not None]
        if not embedded:
            raise ClipseekError(f"{doc.path}: no embedded frames arrived (is the image encoder in the Flow?)")
        record = VideoRecord(video_id=doc.video_id, path=doc.path, content_hash=doc.content_hash,
                             duration_s=doc.duration_s, size_bytes=doc.size_bytes, width_px=doc.width_px,
                             height_px=doc.height_px, fps=doc.fps)
        shots = [ShotSpan(s.start_s, s.end_s, s.starts_at_cut) for s in doc.shots]
        record = self.store.add(record, shots, np.array([f.time_s for f in embedded]),
                                np.stack([np.asarray(f.embedding, dtype=np.float32) for f in embedded]),
                                doc.model, start_s, end_s)
        self._describe(doc, record, "indexed")
        return True

    def _describe(self, doc: VideoDoc, record: VideoRecord, status: str) -> VideoDoc:
        doc.video_id = record.video_id
        doc.path = record.path
        doc.content_hash = record.content_hash
        doc.duration_s = record.duration_s
        doc.size_bytes, doc.width_px, doc.height_px, doc.fps = (record.size_bytes, record.width_px,
                                                                record.height_px, record.fps)
        doc.num_shots = len(record.shots)
        doc.num_frames = len(self.store.frames_of(record.video_id)[0])
        doc.indexed_at = record.indexed_at
        doc.already_indexed = record.complete
        doc.model = self.store.model
        doc.status = status
        return doc

    # -- /probe ------------------------------------------------------------------------------
    @requests(on="/probe")
    def probe(self, docs: DocList[VideoDoc], **kwargs: Any) -> DocList[VideoDoc]:
        for doc in docs:
            known = self.store.find_by_hash(doc.content_hash) if doc.content_hash else None
            doc.already_indexed = bool(known is not None and known.complete)
            if known is not None:
                doc.num_shots = len(known.shots)
                doc.num_frames = len(self.store.frames_of(known.video_id)[0])
                doc.indexed_at = known.indexed_at
        return docs

    # -- /videos, /delete --------------------------------------------------------------------
    @requests(on="/videos")
    def videos(self, docs: DocList[VideoDoc], **kwargs: Any) -> DocList[VideoDoc]:
        records = sorted(self.store.videos.values(), key=lambda r: r.path)
        return DocList[VideoDoc]([self._describe(VideoDoc(uri=r.path), r, "indexed") for r in records])

    @requests(on="/delete")
    def delete(self, docs: DocList[VideoDoc], **kwargs: Any) -> DocList[VideoDoc]:
        changed = False
        for doc in docs:
            key = doc.video_id or doc.uri
            record = self.store.find_video(key) if key else None
            if record is None:
                doc.error, doc.status = f"no indexed video matches '{key}'", "failed"
                continue
            self.store.delete(record.video_id)
            doc.video_id, doc.path, doc.status = record.video_id, record.path, "deleted"
            changed = True
        if changed or self._dirty_since is not None:
            self._commit()
        return docs

    # -- /search -----------------------------------------------------------------------------
    @requests(on="/search")
    def search(self, docs: DocList[Query], **kwargs: Any) -> DocList[Query]:
        for query in docs:
            if query.error:
                continue
            try:
                self._search_one(query)
            except ClipseekError as exc:
                query.error = str(exc)
            query.embedding = None
        return docs

    def _search_one(self, query: Query) -> None:
        limit = self.settings.max_top_k
        if not 1 <= query.top_k <= limit:
            raise ClipseekError(f"top_k must be between 1 and {limit}, got {query.top_k}")
        if query.embedding is None:
            raise ClipseekError("the query has no embedding (is the text encoder in the Flow?)")
        if self.store.model and query.model and query.model != self.store.model:
            raise ClipseekError(f"the query was embedded with '{query.model}' but the index holds "
                                f"'{self.store.model}' embeddings: use the same model in both encoders")
        video_ids = None
        if query.video_ids:
            found = {key: self.store.find_video(key) for key in query.video_ids}
            unknown = [key for key, record in found.items() if record is None]
            if unknown:
                raise ClipseekError(f"unknown video(s) in the filter: {', '.join(unknown)}")
            video_ids = sorted({record.video_id for record in found.values()})
        results = self.store.search(np.asarray(query.embedding, dtype=np.float32), query.top_k, video_ids,
                                    margin=Margin(self.settings.merge_margin, self.settings.merge_relative),
                                    oversample=self.settings.oversample)
        query.segments = DocList[Segment]([
            Segment(video_id=record.video_id, video=record.path, start_s=round(clip.start_s, 3),
                    end_s=round(clip.end_s, 3), score=round(clip.score, 5),
                    thumbnail_s=round(clip.best_time_s, 3), duration_s=record.duration_s)
            for record, clip in results
        ])
