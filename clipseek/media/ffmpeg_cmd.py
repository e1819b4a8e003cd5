"""Pure functions that build ffmpeg/ffprobe argv lists and parse what those programs print.

Nothing here runs a process, so all of it is tested without ffmpeg. File names are passed as
``file:<absolute path>`` so that a name that looks like an option or a protocol ("-i.mp4",
"http:x.mp4") is read as a plain file, and argv lists never go through a shell.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg

SHOWINFO_RE = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:\s*(-?[0-9.eE+-]+)")


def file_url(path: str | Path) -> str:
    """``file:`` URL for an absolute path, so ffmpeg treats it as a local file whatever its name."""
    return "file:" + str(Path(path).absolute())


@dataclass(frozen=True)
class VideoInfo:
    """What ffprobe says about the video stream clipseek will read."""

    stream_index: int  # absolute stream index in the container
    width_px: int  # display size, rotation applied
    height_px: int
    fps: float  # average frame rate (0 when unknown)
    duration_s: float  # 0 when the container does not say
    start_time_s: float  # presentation time of the first frame; times we report are relative to it
    rotation_deg: int
    codec: str
    num_frames: int  # 0 when the container does not say
    # the container's own tags (ffprobe ``format.tags``: title, comment, genre, ...), names lower-cased
    tags: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def aspect(self) -> float:
        return self.width_px / self.height_px if self.height_px else 1.0


def probe_argv(path: str | Path, ffprobe: str = "ffprobe") -> list[str]:
    """ffprobe argv printing the streams and the format of ``path`` as JSON."""
    return [ffprobe, "-v", "error", "-print_format", "json", "-show_streams", "-show_format",
            file_url(path)]


def _float(value: Any, default: float = 0.0) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return default
    return result if math.isfinite(result) else default


def _rate(value: Any) -> float:
    try:
        rate = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(rate) if rate > 0 else 0.0


def _rotation(stream: dict) -> int:
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return int(round(_float(side["rotation"]))) % 360
    tags = stream.get("tags") or {}
    return int(round(_float(tags.get("rotate", 0)))) % 360


def pick_video_stream(streams: list[dict]) -> dict | None:
    """The stream to index: a real video stream (not cover art), the default one, else the largest."""
    videos = [
        s for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    if not videos:
        return None
    return max(videos, key=lambda s: (bool((s.get("disposition") or {}).get("default")),
                                      int(s.get("width") or 0) * int(s.get("height") or 0)))


def parse_probe(probe: dict) -> VideoInfo | None:
    """VideoInfo from ffprobe's JSON, or None when there is no video stream."""
    stream = pick_video_stream(probe.get("streams") or [])
    if stream is None:
        return None
    fmt = probe.get("format") or {}
    rotation = _rotation(stream)
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if rotation in (90, 270):
        width, height = height, width
    fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    duration = _float(fmt.get("duration")) or _float(stream.get("duration"))
    start = _float(fmt.get("start_time"), _float(stream.get("start_time")))
    return VideoInfo(
        stream_index=int(stream.get("index", 0)),
        width_px=width,
        height_px=height,
        fps=fps,
        duration_s=max(0.0, duration),
        start_time_s=start,
        rotation_deg=rotation,
        codec=str(stream.get("codec_name") or ""),
        num_frames=int(_float(stream.get("nb_frames"))),
        tags=format_tags(fmt),
    )


def format_tags(fmt: dict) -> dict[str, str]:
    """The container's tags from ffprobe's ``format`` object, names lower-cased (Matroska writes
    ``TITLE``, MP4 ``title``); values as text, the first of a name that differs only in case kept."""
    tags: dict[str, str] = {}
    raw = fmt.get("tags")
    if not isinstance(raw, dict):
        return tags
    for key, value in raw.items():
        name = str(key).strip().lower()
        if name and value is not None and name not in tags:
            tags[name] = str(value)
    return tags


def frame_filter_args(size_px: int) -> list[tuple[str, tuple, dict]]:
    """The video filters that shape each frame: fit in a ``size_px`` square, pad black, log pts.

    Area scaling averages each output pixel's footprint (an antialiased reduction, where bilinear
    samples a few source pixels); at 1280x720 -> 224 px the two cost the same here
    (bench/loader_parts.py).
    """
    return [
        ("scale", (size_px, size_px), {"force_original_aspect_ratio": "decrease", "flags": "area"}),
        ("pad", (size_px, size_px, "(ow-iw)/2", "(oh-ih)/2"), {}),
        ("setsar", ("1",), {}),
        ("format", ("rgb24",), {}),
        # showinfo logs each frame's real pts to stderr: variable frame rates stay exact.
        ("showinfo", (), {}),
    ]


def decode_argv(path: str | Path, info: VideoInfo, size_px: int, start_s: float = 0.0,
                end_s: float | None = None, ffmpeg_bin: str = "ffmpeg", hwaccel: str | None = None) -> list[str]:
    """ffmpeg argv that writes every frame of [start_s, end_s) of the chosen stream to stdout as raw
    RGB, letterboxed to ``size_px``; frame times come from showinfo on stderr (see SHOWINFO_RE).

    ``hwaccel`` (e.g. ``cuda``, clipseek.media.hardware): decode on that device; each frame is copied
    back to system memory, so the filters and the pipe are the same as in software."""
    input_kwargs: dict[str, Any] = {}
    if hwaccel:
        input_kwargs["hwaccel"] = hwaccel
    if start_s > 0:
        input_kwargs["ss"] = f"{start_s:.6f}"  # input seeking: fast, and exact since ffmpeg 2.1
    if end_s is not None:
        input_kwargs["t"] = f"{max(0.0, end_s - start_s):.6f}"
    stream = ffmpeg.input(file_url(path), **input_kwargs)[str(info.stream_index)]
    for name, args, kwargs in frame_filter_args(size_px):
        stream = stream.filter(name, *args, **kwargs)
    out = ffmpeg.output(stream, "pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough",
                        copyts=None, an=None, sn=None, dn=None)
    return [ffmpeg_bin, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info",
            *out.get_args()]


def thumbnail_argv(path: str | Path, info: VideoInfo, time_s: float, width_px: int,
                   ffmpeg_bin: str = "ffmpeg") -> list[str]:
    """ffmpeg argv that writes one JPEG of the frame at ``time_s`` to stdout."""
    stream = ffmpeg.input(file_url(path), ss=f"{max(0.0, time_s):.6f}")[str(info.stream_index)]
    stream = stream.filter("scale", width_px, -2)
    out = ffmpeg.output(stream, "pipe:", vframes=1, format="image2", vcodec="mjpeg", **{"q:v": 4})
    return [ffmpeg_bin, "-nostdin", "-hide_banner", "-loglevel", "error", *out.get_args()]


def clip_argv(path: str | Path, info: VideoInfo, start_s: float, end_s: float, out_path: str | Path,
              ffmpeg_bin: str = "ffmpeg") -> list[str]:
    """ffmpeg argv that cuts [start_s, end_s) frame-accurately (re-encoding, not a keyframe-snapped
    stream copy) into an MP4 that browsers play."""
    duration = max(0.0, end_s - start_s)
    source = ffmpeg.input(file_url(path), ss=f"{max(0.0, start_s):.6f}", t=f"{duration:.6f}")
    video = source[str(info.stream_index)]
    audio = source["a?"]
    out = ffmpeg.output(video, audio, file_url(out_path), vcodec="libx264", preset="veryfast", crf=20,
                        pix_fmt="yuv420p", acodec="aac", movflags="+faststart")
    return [ffmpeg_bin, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *out.get_args()]


def parse_showinfo(line: str) -> tuple[int, float] | None:
    """(frame number, pts_time) from a showinfo log line, or None for other lines."""
    match = SHOWINFO_RE.search(line)
    if not match:
        return None
    return int(match.group(1)), float(match.group(3))
