"""Video loader: the request side of clipseek.media.source (documents in, MediaSource calls, documents out).

Endpoints: ``/index`` (read one time range: shots and the frames to embed, at the encoder's size, and
what the file says about itself: its own tags and its sidecar file ``<video>.json``), ``/probe``
(expand folders, probe and hash, no decoding), ``/thumbnail`` (one frame as JPEG).
Everything else passes through. The rules (media roots, range bounds, sampling) are the media layer's.
"""

# No `from __future__ import annotations` here: jina reads the endpoint types at run time.

import base64
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docarray import DocList
from jina import requests

from clipseek.docs import Frame, Thumbnail, VideoDoc
from clipseek.engine.documents import file_fields, metadata_sources, range_fields
from clipseek.engine.executor import ClipseekExecutor
from clipseek.errors import ClipseekError
from clipseek.index.metadata import MetadataError, container_fields, read_sidecar
from clipseek.media.roots import VIDEO_EXTENSIONS
from clipseek.media.shots import SamplingSettings
from clipseek.media.source import MediaSource
from clipseek.model.spec import DEFAULT_MODEL, image_size_for


@dataclass
class LoaderSettings:
    media_roots: list[str] = field(default_factory=lambda: ["."])  # folders the Flow may read
    model: str = DEFAULT_MODEL  # only to pick the frame size when frame_size_px is 0
    frame_size_px: int = 0  # frames are letterboxed to this square; 0 = the model's input size
    max_fps: float = 1.0  # sampling: at most this many frames per second
    max_gap_s: float = 10.0  # sampling: at least one frame every this many seconds in a shot
    first_offset_s: float = 0.5  # sampling: first frame this far into a shot
    drift_threshold: float = 18.0  # sampling: picture change (0-255) that earns an extra frame
    min_shot_s: float = 0.3  # shot detection: shortest shot
    adaptive_threshold: float = 3.0  # shot detection: PySceneDetect AdaptiveDetector threshold
    dark_luma: float = 24.0  # frames whose brightest 2% are darker than this are black: never sampled
    chroma_threshold: float = 0.06  # shot detection: share of pixels changing colour at once for a cut
    fade_window_s: float = 1.0  # shot detection: cuts this close to a black run belong to the fade
    detect_px: int = 112  # shot detection: looks at the picture shrunk to at most this many px a side
    keyframe_scan: bool = True  # decode only around keyframes and suspected cuts where the stream allows
    max_keyframe_gap_s: float = 10.0  # keyframe scan: longer stretches without a keyframe are decoded in full
    keyframe_shortcuts: bool = True  # keyframe scan: no decoding where the stream marks the cut (see README)
    hwaccel: str = "auto"  # full decoder: auto (NVIDIA's when ffmpeg and a device offer it), cuda, none
    max_range_s: float = 900.0  # longest time range one /index request may decode
    video_extensions: list[str] = field(default_factory=lambda: list(VIDEO_EXTENSIONS))


class VideoLoader(ClipseekExecutor):
    settings_class = LoaderSettings
    service_name = "loader"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        s = self.settings
        sampling = SamplingSettings(
            max_fps=s.max_fps, max_gap_s=s.max_gap_s, first_offset_s=s.first_offset_s,
            drift_threshold=s.drift_threshold, min_shot_s=s.min_shot_s,
            adaptive_threshold=s.adaptive_threshold, dark_luma=s.dark_luma,
            chroma_threshold=s.chroma_threshold, fade_window_s=s.fade_window_s, detect_px=s.detect_px)
        try:
            self.media = MediaSource(s.media_roots, sampling, s.frame_size_px or image_size_for(s.model),
                                     s.max_range_s, s.video_extensions, s.keyframe_scan, s.max_keyframe_gap_s,
                                     s.keyframe_shortcuts, s.hwaccel)
        except ValueError as exc:
            if "hardware decode" not in str(exc):
                raise
            raise ValueError(f"the loader setting hwaccel (CLIPSEEK_HWACCEL): {exc}") from None
        self.log.info("video loader: media roots %s, frames %d px, full decode: %s", [str(r) for r in self.media.roots],
                      self.media.size_px, self.media.decode.hwaccel or "software")

    # -- /probe ------------------------------------------------------------------------------
    @requests(on="/probe")
    def probe_videos(self, docs: DocList[VideoDoc], **kwargs: Any) -> DocList[VideoDoc]:
        out = DocList[VideoDoc]()
        for doc in docs:
            try:
                named = self.media.resolve(doc.uri)
                paths = list(self.media.expand(doc.uri)) if named.is_dir() else [named]
            except (ClipseekError, OSError) as exc:
                out.append(self._failed(doc, exc))
                continue
            for path in paths:  # a folder: one document per video in it
                one = doc if path == named else VideoDoc(uri=str(path), force=doc.force)
                one.path = str(path)
                try:
                    file_fields(one, self.media.describe(path))
                    one.status = "probed"
                except (ClipseekError, OSError) as exc:
                    self._failed(one, exc)
                out.append(one)
        return out

    # -- /index ------------------------------------------------------------------------------
    @requests(on="/index")
    def load(self, docs: DocList[VideoDoc], **kwargs: Any) -> DocList[VideoDoc]:
        for doc in docs:
            started = time.perf_counter()
            try:
                read = self.media.read_range(doc.uri, doc.start_s, doc.end_s)
            except (ClipseekError, OSError, ValueError) as exc:
                self._failed(doc, exc)
                continue
            range_fields(doc, read)
            self._read_metadata(doc, read.file.path, read.file.info.tags)
            doc.status = "decoded"
            self.log.info("%s [%.1f-%.1f s]: %d frames decoded (%s), %d shots, %d sampled in %.2f s", read.file.path,
                          read.start_s, read.end_s, read.result.frames_decoded, read.result.method,
                          len(doc.shots), len(doc.frames), time.perf_counter() - started)
        return docs

    def _read_metadata(self, doc: VideoDoc, path: Path, tags: dict[str, str]) -> None:
        """The file's own tags and its sidecar file. A bad sidecar is a warning: the video is still
        indexed, and the index keeps the sidecar fields it had."""
        warnings = []
        try:
            container = container_fields(tags)
        except MetadataError as exc:
            container = None
            warnings.append(f"its own tags were not read: {exc}")
        try:
            sidecar = read_sidecar(path)
        except MetadataError as exc:
            sidecar = None
            warnings.append(f"the sidecar file was not read: {exc}")
        if warnings:
            self.log.warning("%s: %s", path, "; ".join(warnings))
        metadata_sources(doc, container, sidecar, "; ".join(warnings))

    # -- /thumbnail --------------------------------------------------------------------------
    @requests(on="/thumbnail")
    def thumbnail(self, docs: DocList[Thumbnail], **kwargs: Any) -> DocList[Thumbnail]:
        for doc in docs:
            try:
                doc.jpeg_base64 = base64.b64encode(self.media.thumbnail(doc.uri, doc.time_s, doc.width_px)).decode()
            except (ClipseekError, OSError) as exc:
                doc.error = str(exc)
        return docs

    def _failed(self, doc: VideoDoc, exc: Exception) -> VideoDoc:
        doc.error = str(exc) or type(exc).__name__
        doc.status = "failed"
        doc.frames = DocList[Frame]()
        self.log.warning("%s", doc.error)
        return doc
