"""Video loader: probe a file, find its shots, sample frames at the encoder's size.

Endpoints: ``/index`` (decode), ``/probe`` (expand folders, probe and hash, no decoding),
``/thumbnail`` (one frame as JPEG). Everything else passes through.
"""

# No `from __future__ import annotations` here: jina reads the endpoint types at run time.

import base64
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docarray import DocList
from jina import requests

from clipseek.docs import Frame, Shot, Thumbnail, VideoDoc
from clipseek.engine.executor import ClipseekExecutor
from clipseek.errors import ClipseekError, MediaPathError, VideoOpenError
from clipseek.media.ffmpeg_cmd import VideoInfo
from clipseek.media.roots import VIDEO_EXTENSIONS, iter_videos, resolve_media_path, resolve_roots
from clipseek.media.scan import scan_range
from clipseek.media.shots import SamplingSettings
from clipseek.media.video import content_hash, grab_jpeg, probe
from clipseek.model.clip import DEFAULT_MODEL, image_size_for


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
    max_range_s: float = 900.0  # longest time range one /index request may decode
    video_extensions: list[str] = field(default_factory=lambda: list(VIDEO_EXTENSIONS))


class VideoLoader(ClipseekExecutor):
    settings_class = LoaderSettings
    service_name = "loader"
    KNOWN_FILES = 1024  # probes and hashes remembered

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        s = self.settings
        self.roots = resolve_roots(s.media_roots)
        self.size_px = s.frame_size_px or image_size_for(s.model)
        self.sampling = SamplingSettings(
            max_fps=s.max_fps, max_gap_s=s.max_gap_s, first_offset_s=s.first_offset_s,
            drift_threshold=s.drift_threshold, min_shot_s=s.min_shot_s,
            adaptive_threshold=s.adaptive_threshold, dark_luma=s.dark_luma,
            chroma_threshold=s.chroma_threshold, fade_window_s=s.fade_window_s, detect_px=s.detect_px)
        self._known: OrderedDict[tuple, list] = OrderedDict()  # see _cached
        self.log.info("video loader: media roots %s, frames %d px", [str(r) for r in self.roots], self.size_px)

    # -- /probe ------------------------------------------------------------------------------
    @requests(on="/probe")
    def probe_videos(self, docs: DocList[VideoDoc], **kwargs: Any) -> DocList[VideoDoc]:
        out = DocList[VideoDoc]()
        for doc in docs:
            try:
                path = resolve_media_path(doc.uri, self.roots)
            except MediaPathError as exc:
                out.append(self._failed(doc, exc))
                continue
            if path.is_dir():
                found = list(iter_videos(path, self.roots, self.settings.video_extensions))
                if not found:
                    out.append(self._failed(doc, MediaPathError(f"{doc.uri}: no video files in this folder")))
                for file in found:
                    out.append(self._probe_one(VideoDoc(uri=str(file), force=doc.force), file))
            else:
                out.append(self._probe_one(doc, path))
        return out

    def _probe_one(self, doc: VideoDoc, path: Path) -> VideoDoc:
        doc.path = str(path)
        try:
            self._describe(doc, path)
        except (ClipseekError, OSError) as exc:
            return self._failed(doc, exc)
        doc.status = "probed"
        return doc

    def _describe(self, doc: VideoDoc, path: Path) -> VideoInfo:
        """Fill the probe fields and the content hash of ``doc``; raises on a file that is no video."""
        info, digest, size = self._probe_and_hash(path)
        doc.content_hash = digest
        doc.path = str(path)
        doc.video_id = doc.content_hash[:16]
        doc.size_bytes = size
        doc.duration_s, doc.width_px, doc.height_px, doc.fps = info.duration_s, info.width_px, info.height_px, info.fps
        return info

    def _cached(self, path: Path) -> list:
        """[stat, probe, content hash or None] of ``path``: probed once while its size, mtime, ctime
        and inode stay the same (ctime also changes when a rewrite restores the mtime, as rsync -t
        does). A long video arrives as several time ranges, and hashing a 350 MB file again for each
        of them cost about a second a range; thumbnails probed the file each time."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
        entry = self._known.get(key)
        if entry is None:
            entry = self._known[key] = [stat, probe(path), None]
            while len(self._known) > self.KNOWN_FILES:
                self._known.popitem(last=False)
        self._known.move_to_end(key)
        return entry

    def _probe_and_hash(self, path: Path) -> tuple[VideoInfo, str, int]:
        entry = self._cached(path)
        if entry[2] is None:
            entry[2] = content_hash(path)
        return entry[1], entry[2], entry[0].st_size

    # -- /index ------------------------------------------------------------------------------
    @requests(on="/index")
    def load(self, docs: DocList[VideoDoc], **kwargs: Any) -> DocList[VideoDoc]:
        for doc in docs:
            try:
                self._load_one(doc)
            except (ClipseekError, OSError, ValueError) as exc:
                self._failed(doc, exc)
        return docs

    def _load_one(self, doc: VideoDoc) -> None:
        started = time.perf_counter()
        path = resolve_media_path(doc.uri, self.roots)
        if path.is_dir():
            raise MediaPathError(f"{doc.uri}: is a folder; /index takes files (use /probe to list a folder)")
        info = self._describe(doc, path)
        start_s = max(0.0, doc.start_s or 0.0)
        end_s = doc.end_s if doc.end_s is not None else (info.duration_s or None)
        if info.duration_s and end_s is not None:
            end_s = min(end_s, info.duration_s)
        if end_s is not None and end_s <= start_s:
            raise ValueError(f"{doc.uri}: empty time range {start_s:.3f}-{end_s:.3f} s "
                             f"(video is {info.duration_s:.3f} s)")
        span = (end_s if end_s is not None else info.duration_s) - start_s
        if span > self.settings.max_range_s:
            raise ValueError(
                f"{doc.uri}: {span:.0f} s requested, at most {self.settings.max_range_s:.0f} s per request; "
                f"split it with start_s/end_s (the clipseek client does this for you)")
        result = scan_range(path, info, self.sampling, self.size_px, start_s, end_s, self.settings.keyframe_scan,
                            self.settings.max_keyframe_gap_s)
        scan = result.scan
        if not scan.num_decoded:
            raise VideoOpenError(str(path), f"no frame could be decoded from {start_s:.2f} s on",
                                 result.stderr_tail)
        if not scan.frames:
            raise VideoOpenError(str(path), "every frame is black: nothing to index")
        if end_s is None:  # the container does not say how long the video is: the frames do
            end_s = scan.frames[-1].time_s + (1.0 / info.fps if info.fps else 0.04)
            scan.shots[-1].end_s = end_s
            doc.duration_s = end_s
        doc.start_s, doc.end_s = start_s, end_s
        doc.shots = DocList[Shot]([Shot(start_s=s.start_s, end_s=s.end_s, starts_at_cut=s.starts_at_cut)
                                   for s in scan.shots])
        doc.frames = DocList[Frame]([Frame(time_s=f.time_s, shot_index=f.shot_index, pixels=f.pixels)
                                     for f in scan.frames])
        doc.status = "decoded"
        self.log.info("%s [%.1f-%.1f s]: %d frames decoded (%s), %d shots, %d sampled in %.2f s", path, start_s,
                      end_s, result.frames_decoded, result.method, len(scan.shots), len(scan.frames),
                      time.perf_counter() - started)

    # -- /thumbnail --------------------------------------------------------------------------
    @requests(on="/thumbnail")
    def thumbnail(self, docs: DocList[Thumbnail], **kwargs: Any) -> DocList[Thumbnail]:
        for doc in docs:
            try:
                path = resolve_media_path(doc.uri, self.roots)
                jpeg = grab_jpeg(path, self._cached(path)[1], doc.time_s, doc.width_px)
                doc.jpeg_base64 = base64.b64encode(jpeg).decode("ascii")
            except (ClipseekError, OSError) as exc:
                doc.error = str(exc)
        return docs

    def _failed(self, doc: VideoDoc, exc: Exception) -> VideoDoc:
        doc.error = str(exc) or type(exc).__name__
        doc.status = "failed"
        doc.frames = DocList[Frame]()
        self.log.warning("%s", doc.error)
        return doc
