"""Between the wire and the domain: every conversion of clipseek.docs documents to and from the media,
model and index types happens here (the executors call these and hold no field-by-field copies).

    media  -> docs    file_fields (a probed file), range_fields (its shots and sampled frames),
                      metadata_sources (its own tags and its sidecar file)
    docs   -> index   range_upload (an /index document after the encoders), search_options (a Query's
                      words: text, mode, weight, filters), metadata_row (a manifest row),
                      vocabulary_of (/topics labels after the text encoder)
    index  -> docs    record_fields (a video of the library), words_fields (its metadata and topics),
                      segment (a search hit), label_docs (the library's vocabulary)
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from docarray import DocList

from clipseek.docs import Frame, MetadataRowDoc, Segment, TopicLabel, TopicSeconds, VideoDoc
from clipseek.docs import Shot as ShotDoc
from clipseek.index import RangeUpload
from clipseek.index.library import SearchHit
from clipseek.index.metadata import MetadataError, MetadataRow, normalise_fields, parse_where
from clipseek.index.records import VideoRecord
from clipseek.index.topics import Label, ShotTopic, TopicTime, Vocabulary
from clipseek.media.source import RangeRead, VideoFile
from clipseek.types import Shot

MAX_LABELS = 1000  # a vocabulary's labels
MAX_PROMPTS = 64  # prompts of one label


def file_fields(doc: VideoDoc, file: VideoFile) -> VideoDoc:
    """The probe fields and the content hash of a file."""
    doc.path = str(file.path)
    doc.content_hash = file.content_hash
    doc.video_id = file.video_id
    doc.size_bytes = float(file.size_bytes)
    info = file.info
    doc.duration_s, doc.width_px, doc.height_px, doc.fps = info.duration_s, info.width_px, info.height_px, info.fps
    return doc


def range_fields(doc: VideoDoc, read: RangeRead) -> VideoDoc:
    """A range read by the loader: its bounds, shots and sampled frames (pixels for the image encoder)."""
    file_fields(doc, read.file)
    doc.duration_s = read.duration_s
    doc.start_s, doc.end_s = read.start_s, read.end_s
    scan = read.result.scan
    doc.shots = DocList[ShotDoc]([ShotDoc(start_s=s.start_s, end_s=s.end_s, starts_at_cut=s.starts_at_cut)
                               for s in scan.shots])
    doc.frames = DocList[Frame]([Frame(time_s=f.time_s, shot_index=f.shot_index, pixels=f.pixels)
                                 for f in scan.frames])
    return doc


def range_upload(doc: VideoDoc) -> RangeUpload:
    """The index's view of an /index document after the loader and the image encoder."""
    embedded = [f for f in doc.frames if f.embedding is not None]
    if doc.frames and not embedded:
        raise ValueError(f"{doc.path or doc.uri}: no embedded frames arrived (is the image encoder in the Flow?)")
    vectors = (np.stack([np.asarray(f.embedding, dtype=np.float32).reshape(-1) for f in embedded])
               if embedded else np.zeros((0, 0), dtype=np.float32))
    return RangeUpload(
        video_id=doc.video_id, content_hash=doc.content_hash, path=doc.path, duration_s=doc.duration_s,
        start_s=doc.start_s if doc.start_s is not None else 0.0,
        end_s=doc.end_s if doc.end_s is not None else doc.duration_s,
        shots=[Shot(s.start_s, s.end_s, s.starts_at_cut) for s in doc.shots],
        times_s=np.array([f.time_s for f in embedded], dtype=np.float64), vectors=vectors, model=doc.model,
        size_bytes=int(doc.size_bytes), width_px=doc.width_px, height_px=doc.height_px, fps=doc.fps,
        force=doc.force, generation=doc.generation,
        container_meta=json_object(doc.container_meta_json, "container_meta_json") if doc.container_meta_json
        else None,
        sidecar_meta=json_object(doc.sidecar_meta_json, "sidecar_meta_json") if doc.sidecar_meta_json else None)


def record_fields(doc: VideoDoc, record: VideoRecord, status: str, num_frames: int, model: str) -> VideoDoc:
    """A video of the library, as /index, /probe, /videos and /delete answer it."""
    doc.video_id = record.video_id
    doc.path = doc.path if doc.path in record.paths else record.path
    doc.paths = list(record.paths)
    doc.content_hash = record.content_hash
    doc.duration_s = record.duration_s
    doc.size_bytes = float(record.size_bytes)
    doc.width_px, doc.height_px, doc.fps = record.width_px, record.height_px, record.fps
    doc.num_shots = len(record.shots)
    doc.num_frames = num_frames
    doc.indexed_at = record.indexed_at
    doc.already_indexed = record.complete
    doc.model = model
    doc.status = status
    return doc


def segment(hit: SearchHit) -> Segment:
    """A search hit as the wire's ranked clip (times to the millisecond), with why it was found and what
    its video is about."""
    record, clip = hit.record, hit.clip
    return Segment(video_id=record.video_id, video=record.path, start_s=round(clip.start_s, 3),
                   end_s=round(clip.end_s, 3), score=round(clip.score, 5), thumbnail_s=round(clip.best_time_s, 3),
                   duration_s=record.duration_s, match=hit.match, text_score=hit.text_score,
                   title=_text(hit.metadata.get("title")), category=_text(hit.metadata.get("category")),
                   topic=hit.topic, confidence=round(hit.confidence, 3), level=hit.level)


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# -- words: metadata and topics -----------------------------------------------------------------------
def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def json_object(text: str, what: str) -> dict:
    """A JSON object from the wire (NaN and infinities refused); ValueError naming ``what``."""
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except ValueError as exc:
        raise ValueError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object of fields, got {type(value).__name__}")
    return value


def metadata_sources(doc: VideoDoc, container: dict | None, sidecar: dict | None, warning: str = "") -> VideoDoc:
    """What the loader read besides the pixels: the file's own tags and its sidecar file (None: not read)."""
    doc.container_meta_json = "" if container is None else json.dumps(container, ensure_ascii=False)
    doc.sidecar_meta_json = "" if sidecar is None else json.dumps(sidecar, ensure_ascii=False)
    doc.warning = warning
    return doc


def words_fields(doc: VideoDoc, record: VideoRecord, metadata: dict, topics: TopicTime | None,
                 shot_topics: list[ShotTopic] | None = None) -> VideoDoc:
    """A video's metadata and seconds per topic; with ``shot_topics``, also its shots, each with its topic."""
    doc.metadata_json = json.dumps(metadata, ensure_ascii=False) if metadata else ""
    doc.topics = DocList[TopicSeconds]([TopicSeconds(name=name, seconds=round(seconds, 3))
                                        for name, seconds in (topics.seconds.items() if topics else ())])
    if shot_topics is not None:
        shots = []
        for shot in record.shots:
            middle = (shot.start_s + shot.end_s) / 2
            tag = next((t for t in shot_topics if t.start_s <= middle < t.end_s), None)
            shots.append(ShotDoc(start_s=shot.start_s, end_s=shot.end_s, starts_at_cut=shot.starts_at_cut,
                                 topic=tag.topic if tag else "",
                                 topic_score=round(tag.score, 5) if tag and math.isfinite(tag.score) else 0.0))
        doc.shots = DocList[ShotDoc](shots)
    return doc


def metadata_row(doc: MetadataRowDoc) -> MetadataRow:
    """A manifest row from the wire, its fields cleaned again (the index trusts no client); ValueError
    (MetadataError) naming the problem."""
    kind, _, value = doc.match.partition(":")
    if kind not in ("path", "stem") or not value.strip():
        raise MetadataError(f"match must be 'path:<absolute path>' or 'stem:<file name stem>', got {doc.match!r}")
    fields = normalise_fields(json_object(doc.fields_json, "fields_json"))
    fields.pop("path", None)
    if not fields:
        raise MetadataError("the row has no fields")
    return MetadataRow(doc.match, fields, doc.line)


def search_options(query: Any) -> dict:
    """The words of a Query as Library.search's keywords (MetadataError for a malformed filter)."""
    return {"text": query.text or "", "mode": query.text_mode or "auto", "text_weight": query.text_weight,
            "where": parse_where(list(query.where))}


def vocabulary_of(docs: DocList[TopicLabel]) -> tuple[Vocabulary, np.ndarray]:
    """The vocabulary the /topics labels make, and their prompts' vectors in ``Vocabulary.prompts()``
    order; ValueError naming the first bad label."""
    if not docs:
        raise ValueError("a vocabulary needs at least one label")
    if len(docs) > MAX_LABELS:
        raise ValueError(f"a vocabulary may have at most {MAX_LABELS} labels, got {len(docs)}")
    labels, rows, seen = [], [], set()
    for doc in docs:
        name = doc.name.strip()
        prompts = tuple(p.strip() for p in doc.prompts if p.strip())
        if not name:
            raise ValueError("a label has no name")
        if name.lower() in seen:
            raise ValueError(f"the label {name!r} appears twice")
        if not prompts or len(prompts) > MAX_PROMPTS:
            raise ValueError(f"label {name!r}: 1 to {MAX_PROMPTS} prompts, got {len(prompts)}")
        if doc.embedding is None:
            raise ValueError(f"label {name!r} has no embedding (is the text encoder in the Flow?)")
        vectors = np.asarray(doc.embedding, dtype=np.float32).reshape(len(prompts), -1)
        if not np.isfinite(vectors).all() or (np.linalg.norm(vectors, axis=1) < 1e-6).any():
            raise ValueError(f"label {name!r}: its prompt vectors must be finite and not zero")
        seen.add(name.lower())
        labels.append(Label(name, doc.zh.strip(), prompts))
        rows.append(vectors)
    dims = {r.shape[1] for r in rows}
    if len(dims) != 1:
        raise ValueError(f"the labels' vectors differ in size: {sorted(dims)}")
    return Vocabulary(tuple(labels)), np.concatenate(rows)


def label_docs(vocabulary: Vocabulary | None) -> DocList[TopicLabel]:
    """A vocabulary's labels as documents (none when there is no vocabulary)."""
    labels = vocabulary.labels if vocabulary is not None else ()
    return DocList[TopicLabel]([TopicLabel(name=lab.name, zh=lab.zh, prompts=list(lab.prompts)) for lab in labels])
