"""Running ffprobe and ffmpeg: probe a file, stream its frames, grab one frame as JPEG.

Decoding is streaming: frames are read from ffmpeg's stdout one at a time at the encoder's small
size, so memory does not grow with the length of the video.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipseek.errors import VideoOpenError
from clipseek.media.ffmpeg_cmd import (
    VideoInfo,
    decode_argv,
    parse_probe,
    parse_showinfo,
    probe_argv,
    thumbnail_argv,
)
from clipseek.media.hardware import DecodePath, looks_like_hw_failure

logger = logging.getLogger("clipseek.media.video")

PROBE_TIMEOUT_S = 60.0
HASH_CHUNK_BYTES = 4 << 20


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes (hex): the same content is indexed once, wherever it lives."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def probe(path: Path) -> VideoInfo:
    """Probe ``path``; raises VideoOpenError naming the file and the reason."""
    if path.is_dir():
        raise VideoOpenError(str(path), "is a folder, not a video file")
    size = path.stat().st_size
    if size == 0:
        raise VideoOpenError(str(path), "file is empty")
    try:
        result = subprocess.run(probe_argv(path), capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise VideoOpenError(str(path), "ffprobe is not installed (install ffmpeg)") from None
    except subprocess.TimeoutExpired:
        raise VideoOpenError(str(path), f"ffprobe took over {PROBE_TIMEOUT_S:.0f} s") from None
    stderr = result.stderr.decode(errors="replace")
    if result.returncode != 0:
        raise VideoOpenError(str(path), "not a readable video file (corrupt, truncated or not a video)", stderr)
    try:
        info = parse_probe(json.loads(result.stdout or b"{}"))
    except json.JSONDecodeError:
        raise VideoOpenError(str(path), "ffprobe printed no usable description", stderr) from None
    if info is None:
        raise VideoOpenError(str(path), "has no video stream (audio-only or not a video)")
    if info.width_px <= 0 or info.height_px <= 0:
        raise VideoOpenError(str(path), "video stream has no picture size")
    return info


@dataclass
class DecodedFrame:
    index: int  # position in this decode, from 0
    time_s: float  # presentation time, seconds from the start of the video
    pixels: np.ndarray  # uint8 size x size x 3, RGB
    follows: bool = True  # False when frames before this one were skipped (a gap in a sparse scan)
    cut: bool = False  # a shot starts here, though the frames before it were skipped (see keyscan.py)


class FrameReader:
    """Iterate the frames of [start_s, end_s) of a video, letterboxed to ``size_px`` squares.

    ffmpeg writes raw RGB to stdout and one showinfo line per frame (its real pts) to stderr; a
    thread reads stderr so neither pipe can fill up and stall the other.
    """

    def __init__(self, path: Path, info: VideoInfo, size_px: int, start_s: float = 0.0,
                 end_s: float | None = None, ffmpeg_bin: str = "ffmpeg", prefetch_frames: int = 64,
                 decode: DecodePath | None = None):
        self.path = path
        self.prefetch_frames = max(1, prefetch_frames)  # decoded ahead of the caller (64 x 150 KB at 224 px)
        self.info = info
        self.size_px = size_px
        self.start_s = max(0.0, start_s)
        self.end_s = end_s
        self.ffmpeg_bin = ffmpeg_bin
        # decode: the process's hardware decode path (clipseek.media.hardware); None: software
        self.decode = decode
        self.hwaccel = decode.hwaccel if decode is not None else None  # what the last attempt used
        self.argv = decode_argv(path, info, size_px, self.start_s, end_s, ffmpeg_bin, self.hwaccel)
        self._stderr_tail: deque[str] = deque(maxlen=20)  # the last attempt's ffmpeg messages

    @staticmethod
    def _read_stderr(stream, times: queue.Queue, tail: deque) -> None:
        """Frame times from showinfo into ``times`` (then None), other lines into ``tail``: one
        attempt's own queue and tail, so a late reader of an earlier attempt cannot mix into the next."""
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            parsed = parse_showinfo(line)
            if parsed is not None:
                times.put(parsed[1])
            elif line:
                tail.append(line)
        times.put(None)

    def _read_stdout(self, stream, frame_bytes: int, frames: queue.Queue, stop: threading.Event) -> None:
        """Read whole frames into ``frames`` (bounded) until EOF or ``stop``; then put None."""
        def put(item: bytes | None) -> bool:
            while not stop.is_set():
                try:
                    frames.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            while not stop.is_set():
                data = stream.read(frame_bytes)
                if len(data) < frame_bytes or not put(data):
                    break
        except (OSError, ValueError):  # the pipe was closed under us: the consumer stopped early
            pass
        put(None)

    def __iter__(self) -> Iterator[DecodedFrame]:
        handed, returncode = yield from self._attempt(0, None)
        if returncode != 0 and self.hwaccel and looks_like_hw_failure(self.stderr_tail):
            # The hardware decoder failed: it could not be set up (no driver, no device left: ffmpeg
            # stops before its first frame), or it broke down in the middle. The range is decoded again
            # in software, from its start, and the frames already handed on are skipped. The decision
            # rests on this attempt's own hwaccel and messages, so ranges that failed side by side all
            # retry; the process's decode path records the failure once (software from now on).
            if self.decode is not None:
                self.decode.note_failure(self.stderr_tail)
            last_s = self._last_time_s if handed else None
            self.hwaccel = None
            self.argv = decode_argv(self.path, self.info, self.size_px, self.start_s, self.end_s, self.ffmpeg_bin)
            more, returncode = yield from self._attempt(handed, last_s)
            handed += more
        if handed == 0 and returncode != 0:
            raise VideoOpenError(str(self.path), "ffmpeg could not decode the video", self.stderr_tail)
        if returncode != 0:
            logger.warning("%s: ffmpeg stopped with code %s after %d frames: %s", self.path, returncode,
                           handed, self._stderr_tail[-1] if self._stderr_tail else "")

    def _attempt(self, first_index: int, after_s: float | None) -> Iterator[DecodedFrame]:
        """One ffmpeg run of ``self.argv``, handing on the frames later than ``after_s`` (None: all),
        numbered from ``first_index``; returns (frames handed on, ffmpeg's exit code)."""
        frame_bytes = self.size_px * self.size_px * 3
        times: queue.Queue[float | None] = queue.Queue()
        self._stderr_tail = tail = deque(maxlen=20)
        try:
            process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise VideoOpenError(str(self.path), "ffmpeg is not installed") from None
        reader = threading.Thread(target=self._read_stderr, args=(process.stderr, times, tail), daemon=True)
        reader.start()
        # Frames are read on a thread into a bounded queue, so ffmpeg keeps decoding while the
        # caller works on the frames it has (a pipe holds less than one frame: without the queue,
        # ffmpeg would wait whenever the caller does).
        frames: queue.Queue[bytes | None] = queue.Queue(maxsize=self.prefetch_frames)
        stop = threading.Event()
        pump = threading.Thread(target=self._read_stdout, args=(process.stdout, frame_bytes, frames, stop),
                                daemon=True)
        pump.start()
        handed = 0
        at_end = False
        try:
            while True:
                data = frames.get()
                if data is None:
                    at_end = True
                    break
                pts = times.get(timeout=60)
                if pts is None:  # stderr closed before the frame's log line: should not happen
                    break
                time_s = max(0.0, pts - self.info.start_time_s)
                if self.end_s is not None and time_s >= self.end_s:
                    continue
                if after_s is not None and time_s <= after_s + 1e-9:
                    continue  # handed on by the attempt before
                pixels = np.frombuffer(data, dtype=np.uint8).reshape(self.size_px, self.size_px, 3)
                self._last_time_s = time_s
                yield DecodedFrame(first_index + handed, time_s, pixels)
                handed += 1
        finally:
            stop.set()
            if at_end:  # ffmpeg closed its output: let it exit by itself, so its exit code is its own
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            if process.poll() is None:
                process.kill()
            returncode = process.wait()
            pump.join(timeout=5)
            process.stdout.close()
            reader.join(timeout=5)
            process.stderr.close()
        return handed, returncode

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr_tail)


def grab_jpeg(path: Path, info: VideoInfo, time_s: float, width_px: int = 320) -> bytes:
    """The frame at ``time_s`` as JPEG bytes; raises VideoOpenError."""
    width_px = max(16, min(int(width_px), 1920))
    result = subprocess.run(thumbnail_argv(path, info, time_s, width_px), capture_output=True,
                            timeout=PROBE_TIMEOUT_S, check=False)
    if result.returncode != 0 or not result.stdout:
        raise VideoOpenError(str(path), f"no frame at {time_s:.3f} s", result.stderr.decode(errors="replace"))
    return result.stdout
