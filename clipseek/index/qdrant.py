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
from pathlib import Path
from typing import Any

import numpy as np

from clipseek.index.backend import Change, IndexWriteError, ModelIdentity
from clipseek.index.clips import FrameHit
from clipseek.index.locks import WorkspaceLock
from clipseek.index.records import Piece, ShotSpan, VideoRecord

logger = logging.getLogger("clipseek.index")

NAMESPACE = uuid.UUID("7c3f2a6e-4a8b-4f0e-9d4c-6b1f3c2d9e10")
BATCH = 256
SCROLL = 1024


def point_id(key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, key))


class QdrantBackend:
    def __init__(self, workspace: Path, url: str = "", api_key: str = "", collection: str = "clipseek",
                 timeout_s: float = 30.0):
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
        with self._serial:
            if not self.client.collection_exists(self.catalog):
                self.client.create_collection(self.catalog, vectors_config={})
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
            shots = tuple(ShotSpan(float(a), float(b), bool(cut)) for a, b, cut in p["shots"])
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
                self._model = ModelIdentity(found[0].payload["model_name"], int(found[0].payload["model_dim"]))
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
        if not spans or not self._has_frames():
            return [(np.zeros(0), np.zeros(0, dtype=np.float32)) for _ in spans]
        m = self.m
        flt = m.Filter(should=[m.Filter(must=[self._match("video_id", v),
                                             m.FieldCondition(key="time_s", range=m.Range(gte=a, lt=b))])
                               for v, a, b in spans])
        with self._serial:
            total = self.client.count(self.frames, count_filter=flt, exact=True).count
            found = self.client.query_points(self.frames, query=np.asarray(query, dtype=np.float32).tolist(),
                                             limit=max(1, total), query_filter=flt, with_payload=True,
                                             search_params=m.SearchParams(exact=True)) if total else None
        buckets: list[list[tuple[float, float]]] = [[] for _ in spans]
        for point in found.points if found else []:
            video_id, time_s = point.payload["video_id"], float(point.payload["time_s"])
            for i, (v, a, b) in enumerate(spans):
                if v == video_id and a <= time_s < b:
                    buckets[i].append((time_s, float(point.score)))
                    break
        out = []
        for bucket in buckets:
            bucket.sort()
            out.append((np.array([t for t, _ in bucket]), np.array([s for _, s in bucket], dtype=np.float32)))
        return out

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
                    size=change.model.dim, distance=m.Distance.COSINE))
                self._index_fields(self.frames, {"video_id": m.PayloadSchemaType.KEYWORD,
                                                 "time_s": m.PayloadSchemaType.FLOAT})
            client.upsert(self.catalog, [m.PointStruct(id=point_id("meta"), vector={}, payload={
                "kind": "meta", "model_name": change.model.name, "model_dim": change.model.dim})], wait=True)
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
            client.upsert(self.catalog, [m.PointStruct(id=point_id(f"video/{r.video_id}"), vector={}, payload={
                "kind": "video", "video_id": r.video_id, "content_hash": r.content_hash, "duration_s": r.duration_s,
                "paths": list(r.paths), "size_bytes": r.size_bytes, "width_px": r.width_px,
                "height_px": r.height_px, "fps": r.fps, "indexed_at": r.indexed_at})
                for r in change.videos], wait=True)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._lock is not None:
                self._lock.release()
