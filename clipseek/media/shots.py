"""Shot detection and frame sampling in one streaming pass over decoded frames.

Cuts come from two detectors over consecutive frames (clipseek/media/cuts.py): PySceneDetect's adaptive
content test, and a colour-histogram test for cuts between shots of equal brightness. Fades through
black are handled here: a run of near-black frames ends the shot before it, and the boundary is put
in the middle of the dark run. Frames are looked at cropped to the picture (the letterbox bars would
dilute the scores) and shrunk to ``detect_px``.

The frames need not all be there: a frame with ``follows=False`` comes after a gap (the
keyframe-guided scan skips stretches where nothing changes), and the detectors restart there; a
frame with ``cut=True`` starts a shot the guided scan placed at an encoder's scene-cut keyframe.

Sampling keeps few frames, and which ones depends on the video alone, never on the time range that
was asked for: the frames are chosen in pieces, a piece starting at each shot start and at each
multiple of ``max_gap_s`` (from the video's start) that falls at least ``max_gap_s`` into a shot. In
a piece: the first frame ``first_offset_s`` after a cut (the middle frame of a shorter shot, never a
black frame; at a piece that is no cut, its first frame), then a frame when the picture has drifted
from the last one kept (at most ``max_fps`` a second), and at the latest ``max_gap_s`` after it.
A caller that reports only [range_start_s, range_end_s) feeds frames from ``decode_start_s(...)`` to
``decode_end_s(...)`` so that the choice there is the one a scan of the whole video makes. Memory is
bounded by ``first_offset_s`` plus ``fade_window_s`` of frames, whatever the length of the video.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from clipseek.media.cuts import AdaptiveCut, ChromaCutDetector, FrameLook, drift, look_at
from clipseek.media.video import DecodedFrame
from clipseek.types import Shot

logger = logging.getLogger("clipseek.media.shots")


@dataclass(frozen=True)
class SamplingSettings:
    max_fps: float = 1.0  # at most this many sampled frames per second of video
    max_gap_s: float = 10.0  # at least one sampled frame every this many seconds within a shot
    first_offset_s: float = 0.5  # first sample this far into a shot (middle frame of shorter shots)
    drift_threshold: float = 18.0  # mean abs difference (0-255) of 16x16 grey thumbnails
    min_shot_s: float = 0.3  # shortest shot the detector reports
    adaptive_threshold: float = 3.0  # PySceneDetect AdaptiveDetector settings
    min_content_val: float = 15.0
    dark_luma: float = 24.0  # frames whose brightest 2% are darker than this (0-255) are black: never sampled
    chroma_threshold: float = 0.06  # share of pixels that change colour bin at once for a colour cut
    fade_window_s: float = 1.0  # detector cuts this close to a black run are the fade's ramp, not cuts
    detect_px: int = 112  # shot detection looks at the picture shrunk to at most this many px a side

    def __post_init__(self) -> None:
        if self.max_fps <= 0:
            raise ValueError(f"max_fps must be > 0, got {self.max_fps}")
        if self.max_gap_s <= 0:
            raise ValueError(f"max_gap_s must be > 0, got {self.max_gap_s}")
        if self.detect_px < 16:
            raise ValueError(f"detect_px must be at least 16, got {self.detect_px}")

    @property
    def settle_s(self) -> float:
        """How long after a frame its shot can still change (a fade that begins later)."""
        return self.fade_window_s

    def decode_start_s(self, range_start_s: float) -> float:
        """Where to start feeding frames so that the samples from ``range_start_s`` on are the ones a
        scan from the video's start picks: the last piece that can reach into the range starts no
        earlier than one grid step before the grid point at or before it, plus a warm-up."""
        if range_start_s <= 0:
            return 0.0
        grid = math.floor(range_start_s / self.max_gap_s) * self.max_gap_s
        return max(0.0, grid - self.max_gap_s - self.warmup_s)

    @property
    def warmup_s(self) -> float:
        return self.fade_window_s + 1.0

    def decode_end_s(self, range_end_s: float) -> float:
        """Where to stop feeding frames: shots end and fades resolve a little after the range."""
        return range_end_s + max(self.first_offset_s, self.fade_window_s) + 1.0


@dataclass
class SampledFrame:
    time_s: float
    shot_index: int
    pixels: np.ndarray


@dataclass
class ShotScan:
    """The result of a pass: shots in time order, sampled frames in time order."""

    shots: list[Shot] = field(default_factory=list)
    frames: list[SampledFrame] = field(default_factory=list)
    num_decoded: int = 0


def content_box(size_px: int, aspect: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the picture inside a ``size_px`` letterboxed square."""
    if aspect >= 1:
        h = max(1, round(size_px / aspect))
        y0 = (size_px - h) // 2
        return y0, y0 + h, 0, size_px
    w = max(1, round(size_px * aspect))
    x0 = (size_px - w) // 2
    return 0, size_px, x0, x0 + w


class FrameLooker:
    """Crop the letterbox off a frame, shrink it to ``detect_px`` and measure it."""

    def __init__(self, size_px: int, aspect: float, detect_px: int):
        self.box = content_box(size_px, aspect)
        height, width = self.box[1] - self.box[0], self.box[3] - self.box[2]
        scale = detect_px / max(height, width)
        self.shrink = (max(1, round(width * scale)), max(1, round(height * scale))) if scale < 1 else None

    def __call__(self, pixels: np.ndarray) -> FrameLook:
        y0, y1, x0, x1 = self.box
        picture = np.ascontiguousarray(pixels[y0:y1, x0:x1])
        if self.shrink is not None:  # cuts, fades and drift are whole-picture events: a quarter of the pixels will do
            picture = cv2.resize(picture, self.shrink, interpolation=cv2.INTER_AREA)
        return look_at(picture)


@dataclass
class _Seen:
    time_s: float
    pixels: np.ndarray | None  # None for black frames (never sampled)
    thumb: np.ndarray


@dataclass
class _Boundary:
    time_s: float
    by_detector: bool  # a detector cut (not a fade): a fade that follows within fade_window_s takes it back


class ShotSampler:
    """Feed frames in time order with ``push``; ``finish`` returns the ShotScan of
    [range_start_s, range_end_s) (frames outside it only inform the choice)."""

    def __init__(self, settings: SamplingSettings, fps: float, size_px: int, aspect: float,
                 range_start_s: float, range_end_s: float):
        self.settings = settings
        self.fps = fps if fps > 0 else 25.0
        self.looker = FrameLooker(size_px, aspect, settings.detect_px)
        self.range_start_s = range_start_s
        self.range_end_s = range_end_s
        min_gap = max(1, round(settings.min_shot_s * self.fps))
        self.detector = AdaptiveCut(settings.adaptive_threshold, settings.min_content_val, min_gap)
        self.chroma = ChromaCutDetector(settings.chroma_threshold, ratio=settings.adaptive_threshold,
                                        min_gap_frames=min_gap)
        self.lag = max(self.detector.window, self.chroma.window) + 1
        self.num_decoded = 0
        self._index = 0
        self._delay: deque[tuple[DecodedFrame, FrameLook]] = deque()
        self._cut_indices: set[int] = set()
        # boundaries (cuts and fades), oldest first; those not yet settled may still be taken back
        self._boundaries: list[_Boundary] = []
        self._first_time: float | None = None
        self._last_time = -math.inf
        self._dark_start: float | None = None
        self._cut_in_dark = False
        self._fade_end_t: float | None = None  # first bright frame after the last fade through black
        self._seen_content = False  # a bright frame since the last boundary
        self._settle: deque[_Seen] = deque()
        self._picker = _Picker(settings, self)

    # -- input -------------------------------------------------------------------------------
    def push(self, frame: DecodedFrame) -> None:
        look = self.looker(frame.pixels)
        if not frame.follows:
            self._gap()
        # numbered by time, not by count: after a skipped stretch the detectors' shortest-shot rule
        # (min_gap frames) must count the frames skipped too (at least one more than the last, for VFR)
        index = max(self._index, round(frame.time_s * self.fps))
        self._index = index + 1
        if frame.cut and (not self._boundaries or frame.time_s - self._boundaries[-1].time_s >=
                          self.settings.min_shot_s - 1e-9):
            self._cut_indices.add(index)  # placed by the keyframe-guided scan (the detectors were reset by the gap)
        self._cut_indices.update(self.detector.process(index, look.hsv))
        self._cut_indices.update(self.chroma.process(index, look.hist))
        self.num_decoded += 1
        self._delay.append((DecodedFrame(index, frame.time_s, frame.pixels), look))
        while len(self._delay) > self.lag:
            self._consume(*self._delay.popleft())

    def finish(self) -> ShotScan:
        while self._delay:
            self._consume(*self._delay.popleft())
        self._dark_start = None  # a dark run at the very end: no fade to place
        self._release(math.inf)
        return self._picker.finish()

    def _gap(self) -> None:
        """The next frame does not follow the last: the frames still waiting for their neighbours
        are decided without them, and the detectors start afresh."""
        while self._delay:
            self._consume(*self._delay.popleft())
        self.detector.reset()
        self.chroma.reset()

    # -- shots -------------------------------------------------------------------------------
    def _boundary(self, time_s: float, by_detector: bool) -> None:
        self._boundaries.append(_Boundary(time_s, by_detector))
        self._seen_content = False

    def _consume(self, frame: DecodedFrame, look: FrameLook) -> None:
        s = self.settings
        t = frame.time_s
        if self._first_time is None:
            self._first_time = t
        self._last_time = t
        is_cut = frame.index in self._cut_indices
        self._cut_indices.discard(frame.index)
        dark = look.luma98 < s.dark_luma
        self._settle.append(_Seen(t, None if dark else frame.pixels, look.thumb))
        if dark:
            if self._dark_start is None:
                self._dark_start = t
            self._cut_in_dark = self._cut_in_dark or is_cut
            return
        if self._dark_start is not None:
            # Content, then black, then content (or a cut on either side of the black): a fade
            # through black. The boundary goes in the middle of the dark run; detector cuts in the
            # fade-out's ramp just before the black are the fade's, not cuts.
            if self._seen_content or is_cut or self._cut_in_dark:
                while (self._boundaries and self._boundaries[-1].by_detector
                       and self._dark_start - self._boundaries[-1].time_s <= s.fade_window_s):
                    self._boundaries.pop()
                self._boundary((self._dark_start + t) / 2, by_detector=False)
                self._fade_end_t = t
            self._dark_start = None
            self._cut_in_dark = False
        elif is_cut:
            after_fade = (self._fade_end_t is not None and t - self._fade_end_t <= s.fade_window_s
                          and not (self._boundaries and self._boundaries[-1].by_detector))
            if not after_fade:
                self._boundary(t, by_detector=True)
        self._seen_content = True
        settled = (self._dark_start if self._dark_start is not None else t) - s.settle_s
        self._release(settled)

    def _release(self, until_s: float) -> None:
        """Hand the frames before ``until_s`` (whose shot can no longer change) to the picker."""
        if self._dark_start is not None:
            until_s = min(until_s, self._dark_start - self.settings.settle_s)
        while self._settle and self._settle[0].time_s < until_s:
            self._picker.take(self._settle.popleft())


class _Picker:
    """Chooses the frames to embed from settled frames (see the module docstring)."""

    def __init__(self, settings: SamplingSettings, sampler: ShotSampler):
        self.s = settings
        self.sampler = sampler
        self.next_boundary = 0
        self.shot_start: float | None = None  # time of the current shot's start (None before any frame)
        self.piece_start = 0.0
        self.piece_offset = 0.0
        self.picked_in_piece = False
        self.pending: list[_Seen] = []
        self.last_time: float | None = None
        self.last_thumb: np.ndarray | None = None
        self.picks: list[tuple[float, np.ndarray]] = []
        self.first_bright: _Seen | None = None  # in the range: the frame kept if the range gets none

    def _new_piece(self, start_s: float, offset_s: float) -> None:
        self._close_piece()
        self.piece_start, self.piece_offset = start_s, offset_s
        self.picked_in_piece = False
        self.pending = []

    def _close_piece(self) -> None:
        if not self.picked_in_piece and self.pending:
            self._pick(self.pending[len(self.pending) // 2])
        self.pending = []

    def _pick(self, seen: _Seen) -> None:
        self.picks.append((seen.time_s, seen.pixels.copy()))
        self.picked_in_piece = True
        self.last_time, self.last_thumb = seen.time_s, seen.thumb

    def take(self, seen: _Seen) -> None:
        s = self.s
        t = seen.time_s
        boundaries = self.sampler._boundaries
        if self.shot_start is None:  # the first frame fed: a shot starts here (a cut only at the video's start)
            self.shot_start = t
            self._new_piece(t, s.first_offset_s if t <= 0 else 0.0)
        while self.next_boundary < len(boundaries) and boundaries[self.next_boundary].time_s <= t:
            start = boundaries[self.next_boundary].time_s
            self.next_boundary += 1
            self.shot_start = start
            self._new_piece(start, min(s.first_offset_s, s.max_gap_s))
        grid = math.floor(t / s.max_gap_s) * s.max_gap_s
        if grid > self.piece_start and grid - self.shot_start >= s.max_gap_s - 1e-9:
            self._new_piece(grid, 0.0)
        if seen.pixels is None:  # black
            return
        if self.first_bright is None and sampler_range(self.sampler, t):
            self.first_bright = _Seen(t, seen.pixels.copy(), seen.thumb)
        if not self.picked_in_piece:
            self.pending.append(seen)
            if t - self.piece_start >= self.piece_offset - 1e-9:
                self._pick(seen)
                self.pending = []
            return
        next_grid = grid + s.max_gap_s
        if next_grid - self.shot_start >= s.max_gap_s - 1e-9 and next_grid - t < 1.0 / s.max_fps - 1e-9:
            return  # a new piece starts sooner than max_fps allows another frame: its first frame will do
        gap = t - self.last_time
        if gap >= s.max_gap_s - 1e-9:
            self._pick(seen)
        elif gap >= 1.0 / s.max_fps - 1e-9 and drift(seen.thumb, self.last_thumb) > s.drift_threshold:
            self._pick(seen)

    def finish(self) -> ShotScan:
        self._close_piece()
        sampler = self.sampler
        start, end = sampler.range_start_s, sampler.range_end_s
        cuts = [b.time_s for b in sampler._boundaries if start < b.time_s < end]
        at_start = start <= 0 or any(abs(b.time_s - start) < 1e-6 for b in sampler._boundaries)
        scan = ShotScan(num_decoded=sampler.num_decoded)
        edges = [start, *cuts, end]
        for i in range(len(edges) - 1):
            scan.shots.append(Shot(edges[i], edges[i + 1], starts_at_cut=at_start if i == 0 else True))
        picks = [(t, p) for t, p in self.picks if start <= t < end]
        if not picks and self.first_bright is not None:
            # Every frame of a short range inside a still shot may have been chosen in a range before
            # it; the index wants at least one frame per range, so the range's first frame goes.
            picks = [(self.first_bright.time_s, self.first_bright.pixels)]
        for time_s, pixels in picks:
            index = sum(1 for c in cuts if c <= time_s)
            scan.frames.append(SampledFrame(time_s, index, pixels))
        return scan


def sampler_range(sampler: ShotSampler, time_s: float) -> bool:
    return sampler.range_start_s <= time_s < sampler.range_end_s


def scan_frames(frames: Iterable[DecodedFrame], settings: SamplingSettings, fps: float, size_px: int,
                aspect: float, range_start_s: float, range_end_s: float) -> ShotScan:
    """Run the sampler over all ``frames``; the shots cover [range_start_s, range_end_s)."""
    sampler = ShotSampler(settings, fps, size_px, aspect, range_start_s, range_end_s)
    for frame in frames:
        sampler.push(frame)
    return sampler.finish()
