"""The Qdrant backend: frames and catalogue in a Qdrant server, so the indexer keeps no state.

Two collections per library (``<prefix>_frames``, ``<prefix>_catalog``):

- frames: one point per sampled frame, the unit vector (cosine) and ``{video_id, time_s}``; payload
  indexes on both, so a video filter and a shot's time range are served by the server;
- catalog: points without vectors: one per video (``kind: video``: its fields and ``paths``), one per
  indexed piece (``kind: piece``: range and shots; separate points, so replicas indexing two ranges
  of one video never overwrite each other), tombstones of deletes, and the model identity (``meta``).

Point ids are UUIDs derived from what a point is (``video/<id>``, ``frame/<id>/<time>``, ...), so a
retried write replaces instead of duplicating. With no URL, qdrant-client's local mode keeps the
collections under ``<workspace>/qdrant`` (a Python reimplementation: right for tests and small
libraries, slow at scale; one process at a time, so the workspace lock applies).

Qdrant has no transaction across points. A change is written in an order that keeps what is visible
consistent: tombstones first (a delete wins even if the rest fails), then removals, then frames,
pieces and finally the video record. A failure part-way raises IndexWriteError: the video is not
reported indexed, stays incomplete, and the next index run sends it again.
"""

from __future__ import annotations

import logging
import threading
import uuid
from contextlib import nullcontext
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from clipseek.index.backend import Change, IndexWriteError, ModelIdentity
from clipseek.index.clips import FrameHit
from clipseek.index.locks import WorkspaceLock
from clipseek.index.metadata import SOURCES, bm25, indexable_text, stem
from clipseek.index.records import Piece, VideoRecord
from clipseek.index.topics import Label, ShotTopic, Vocabulary
from clipseek.types import Shot

logger = logging.getLogger("clipseek.index")

NAMESPACE = uuid.UUID("7c3f2a6e-4a8b-4f0e-9d4c-6b1f3c2d9e10")
BATCH = 256
SCROLL = 1024


def point_id(key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, key))


class QdrantBackend:
    def __init__(self, workspace: Path, url: str = "", api_key: str = "", collection: str = "clipseek",
                 timeout_s: float = 30.0, shards: int = 1, replication: int = 1):
        """``shards``/``replication``: the frames collection's shard number and replication factor on a
        Qdrant cluster (set when the collection is created; the catalogue is small: one shard, replicated
        alike)."""
        from qdrant_client import QdrantClient
        from qdrant_client import models as m

        self.m = m
        self.url = url
        self._lock: WorkspaceLock | None = None
        if url:
            self.client = QdrantClient(url=url, api_key=api_key or None, timeout=int(timeout_s))
            self._serial = nullcontext()
        else:
            workspace = Path(workspace).expanduser()
            workspace.mkdir(parents=True, exist_ok=True)
            self._lock = WorkspaceLock(workspace).acquire()
            self.client = QdrantClient(path=str(workspace / "qdrant"))
            self._serial = threading.RLock()  # the local mode is not made for threads
        self.frames = f"{collection}_frames"
        self.catalog = f"{collection}_catalog"
        self._layout = {"shard_number": shards, "replication_factor": replication} if url else {}
        with self._serial:
            if not self.client.collection_exists(self.catalog):
                self.client.create_collection(self.catalog, vectors_config={},
                                              **({"replication_factor": replication} if url else {}))
                self._index_fields(self.catalog, {"kind": m.PayloadSchemaType.KEYWORD,
                                                  "video_id": m.PayloadSchemaType.KEYWORD,
                                                  "paths": m.PayloadSchemaType.KEYWORD})
        self._model: ModelIdentity | None = None
        logger.info("qdrant index %s (%s, %s)", url or f"local mode in {workspace}", self.frames, self.catalog)

    def _index_fields(self, collection: str, fields: dict[str, Any]) -> None:
        if not self.url:  # local mode ignores payload indexes (and warns)
            return
        for name, schema in fields.items():
            self.client.create_payload_index(collection, name, field_schema=schema, wait=True)

    # -- helpers -------------------------------------------------------------------------------
    def _match(self, key: str, value: Any):
        m = self.m
        if isinstance(value, list):
            return m.FieldCondition(key=key, match=m.MatchAny(any=value))
        return m.FieldCondition(key=key, match=m.MatchValue(value=value))

    def _scroll(self, collection: str, conditions: list) -> list:
        out, offset = [], None
        with self._serial:
            while True:
                points, offset = self.client.scroll(collection, scroll_filter=self.m.Filter(must=conditions),
                                                    limit=SCROLL, offset=offset, with_payload=True,
                                                    with_vectors=False)
                out += points
                if offset is None:
                    return out

    def _records(self, video_points: list) -> list[VideoRecord]:
        if not video_points:
            return []
        ids = [p.payload["video_id"] for p in video_points]
        pieces: dict[str, list[Piece]] = {}
        for point in self._scroll(self.catalog, [self._match("kind", "piece"), self._match("video_id", ids)]):
            p = point.payload
            shots = tuple(Shot(float(a), float(b), bool(cut)) for a, b, cut in p["shots"])
            pieces.setdefault(p["video_id"], []).append(Piece(p["start_s"], p["end_s"], shots, p["indexed_at"]))
        records = []
        for point in video_points:
            p = point.payload
            records.append(VideoRecord(
                video_id=p["video_id"], content_hash=p["content_hash"], duration_s=p["duration_s"],
                paths=tuple(p["paths"]), size_bytes=p["size_bytes"], width_px=p["width_px"],
                height_px=p["height_px"], fps=p["fps"], indexed_at=p["indexed_at"],
                pieces=tuple(sorted(pieces.get(p["video_id"], []), key=lambda piece: piece.start_s))))
        return records

    # -- reads ---------------------------------------------------------------------------------
    @property
    def model(self) -> ModelIdentity | None:
        if self._model is None:
            with self._serial:
                found = self.client.retrieve(self.catalog, [point_id("meta")], with_payload=True)
            if found:
                self._model = ModelIdentity.parse(found[0].payload["model_name"], int(found[0].payload["model_dim"]))
        return self._model

    def video(self, video_id: str) -> VideoRecord | None:
        found = self.videos([video_id])
        return found[0] if found else None

    def videos(self, video_ids: list[str] | None = None) -> list[VideoRecord]:
        conditions = [self._match("kind", "video")]
        if video_ids is not None:
            if not video_ids:
                return []
            conditions.append(self._match("video_id", list(video_ids)))
        return self._records(self._scroll(self.catalog, conditions))

    def video_at(self, path: str) -> VideoRecord | None:
        found = self._records(self._scroll(self.catalog, [self._match("kind", "video"), self._match("paths", path)]))
        return found[0] if found else None

    def tombstone(self, key: str) -> float:
        with self._serial:
            found = self.client.retrieve(self.catalog, [point_id(f"tomb/{key}")], with_payload=True)
        return float(found[0].payload["generation"]) if found else 0.0

    def _has_frames(self) -> bool:
        with self._serial:
            return self.client.collection_exists(self.frames)

    def frame_count(self, video_id: str | None = None) -> int:
        if not self._has_frames():
            return 0
        flt = None if video_id is None else self.m.Filter(must=[self._match("video_id", video_id)])
        with self._serial:
            return self.client.count(self.frames, count_filter=flt, exact=True).count

    def search_frames(self, query: np.ndarray, k: int, video_ids: list[str] | None = None) -> list[FrameHit]:
        if not self._has_frames() or k <= 0:
            return []
        flt = None if video_ids is None else self.m.Filter(must=[self._match("video_id", list(video_ids))])
        with self._serial:
            found = self.client.query_points(self.frames, query=np.asarray(query, dtype=np.float32).tolist(),
                                             limit=k, query_filter=flt, with_payload=True,
                                             search_params=self.m.SearchParams(hnsw_ef=max(128, k)))
        return [FrameHit(p.payload["video_id"], float(p.payload["time_s"]), float(p.score)) for p in found.points]

    def score_spans(self, query: np.ndarray, spans: list[tuple[str, float, float]]
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
        query = np.asarray(query, dtype=np.float32)
        empty = (np.zeros(0), np.zeros((0,) if query.ndim == 1 else (0, len(query)), dtype=np.float32))
        if not spans or not self._has_frames():
            return [empty for _ in spans]
        m = self.m
        if self.url:  # the server evaluates the shots' time ranges with its payload indexes
            flt = m.Filter(should=[m.Filter(must=[self._match("video_id", v),
                                                 m.FieldCondition(key="time_s", range=m.Range(gte=a, lt=b))])
                                   for v, a, b in spans])
        else:  # local mode checks every condition in Python for every point: one condition per point instead
            flt = m.Filter(must=[self._match("video_id", sorted({v for v, _, _ in spans}))])
        points, offset = [], None
        with self._serial:
            while True:
                batch, offset = self.client.scroll(self.frames, scroll_filter=flt, limit=SCROLL, offset=offset,
                                                   with_payload=True, with_vectors=True)
                points += batch
                if offset is None:
                    break
        buckets: list[list[tuple[float, np.ndarray]]] = [[] for _ in spans]
        for point in points:
            video_id, time_s = point.payload["video_id"], float(point.payload["time_s"])
            for i, (v, a, b) in enumerate(spans):
                if v == video_id and a <= time_s < b:
                    buckets[i].append((time_s, np.asarray(point.vector, dtype=np.float32)))
                    break
        out = []
        for bucket in buckets:
            if not bucket:
                out.append(empty)
                continue
            bucket.sort(key=lambda item: item[0])
            vectors = np.stack([v for _, v in bucket])
            out.append((np.array([t for t, _ in bucket]), vectors @ (query if query.ndim == 1 else query.T)))
        return out

    # -- words and topics (kept in the catalogue collection; searched in this process) -------------
    def metadata_rows(self, matches: list[str]) -> dict[str, dict[str, dict]]:
        ids = [point_id(f"meta/{match}/{source}") for match in matches for source in SOURCES]
        out: dict[str, dict[str, dict]] = {}
        with self._serial:
            found = self.client.retrieve(self.catalog, ids, with_payload=True) if ids else []
        for point in found:
            p = point.payload
            out.setdefault(p["match"], {})[p["source"]] = p["fields"]
        return out

    def videos_matching_keys(self, matches: list[str]) -> list[str]:
        found: dict[str, None] = {}
        for match in matches:
            kind, _, value = match.partition(":")
            key = {"video": "video_id", "path": "paths", "stem": "stems"}.get(kind)
            if key:
                found.update((p.payload["video_id"], None) for p in self._scroll(
                    self.catalog, [self._match("kind", "video"), self._match(key, value)]))
        return list(found)

    def _video_payloads(self, video_ids: list[str] | None) -> list[dict]:
        conditions = [self._match("kind", "video")]
        if video_ids is not None:
            if not video_ids:
                return []
            conditions.append(self._match("video_id", list(video_ids)))
        return [p.payload for p in self._scroll(self.catalog, conditions)]

    def video_meta(self, video_ids: list[str]) -> dict[str, dict]:
        return {p["video_id"]: p["meta"] for p in self._video_payloads(video_ids) if p.get("meta")}

    def has_metadata(self) -> bool:
        with self._serial:
            return self.client.count(self.catalog, count_filter=self.m.Filter(must=[
                self._match("kind", "video"), self._match("has_meta", True)]), exact=True).count > 0

    def text_search(self, terms: list[str], k: int, video_ids: list[str] | None = None) -> list[tuple[str, float]]:
        """BM25 over the videos' metadata tokens, computed here over the catalogue (no server-side text
        index yet: fine for libraries of tens of thousands of videos, slow beyond)."""
        if not terms or k <= 0:
            return []
        docs = [(p["video_id"], p.get("tokens", [])) for p in self._video_payloads(video_ids) if p.get("tokens")]
        return bm25(terms, docs)[:k]

    def videos_where(self, where: dict[str, str]) -> set[str]:
        conditions = [self._match("kind", "video")]
        for name, value in where.items():
            key = "topics" if name == "topic" else "fields"
            conditions.append(self._match(key, value.lower() if name == "topic" else f"{name}={value}".lower()))
        return {p.payload["video_id"] for p in self._scroll(self.catalog, conditions)}

    def shot_topics(self, video_ids: list[str] | None = None) -> dict[str, list[ShotTopic]]:
        return {p["video_id"]: [ShotTopic(*row) for row in p["shot_topics"]]
                for p in self._video_payloads(video_ids) if p.get("shot_topics")}

    def vocabulary(self) -> tuple[Vocabulary, np.ndarray] | None:
        with self._serial:
            found = self.client.retrieve(self.catalog, [point_id("vocabulary")], with_payload=True)
        if not found:
            return None
        p = found[0].payload
        labels = tuple(Label(name, zh, tuple(prompts)) for name, zh, prompts in p["labels"])
        return Vocabulary(labels), np.asarray(p["vectors"], dtype=np.float32)

    # -- writes --------------------------------------------------------------------------------
    def apply(self, change: Change) -> None:
        if not change:
            return
        try:
            with self._serial:
                self._apply(change)
        except Exception as exc:  # qdrant-client raises transport, HTTP and value errors of its own
            if isinstance(exc, IndexWriteError):
                raise
            raise IndexWriteError(f"could not write to Qdrant ({exc}); the request was not (completely) applied: "
                                  f"the video stays incomplete and the next index run sends it again") from exc

    def _apply(self, change: Change) -> None:
        m, client = self.m, self.client
        if change.model is not None:
            if not client.collection_exists(self.frames):
                client.create_collection(self.frames, vectors_config=m.VectorParams(
                    size=change.model.dim, distance=m.Distance.COSINE), **self._layout)
                self._index_fields(self.frames, {"video_id": m.PayloadSchemaType.KEYWORD,
                                                 "time_s": m.PayloadSchemaType.FLOAT})
            client.upsert(self.catalog, [m.PointStruct(id=point_id("meta"), vector={}, payload={
                "kind": "meta", "model_name": change.model.text, "model_dim": change.model.dim})], wait=True)
            self._model = change.model
        if change.tombstones:
            client.upsert(self.catalog, [m.PointStruct(id=point_id(f"tomb/{key}"), vector={}, payload={
                "kind": "tombstone", "key": key, "generation": generation})
                for key, generation in change.tombstones.items()], wait=True)
        has_frames = client.collection_exists(self.frames)
        for video_id in change.removed_videos:
            if has_frames:
                client.delete(self.frames, m.FilterSelector(filter=m.Filter(must=[self._match("video_id", video_id)])),
                              wait=True)
            client.delete(self.catalog, m.FilterSelector(filter=m.Filter(must=[
                self._match("video_id", video_id), self._match("kind", ["video", "piece"])])), wait=True)
        for video_id, start_s, end_s in change.removed_frames:
            if has_frames:
                client.delete(self.frames, m.FilterSelector(filter=m.Filter(must=[
                    self._match("video_id", video_id),
                    m.FieldCondition(key="time_s", range=m.Range(gte=start_s, lt=end_s))])), wait=True)
        if change.removed_pieces:
            client.delete(self.catalog, m.PointIdsList(points=[
                point_id(f"piece/{video_id}/{start_s!r}") for video_id, start_s in change.removed_pieces]), wait=True)
        for batch in change.frames:
            times = np.asarray(batch.times_s, dtype=np.float64).tolist()
            vectors = np.asarray(batch.vectors, dtype=np.float32)
            for start in range(0, len(times), BATCH):
                client.upsert(self.frames, [
                    m.PointStruct(id=point_id(f"frame/{batch.video_id}/{t!r}"), vector=vectors[i].tolist(),
                                  payload={"video_id": batch.video_id, "time_s": t})
                    for i, t in enumerate(times[start:start + BATCH], start)], wait=True)
        if change.pieces:
            client.upsert(self.catalog, [m.PointStruct(
                id=point_id(f"piece/{video_id}/{p.start_s!r}"), vector={}, payload={
                "kind": "piece", "video_id": video_id, "start_s": p.start_s, "end_s": p.end_s,
                "shots": [[s.start_s, s.end_s, s.starts_at_cut] for s in p.shots], "indexed_at": p.indexed_at})
                for video_id, p in change.pieces], wait=True)
        if change.videos:
            existing = {p.id for p in client.retrieve(self.catalog, [point_id(f"video/{r.video_id}")
                                                                     for r in change.videos])}
            for r in change.videos:
                payload = {"kind": "video", "video_id": r.video_id, "content_hash": r.content_hash,
                           "duration_s": r.duration_s, "paths": list(r.paths),
                           "stems": [PurePosixPath(p).stem for p in r.paths], "size_bytes": r.size_bytes,
                           "width_px": r.width_px, "height_px": r.height_px, "fps": r.fps, "indexed_at": r.indexed_at}
                pid = point_id(f"video/{r.video_id}")
                if pid in existing:  # keep its metadata and topics
                    client.set_payload(self.catalog, payload, points=[pid], wait=True)
                else:
                    client.upsert(self.catalog, [m.PointStruct(id=pid, vector={}, payload=payload)], wait=True)
        for match, source, fields in change.metadata:
            pid = point_id(f"meta/{match}/{source}")
            if fields:
                client.upsert(self.catalog, [m.PointStruct(id=pid, vector={}, payload={
                    "kind": "metadata", "match": match, "source": source, "fields": fields})], wait=True)
            else:
                client.delete(self.catalog, m.PointIdsList(points=[pid]), wait=True)
        for video_id, fields in change.video_meta.items():
            flat = [f"{name}={item}".lower() for name, value in fields.items()
                    for item in (value if isinstance(value, list) else [value]) if not isinstance(item, dict)]
            tokens = [stem(t) for text in indexable_text(fields).values() for t in text.split()]
            client.set_payload(self.catalog, {"meta": fields, "has_meta": bool(fields), "fields": flat,
                                              "tokens": tokens}, points=[point_id(f"video/{video_id}")], wait=True)
        for video_id, topics in change.shot_topics.items():
            client.set_payload(self.catalog, {
                "shot_topics": [[t.start_s, t.end_s, t.topic, t.score, t.margin] for t in topics],
                "topics": sorted({t.topic.lower() for t in topics})}, points=[point_id(f"video/{video_id}")], wait=True)
        if change.vocabulary is not None:
            vocabulary, vectors = change.vocabulary
            client.upsert(self.catalog, [m.PointStruct(id=point_id("vocabulary"), vector={}, payload={
                "kind": "vocabulary", "labels": [[lab.name, lab.zh, list(lab.prompts)] for lab in vocabulary.labels],
                "vectors": np.asarray(vectors, dtype=np.float32).tolist()})], wait=True)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._lock is not None:
                self._lock.release()
