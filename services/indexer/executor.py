"""Indexer: the request side of clipseek.index (documents in, library calls, documents out).

Endpoints: ``/index`` (store a range of a video's frames), ``/probe`` (what is already indexed; records
a new path of content that is), ``/search``, ``/videos``, ``/delete``; and the words: ``/metadata``
(manifest rows), ``/topics`` (set the topic vocabulary and tag every shot), ``/vocabulary`` (read it).
Every decision (content vs paths, ranges, deletes, validation) is clipseek.index.library's; every
write is durable before the answer says so. Runs with ``allow_concurrent`` (flow.yml): a search never
waits behind an /index.
"""

# No `from __future__ import annotations` here: jina reads the endpoint types at run time.

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from docarray import DocList
from jina import requests

from clipseek.docs import MetadataRowDoc, Query, Segment, TopicLabel, VideoDoc
from clipseek.engine.documents import (
    label_docs,
    metadata_row,
    range_upload,
    record_fields,
    search_options,
    segment,
    vocabulary_of,
    words_fields,
)
from clipseek.engine.executor import ClipseekExecutor
from clipseek.errors import ClipseekError
from clipseek.index import Library, SearchSettings, open_backend
from clipseek.index.backend import ModelIdentity
from clipseek.index.embedded.vectors import HnswSettings
from clipseek.index.metadata import MetadataError
from clipseek.index.queries import combine_query, parse_like
from clipseek.index.records import VideoRecord
from clipseek.model.spec import DEFAULT_MODEL, DEFAULT_PRETRAINED, expected_identity


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
    huge_pages: bool = True  # load the graph into 2 MB pages (Linux >= 6.1): a checkpoint's fork stalls searches less
    max_top_k: int = 100  # largest top_k a search may ask for
    merge_margin: float = 0.03  # frames within this score of a clip's best frame join the clip ...
    merge_relative: float = 0.5  # ... or within this share of the way down to the candidates' median
    cut_margin: float = 0.03  # clips touching across a detected cut merge within this score (0: never)
    oversample: int = 8  # frame candidates fetched per requested clip
    model: str = DEFAULT_MODEL  # the encoders' model: a workspace of another model fails the start
    pretrained: str = DEFAULT_PRETRAINED  # the encoders' weights (with model)


class Indexer(ClipseekExecutor):
    settings_class = IndexerSettings
    service_name = "indexer"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        s = self.settings
        hnsw = HnswSettings(m=s.hnsw_m, ef_construction=s.hnsw_ef_construction, ef_search=s.hnsw_ef_search,
                            exact_below=s.exact_search_below, checkpoint_min_mb=s.checkpoint_min_mb,
                            checkpoint_fraction=s.checkpoint_fraction, huge_pages=s.huge_pages)
        backend = open_backend(s.index_backend, Path(os.path.expanduser(s.workspace)), hnsw=hnsw,
                               qdrant_url=s.qdrant_url, qdrant_api_key=s.qdrant_api_key,
                               collection=s.qdrant_collection, qdrant_shards=s.qdrant_shards,
                               qdrant_replication=s.qdrant_replication)
        self.library = Library(backend, SearchSettings(max_top_k=s.max_top_k, oversample=s.oversample,
                                                       merge_margin=s.merge_margin, merge_relative=s.merge_relative,
                                                       cut_margin=s.cut_margin))
        self.log.info("index (%s) at %s: %d videos, %d frames", s.index_backend, s.workspace,
                      len(self.library.videos()), self.library.frame_count())
        self._check_model()

    def _check_model(self) -> None:
        """Refuse to start on a workspace made with another model than the encoders' (as far as the
        settings tell without loading it; every index and search request is checked exactly)."""
        try:
            identity, dim = expected_identity(self.settings.model, self.settings.pretrained)
        except ClipseekError as exc:  # e.g. a checkpoint folder mounted only in the encoders
            self.log.warning("cannot check the workspace's model at start-up: %s", exc)
            return
        try:
            self.library.check_model(identity, dim)
        except ClipseekError:
            self.library.close()
            raise

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
        """Every video (one empty VideoDoc), or those the docs name (``video_id`` or ``uri``), with their
        shots and each shot's topic; each with its metadata and seconds per topic."""
        named = [doc for doc in docs if doc.video_id or doc.uri]
        if not named:
            records = self.library.videos()
            meta = self.library.metadata([r.video_id for r in records])
            topics = {t.video_id: t for t in self.library.topic_table()}
            return DocList[VideoDoc]([words_fields(self._describe(VideoDoc(uri=r.path, path=r.path), r, "indexed"),
                                                   r, meta.get(r.video_id, {}), topics.get(r.video_id))
                                      for r in records])
        for doc in named:
            record, path = self.library.find(doc.video_id or doc.uri)
            if record is None:
                doc.error, doc.status = f"no indexed video matches '{doc.video_id or doc.uri}'", "failed"
                continue
            doc.path = path or record.path
            self._describe(doc, record, "indexed")
            table = self.library.topic_table([record.video_id])
            words_fields(doc, record, self.library.metadata([record.video_id]).get(record.video_id, {}),
                         table[0] if table else None, self.library.shot_topics(record.video_id))
        return DocList[VideoDoc](named)

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
                    vector, kind = self._query_vector(query)
                    hits = self.library.search(vector, query.top_k, list(query.video_ids) or None,
                                               model=query.model, min_confidence=query.min_confidence,
                                               query_kind=kind, **search_options(query))
                    query.segments = DocList[Segment]([segment(hit) for hit in hits])
                except (ClipseekError, MetadataError) as exc:
                    query.error = str(exc)
            query.embedding = query.image_embedding = None
        return docs

    # -- words: /metadata, /topics, /vocabulary ----------------------------------------------
    @requests(on="/metadata")
    def metadata(self, docs: DocList[MetadataRowDoc], **kwargs: Any) -> DocList[MetadataRowDoc]:
        """Store manifest rows; each is answered "attached" (an indexed video has it now), "waiting" (kept
        for a video not indexed yet) or "failed" with the reason (the other rows are stored)."""
        rows = []
        for doc in docs:
            try:
                rows.append((doc, metadata_row(doc)))
            except ValueError as exc:
                doc.status, doc.error = "failed", f"line {doc.line}: {exc}" if doc.line else str(exc)
        if rows:
            try:
                self.library.import_metadata([row for _, row in rows])
            except ClipseekError as exc:
                for doc, _ in rows:
                    doc.status, doc.error = "failed", str(exc)
                return docs
            for doc, row in rows:
                attached = self.library.backend.videos_matching_keys([row.match])
                doc.status = "attached" if attached else "waiting"
        return docs

    @requests(on="/topics")
    def topics(self, docs: DocList[TopicLabel], **kwargs: Any) -> DocList[TopicLabel]:
        """Make the labels the library's vocabulary and tag every shot with it (all labels or none)."""
        problem = next((f"label {doc.name!r}: {doc.error}" for doc in docs if doc.error), "")
        known = self.library.model
        others = sorted({doc.model for doc in docs if doc.model and known is not None
                         and known.differs_from(ModelIdentity.parse(doc.model, known.dim))})
        if not problem and others:
            problem = (f"the labels were embedded with {', '.join(others)}, the index holds "
                       f"'{known.text}' embeddings: use the same model in both encoders")
        tagged = 0
        if not problem:
            try:
                vocabulary, vectors = vocabulary_of(docs)
                tagged = self.library.set_vocabulary(vocabulary, vectors)
                self.log.info("topic vocabulary of %d labels: %d shots tagged", len(vocabulary.labels), tagged)
            except (ClipseekError, ValueError) as exc:
                problem = str(exc)
        for doc in docs:
            doc.embedding = None
            if problem:
                doc.error = doc.error or f"the vocabulary was not set: {problem}"
            else:
                doc.shots_tagged = tagged
        return docs

    @requests(on="/vocabulary")
    def vocabulary(self, docs: DocList[TopicLabel], **kwargs: Any) -> DocList[TopicLabel]:
        """The library's topic labels (none when it has no vocabulary yet)."""
        return label_docs(self.library.vocabulary())
    def _query_vector(self, query: Query) -> tuple[np.ndarray, str]:
        """The text's vector, the picture's (or, for ``like``, a stored frame's), or both weighted."""
        image = query.image_embedding
        if query.like:
            if image is not None:
                raise ClipseekError("a query takes a picture or 'more like this', not both")
            video, time_s = parse_like(query.like)
            image = self.library.frame_vector(video, time_s)[2]
        text = query.embedding if (query.text or "").strip() else None
        return combine_query(text, image, query.image_weight)
