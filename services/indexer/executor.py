"""Indexer: the request side of clipseek.index (documents in, library calls, documents out).

Endpoints: ``/index`` (store a range of a video's frames), ``/probe`` (what is already indexed; records
a new path of content that is), ``/search``, ``/videos``, ``/delete``. Every decision (content vs
paths, ranges, deletes, validation) is clipseek.index.library's; every write is durable before the
answer says so. Runs with ``allow_concurrent`` (flow.yml): a search never waits behind an /index.
"""

# No `from __future__ import annotations` here: jina reads the endpoint types at run time.

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from docarray import DocList
from jina import requests

from clipseek.docs import Query, Segment, VideoDoc
from clipseek.engine.documents import range_upload, record_fields, segment
from clipseek.engine.executor import ClipseekExecutor
from clipseek.errors import ClipseekError
from clipseek.index import Library, SearchSettings, open_backend
from clipseek.index.embedded.vectors import HnswSettings
from clipseek.index.records import VideoRecord


@dataclass
class IndexerSettings:
    workspace: str = "workspace"  # folder of the index (created if missing; one indexer writes it at a time)
    index_backend: str = "embedded"  # embedded (SQLite + hnswlib in the workspace) or qdrant
    qdrant_url: str = ""  # qdrant backend: the server (http://host:6333); empty = local mode in the workspace
    qdrant_api_key: str = ""  # qdrant backend: the server's API key, if it has one
    qdrant_collection: str = "clipseek"  # qdrant backend: prefix of its two collections
    qdrant_shards: int = 1  # qdrant backend on a cluster: shards of the frames collection (set when created)
    qdrant_replication: int = 1  # qdrant backend on a cluster: copies of each shard (set when created)
    hnsw_m: int = 16  # hnswlib graph degree
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 256  # recall@10 0.995 at 1M frames (0.975 at 128); at least the candidates asked for
    exact_search_below: int = 5000  # searches over fewer frames than this are exact (no graph)
    checkpoint_min_mb: float = 64.0  # the vector log grows at least this much between graph checkpoints ...
    checkpoint_fraction: float = 0.25  # ... or this share of the last checkpoint's size
    max_top_k: int = 100  # largest top_k a search may ask for
    merge_margin: float = 0.03  # frames within this score of a clip's best frame join the clip ...
    merge_relative: float = 0.5  # ... or within this share of the way down to the candidates' median
    oversample: int = 8  # frame candidates fetched per requested clip


class Indexer(ClipseekExecutor):
    settings_class = IndexerSettings
    service_name = "indexer"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        s = self.settings
        hnsw = HnswSettings(m=s.hnsw_m, ef_construction=s.hnsw_ef_construction, ef_search=s.hnsw_ef_search,
                            exact_below=s.exact_search_below, checkpoint_min_mb=s.checkpoint_min_mb,
                            checkpoint_fraction=s.checkpoint_fraction)
        backend = open_backend(s.index_backend, Path(os.path.expanduser(s.workspace)), hnsw=hnsw,
                               qdrant_url=s.qdrant_url, qdrant_api_key=s.qdrant_api_key,
                               collection=s.qdrant_collection, qdrant_shards=s.qdrant_shards,
                               qdrant_replication=s.qdrant_replication)
        self.library = Library(backend, SearchSettings(max_top_k=s.max_top_k, oversample=s.oversample,
                                                       merge_margin=s.merge_margin, merge_relative=s.merge_relative))
        self.log.info("index (%s) at %s: %d videos, %d frames", s.index_backend, s.workspace,
                      len(self.library.videos()), self.library.frame_count())

    def close(self) -> None:
        try:
            self.library.close()
        finally:
            super().close()

    # -- /index ------------------------------------------------------------------------------
    @requests(on="/index")
    def index(self, docs: DocList[VideoDoc], **kwargs: Any) -> DocList[VideoDoc]:
        for doc in docs:
            if not doc.error:
                try:
                    outcome = self.library.index_range(range_upload(doc))
                    if outcome.record is None:  # refused: deleted while it was being indexed
                        doc.error, doc.status = outcome.message, outcome.status
                    else:
                        self._describe(doc, outcome.record, outcome.status)
                except (ClipseekError, ValueError) as exc:
                    doc.error = str(exc)
                    self.log.warning("%s: %s", doc.path or doc.uri, exc)
            if doc.error and doc.status != "deleted":
                doc.status = "failed"
            doc.frames = doc.frames.__class__()
        return docs

    def _describe(self, doc: VideoDoc, record: VideoRecord, status: str) -> VideoDoc:
        model = self.library.model.name if self.library.model else ""
        return record_fields(doc, record, status, self.library.frame_count(record.video_id), model)

    # -- /probe ------------------------------------------------------------------------------
    @requests(on="/probe")
    def probe(self, docs: DocList[VideoDoc], **kwargs: Any) -> DocList[VideoDoc]:
        generation = self.library.generation()
        for doc in docs:
            doc.generation = generation
            if doc.error or not doc.content_hash:
                continue
            try:
                known = self.library.probe(doc.video_id, doc.content_hash, doc.path)
            except ClipseekError as exc:
                doc.error, doc.status = str(exc), "failed"
                continue
            doc.already_indexed = bool(known is not None and known.complete)
            if known is not None:
                doc.paths = list(known.paths)
                doc.num_shots = len(known.shots)
                doc.num_frames = self.library.frame_count(known.video_id)
                doc.indexed_at = known.indexed_at
        return docs

    # -- /videos, /delete --------------------------------------------------------------------
    @requests(on="/videos")
    def videos(self, docs: DocList[VideoDoc], **kwargs: Any) -> DocList[VideoDoc]:
        return DocList[VideoDoc]([self._describe(VideoDoc(uri=r.path, path=r.path), r, "indexed")
                                  for r in self.library.videos()])

    @requests(on="/delete")
    def delete(self, docs: DocList[VideoDoc], **kwargs: Any) -> DocList[VideoDoc]:
        for doc in docs:
            try:
                outcome = self.library.delete(doc.video_id or doc.uri)
            except ClipseekError as exc:
                doc.error, doc.status = str(exc), "failed"
                continue
            record = outcome.record
            doc.video_id, doc.path, doc.status = record.video_id, record.path, "deleted"
            kept = self.library.find(record.video_id)[0]
            doc.paths = list(kept.paths) if kept is not None else []  # where the content stays indexed
        return docs

    # -- /search -----------------------------------------------------------------------------
    @requests(on="/search")
    def search(self, docs: DocList[Query], **kwargs: Any) -> DocList[Query]:
        for query in docs:
            if not query.error:
                try:
                    if query.embedding is None:
                        raise ClipseekError("the query has no embedding (is the text encoder in the Flow?)")
                    hits = self.library.search(np.asarray(query.embedding, dtype=np.float32), query.top_k,
                                               list(query.video_ids) or None, model=query.model)
                    query.segments = DocList[Segment]([segment(hit) for hit in hits])
                except ClipseekError as exc:
                    query.error = str(exc)
            query.embedding = None
        return docs
