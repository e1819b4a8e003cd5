"""Between the wire and the domain: every conversion of clipseek.docs documents to and from the media,
model and index types happens here (the executors call these and hold no field-by-field copies).

    media  -> docs    file_fields (a probed file), range_fields (its shots and sampled frames)
    docs   -> index   range_upload (an /index document after the encoders)
    index  -> docs    record_fields (a video of the library), segment (a search hit)
"""

from __future__ import annotations

import numpy as np
from docarray import DocList

from clipseek.docs import Frame, Segment, VideoDoc
from clipseek.docs import Shot as ShotDoc
from clipseek.index import RangeUpload
from clipseek.index.library import SearchHit
from clipseek.index.records import VideoRecord
from clipseek.media.source import RangeRead, VideoFile
from clipseek.types import Shot


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
        force=doc.force, generation=doc.generation)


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
    """A search hit as the wire's ranked clip (times to the millisecond)."""
    record, clip = hit.record, hit.clip
    return Segment(video_id=record.video_id, video=record.path, start_s=round(clip.start_s, 3),
                   end_s=round(clip.end_s, 3), score=round(clip.score, 5), thumbnail_s=round(clip.best_time_s, 3),
                   duration_s=record.duration_s)
