"""The media layer's facade: the videos under the media folders, as the engine reads them.

``MediaSource`` resolves a path under the media roots, lists a folder's videos, probes and hashes a
file (once while it is unchanged), reads one time range (the range rules below, then
clipseek.media.scan: shots and the frames to embed) and grabs thumbnails. The video loader executor
only turns its answers into documents.

Range rules: a range starts at 0 or later, ends at the video's end at the latest (the end of the
video when not given), must not be empty and may span at most ``max_range_s`` (the client splits long
videos); a video whose container does not say how long it is ends with its last frame.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from clipseek.errors import MediaPathError, VideoOpenError
from clipseek.media.ffmpeg_cmd import VideoInfo
from clipseek.media.hardware import decode_path
from clipseek.media.roots import VIDEO_EXTENSIONS, iter_videos, resolve_media_path, resolve_roots
from clipseek.media.scan import RangeScan, scan_range
from clipseek.media.shots import SamplingSettings
from clipseek.media.video import content_hash, grab_jpeg, probe


@dataclass(frozen=True)
class VideoFile:
    """A video file under the media roots: where it is, what ffprobe says, and its content."""

    path: Path
    info: VideoInfo
    content_hash: str
    size_bytes: int

    @property
    def video_id(self) -> str:
        return self.content_hash[:16]


@dataclass
class RangeRead:
    """One time range of a video, read: its shots and the frames chosen in it."""

    file: VideoFile
    start_s: float
    end_s: float
    duration_s: float  # the video's (from its frames when the container does not say)
    result: RangeScan


def plan_range(uri: str, info: VideoInfo, start_s: float | None, end_s: float | None,
               max_range_s: float) -> tuple[float, float | None]:
    """The range to read (end None: to the last frame, the duration being unknown); ValueError naming
    the problem for an empty, reversed or too long range."""
    for name, value in (("start_s", start_s), ("end_s", end_s)):
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{uri}: {name} must be a finite number of seconds, got {value!r}")
    start = max(0.0, start_s or 0.0)
    end = end_s if end_s is not None else (info.duration_s or None)
    if info.duration_s and end is not None:
        end = min(end, info.duration_s)
    if end is not None and end <= start:
        raise ValueError(f"{uri}: empty time range {start:.3f}-{end:.3f} s (video is {info.duration_s:.3f} s)")
    span = (end if end is not None else info.duration_s) - start
    if span > max_range_s:
        raise ValueError(f"{uri}: {span:.0f} s requested, at most {max_range_s:.0f} s per request; split it with "
                         f"start_s/end_s (the clipseek client does this for you)")
    return start, end


class MediaSource:
    KNOWN_FILES = 1024  # probes and hashes remembered

    def __init__(self, roots: list[str], sampling: SamplingSettings, size_px: int, max_range_s: float = 900.0,
                 extensions: list[str] | tuple[str, ...] = VIDEO_EXTENSIONS, keyframe_scan: bool = True,
                 max_keyframe_gap_s: float = 10.0, keyframe_shortcuts: bool = True, hwaccel: str = "auto"):
        self.roots = resolve_roots(roots)
        # the full decoder's hardware path (auto/cuda/none), detected here: a bad setting, or "cuda" with
        # an ffmpeg built without it, fails at start-up, not on the first video
        self.decode = decode_path(hwaccel)
        self.sampling, self.size_px, self.max_range_s = sampling, size_px, max_range_s
        self.extensions = list(extensions)
        self.keyframe_scan, self.max_keyframe_gap_s = keyframe_scan, max_keyframe_gap_s
        self.keyframe_shortcuts = keyframe_shortcuts
        self._known: OrderedDict[tuple, list] = OrderedDict()  # see _cached
        self._known_lock = threading.Lock()  # the loader serves ranges concurrently (flow.yml)

    def resolve(self, uri: str) -> Path:
        return resolve_media_path(uri, self.roots)

    def expand(self, uri: str) -> Iterator[Path]:
        """The file ``uri`` names, or the videos of the folder it names (recursively)."""
        path = self.resolve(uri)
        if not path.is_dir():
            yield path
            return
        found = list(iter_videos(path, self.roots, self.extensions))
        if not found:
            raise MediaPathError(f"{uri}: no video files in this folder")
        yield from found

    def _cached(self, path: Path) -> list:
        """[stat, probe, content hash or None] of ``path``: probed once while its size, mtime, ctime
        and inode stay the same (ctime also changes when a rewrite restores the mtime, as rsync -t
        does). A long video arrives as several time ranges, and hashing a 350 MB file again for each
        of them cost about a second a range; thumbnails probed the file each time."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
        with self._known_lock:
            entry = self._known.get(key)
            if entry is not None:
                self._known.move_to_end(key)
                return entry
        probed = [stat, probe(path), None]  # outside the lock: ranges of other files go on meanwhile
        with self._known_lock:
            entry = self._known.setdefault(key, probed)
            self._known.move_to_end(key)
            while len(self._known) > self.KNOWN_FILES:
                self._known.popitem(last=False)
        return entry

    def describe(self, path: Path) -> VideoFile:
        """Probe and hash a resolved file (raises on a file that is no video)."""
        entry = self._cached(path)
        if entry[2] is None:
            entry[2] = content_hash(path)
        return VideoFile(path, entry[1], entry[2], entry[0].st_size)

    def read_range(self, uri: str, start_s: float | None, end_s: float | None) -> RangeRead:
        path = self.resolve(uri)
        if path.is_dir():
            raise MediaPathError(f"{uri}: is a folder; /index takes files (use /probe to list a folder)")
        file = self.describe(path)
        start, end = plan_range(uri, file.info, start_s, end_s, self.max_range_s)
        result = scan_range(path, file.info, self.sampling, self.size_px, start, end, self.keyframe_scan,
                            self.max_keyframe_gap_s, keyframe_shortcuts=self.keyframe_shortcuts, decode=self.decode)
        scan = result.scan
        if not scan.num_decoded:
            raise VideoOpenError(str(path), f"no frame could be decoded from {start:.2f} s on", result.stderr_tail)
        if not scan.frames:
            raise VideoOpenError(str(path), "every frame is black: nothing to index")
        duration = file.info.duration_s
        if end is None:  # the container does not say how long the video is: the frames do
            end = scan.frames[-1].time_s + (1.0 / file.info.fps if file.info.fps else 0.04)
            scan.shots[-1] = replace(scan.shots[-1], end_s=end)
            duration = end
        return RangeRead(file, start, end, duration, result)

    def thumbnail(self, uri: str, time_s: float, width_px: int) -> bytes:
        path = self.resolve(uri)
        return grab_jpeg(path, self._cached(path)[1], time_s, width_px)
