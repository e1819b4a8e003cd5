"""Keyframe-guided decoding: decode only the frames that shot detection and sampling need.

One pass over the packets of a time range (PyAV, in-process). Every keyframe is decoded (it needs no
other frame); the frames between two keyframes are decoded only when something may happen there:

- the two keyframes look different (the same adaptive content test and colour test as the cut
  detectors, at keyframe distance, against the change between the neighbouring keyframes, so a
  steadily moving shot does not count), or one of them is black (a fade);
- the packet sizes jump (``packet_change_times``): the first frame of a new shot cannot be
  predicted from the one before, so the encoder spends as much on it as on a keyframe, or the
  level of the sizes changes at once (a cut to a flat picture);
- no keyframe for ``max_keyframe_gap_s``: long GOPs are decoded in full;
- the next keyframe came early (the encoder's own scene cut, below), the two keyframes differ at all,
  and neither neighbouring stretch spans the encoder's regular keyframe interval (the length most
  stretches have): where shots are shorter than that interval every keyframe sits on a cut, and a cut
  does not stand out from its neighbouring keyframe pairs, which are cuts too.

A stretch that is decoded is decoded from its keyframe to a few frames past the next keyframe (or,
when only a packet jump asked for it and the keyframes agree, to a few frames past the jump), so a
cut is placed to the frame by the detectors (clipseek/media/cuts.py). Elsewhere the keyframes stand for
the stretch, and a frame after a skipped stretch carries ``follows=False``.

Where the stream itself marks the cut, less is decoded (``keyframe_cuts``, ``stop_after_jump``; the
loader's setting ``keyframe_shortcuts``):

- The encoder's own scene-cut keyframe. Encoders such as x264 put a keyframe every ``keyint`` frames
  and, at a scene cut, one early (x264's ``scenecut``). A keyframe that comes sooner after the one
  before it than a neighbouring keyframe did after its own (by a frame or more) was placed early; when
  the two keyframes around such a stretch differ as a cut does (the tests above) and no packet size
  jumps inside it (nothing else happened there), the cut is that keyframe, to the frame
  (``cut=True`` on it). The stretch is decoded only for the frames the sampler may take from it (its
  first ``pick_offset_s``), and not at all when the stretch before it was skipped (no shot starts at
  its keyframe then). Streams without early keyframes (``-sc_threshold 0``, fixed-GOP cameras) never
  take this path.
- A stretch whose keyframes differ and whose packet sizes show the cut is decoded to a few frames past
  the last jump; if that frame already looks like the next keyframe, the rest is not decoded.

Streams with no usable structure are left to the full decoder (``structure_ok``): intra-only codecs
(every packet a keyframe) and files PyAV cannot read.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipseek.media.cuts import FrameLook, chroma_change, content_change
from clipseek.media.ffmpeg_cmd import VideoInfo
from clipseek.media.video import DecodedFrame

logger = logging.getLogger("clipseek.media.keyscan")

TRAIL_FRAMES = 3  # decoded past a suspected cut, so the detectors see its neighbours
KEY_CUT = -math.inf  # _decode_until: decode nothing, the next keyframe starts a shot
SIZE_FLOOR_BYTES = 64  # packet sizes below this are all "nothing changed"
SIZE_WINDOW = 4  # frames each side for the packet-size tests


@dataclass(frozen=True)
class GuideSettings:
    max_keyframe_gap_s: float = 10.0  # a longer stretch without a keyframe is decoded in full
    spike_log2: float = 1.5  # a frame 2^x times larger than every frame around it is a suspected cut
    level_log2: float = 1.5  # sizes that change level 2^x at once mark a suspected cut
    adaptive_threshold: float = 3.0  # keyframe test: change vs the neighbouring keyframe pairs
    min_content_val: float = 15.0
    chroma_threshold: float = 0.06
    dark_luma: float = 24.0
    cut_chroma: float = 0.25  # keyframes whose colours differ this much (0-1) are in different shots
    moving_ratio: float = 0.15  # frames costing this share of their keyframe: a moving picture
    keyframe_cuts: bool = True  # an encoder's early keyframe between keyframes that differ is the cut
    stop_after_jump: bool = True  # keyframes that differ, a packet jump: stop past it if the rest agrees
    pick_offset_s: float = 0.5  # the sampler's first frame of a shot comes this long after its cut


def packet_change_times(times: np.ndarray, sizes: np.ndarray, keys: np.ndarray,
                        floor: int = SIZE_FLOOR_BYTES, window: int = SIZE_WINDOW, spike_log2: float = 1.5,
                        level_log2: float = 1.5) -> list[float]:
    """Times (presentation order) of non-key frames whose packet is much larger than every frame
    ``window`` each side (an unpredictable frame), or where the largest packet of the next ``window``
    frames differs much from that of the last ``window`` (the kind of picture changed)."""
    order = np.argsort(times)
    # Python floats and statistics.median: the same values as numpy's scalars and np.median, at a
    # fraction of the cost on these few-element lists (this ran once per packet)
    t = times[order].tolist()
    logs = np.log2(sizes[order].astype(np.float64) + floor).tolist()
    key = keys[order].tolist()
    found: list[float] = []
    n = len(t)
    for j in range(n):
        if key[j]:
            continue
        before = [logs[k] for k in range(max(0, j - window), j) if not key[k]]
        after = [logs[k] for k in range(j + 1, min(n, j + 1 + window)) if not key[k]]
        if not before:
            continue
        if after and logs[j] - max(max(before), max(after)) >= spike_log2:
            found.append(float(t[j]))
        elif len(before) == window and (
                abs(statistics.median([logs[j], *after]) - statistics.median(before)) >= level_log2):
            found.append(float(t[j]))
    return found


class FrameShaper:
    """A decoded frame as the loader's square RGB: rotated upright, scaled (area) and letterboxed,
    as the ffmpeg command line does it (clipseek.ffmpeg_cmd.frame_filter_args)."""

    def __init__(self, info: VideoInfo, size_px: int):
        self.size_px = size_px
        self.quarter_turns = (info.rotation_deg // 90) % 4  # counter-clockwise turns of np.rot90
        scale = min(size_px / info.width_px, size_px / info.height_px)
        out_w, out_h = max(1, round(info.width_px * scale)), max(1, round(info.height_px * scale))
        self.scaled = (out_h, out_w) if self.quarter_turns % 2 else (out_w, out_h)  # before rotation
        self.offset = ((size_px - out_h) // 2, (size_px - out_w) // 2)
        # one scaler for every frame: VideoFrame.reformat makes a new one (and a new swscale context) per
        # frame; reused, the loader scanned 180 s of the benchmark video in 6.5 s instead of 8.6 (same pixels)
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()

    def __call__(self, frame) -> np.ndarray:
        width, height = self.scaled
        rgb = self._reformatter.reformat(frame, width, height, "rgb24", interpolation="AREA").to_ndarray()
        if self.quarter_turns:
            rgb = np.rot90(rgb, self.quarter_turns)
        canvas = np.zeros((self.size_px, self.size_px, 3), np.uint8)
        y, x = self.offset
        canvas[y:y + rgb.shape[0], x:x + rgb.shape[1]] = rgb
        return canvas


@dataclass
class _Interval:
    """The packets from one keyframe up to (not including) the next."""

    key_time: float
    key_pixels: np.ndarray
    key_look: FrameLook
    packets: list = field(default_factory=list)  # av.Packet, decode order
    times: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    keys: list[bool] = field(default_factory=list)
    end_time: float | None = None  # the next keyframe's time; None while open or at the end of the file
    change_to_next: tuple[float, float] | None = None  # (content, chroma) change to the next keyframe


@dataclass
class GuideStats:
    keyframes: int = 0
    intervals: int = 0
    intervals_decoded: int = 0
    frames_decoded: int = 0  # by the dense decoder (keyframes not counted)
    keyframe_cuts: int = 0  # stretches not decoded: the encoder's early keyframe is the cut
    stopped_after_jump: int = 0  # stretches decoded only to just past their cut


class GuidedReader:
    """Iterate the frames of [start_s, end_s) that the shot scan needs (see the module docstring)."""

    def __init__(self, path: Path, info: VideoInfo, size_px: int, start_s: float = 0.0,
                 end_s: float | None = None, settings: GuideSettings | None = None,
                 look=None, fps: float | None = None):
        self.path = path
        self.info = info
        self.size_px = size_px
        self.start_s = max(0.0, start_s)
        self.end_s = end_s
        self.settings = settings or GuideSettings()
        self.look = look  # pixels -> FrameLook (the sampler's FrameLooker)
        self.fps = fps or info.fps or 25.0
        self.stats = GuideStats()
        self._emitted_until = -math.inf
        self._emitted_index = 0
        self._key_cuts: list[float] = []  # times of keyframes that start a shot (KEY_CUT), not yet emitted
        self._skipped = False  # the last stretch settled was not decoded (its keyframes alike)
        self._lengths: Counter[int] = Counter()  # stretch lengths seen, in frames: the encoder's regular one recurs

    # -- decisions -----------------------------------------------------------------------------
    def _dark(self, look: FrameLook) -> bool:
        return look.luma98 < self.settings.dark_luma

    def _decode_until(self, interval: _Interval, previous: _Interval | None,
                      following: _Interval | None) -> tuple[float | None, float | None]:
        """How far to decode the stretch after ``interval``'s keyframe: None (not at all), a time,
        +inf (through the next keyframe and a few frames past it), or KEY_CUT (the next keyframe starts a
        shot: see _settle); and, with +inf, where to stop instead if the picture already looks like the
        next keyframe there (just past the last packet jump; None: nowhere)."""
        s = self.settings
        if interval.end_time is None or interval.end_time - interval.key_time > s.max_keyframe_gap_s:
            return math.inf, None
        nxt = following.key_look if following is not None else None
        if self._dark(interval.key_look) or (nxt is not None and self._dark(nxt)):
            return math.inf, None
        content, chroma = interval.change_to_next
        jumps = packet_change_times(np.array(interval.times), np.array(interval.sizes), np.array(interval.keys),
                                    spike_log2=s.spike_log2, level_log2=s.level_log2)
        moving = len(interval.sizes) > 1 and np.mean(interval.sizes[1:]) > s.moving_ratio * interval.sizes[0]
        around = [iv.change_to_next[0] for iv in (previous, following) if iv is not None and iv.change_to_next]
        apart = chroma >= s.cut_chroma  # colours this far apart: different shots
        stands_out = content >= s.min_content_val and (not around or content >= s.adaptive_threshold * min(around))
        differs = content >= s.min_content_val or chroma >= s.chroma_threshold
        still = not moving and differs
        # The encoder put the next keyframe early (its own scene-cut decision), the two keyframes differ, and
        # no neighbouring stretch spans the encoder's regular keyframe interval: decoded, so the detectors
        # judge it frame by frame. Where every keyframe sits on a cut (shots shorter than the encoder's
        # keyframe interval) the neighbouring keyframe pairs are cuts too, so a cut does not stand out from
        # them (second renderer's footage: a small blue star -> a large white star, tests/test_keyscan.py);
        # next to a regular stretch the test above is sound and nothing more is decoded.
        early = self._placed_early(interval, previous, following)
        unreferenced = early and differs and not self._regular_neighbour(previous, following)
        if apart or stands_out or still or unreferenced:  # (still: something happened in a still stretch)
            if (apart or stands_out) and not jumps and early and s.keyframe_cuts:
                return KEY_CUT, None  # (not for a still stretch alone: a slow change in it is no cut)
            past_jump = max(jumps) + (TRAIL_FRAMES + 0.5) / self.fps if jumps else None
            return math.inf, past_jump if s.stop_after_jump else None
        if jumps:
            return max(jumps) + (TRAIL_FRAMES + 0.5) / self.fps, None
        return None, None

    def _frames(self, interval: _Interval | None) -> int | None:
        if interval is None or interval.end_time is None:
            return None
        return round((interval.end_time - interval.key_time) * self.fps)

    def _regular_neighbour(self, previous: _Interval | None, following: _Interval | None) -> bool:
        """Whether a neighbouring stretch is as long as the encoder's regular keyframe interval: the length
        that most stretches seen so far had, seen at least three times (none in a stream whose keyframes
        all sit on cuts)."""
        if not self._lengths:
            return False
        length, count = self._lengths.most_common(1)[0]
        return count >= 3 and any(self._frames(iv) == length for iv in (previous, following))

    def _placed_early(self, interval: _Interval, previous: _Interval | None, following: _Interval | None) -> bool:
        """True when the keyframe ending ``interval`` came sooner than the encoder's regular interval: a
        neighbouring stretch (each a whole one, between two keyframes) is longer by a frame or more."""
        length = interval.end_time - interval.key_time
        others = [iv.end_time - iv.key_time for iv in (previous, following)
                  if iv is not None and iv.end_time is not None]
        return any(other - length >= 1.0 / self.fps - 1e-6 for other in others)

    # -- decoding ------------------------------------------------------------------------------
    def _emit(self, time_s: float, pixels: np.ndarray, follows: bool) -> Iterator[DecodedFrame]:
        if time_s <= self._emitted_until:
            return
        if self.end_s is not None and time_s >= self.end_s:
            return
        if time_s < self.start_s:
            self._emitted_until = time_s  # decoded for context only (a stretch begins before the range)
            return
        self._emitted_until = time_s
        cut = any(abs(time_s - t) < 1e-6 for t in self._key_cuts)
        if cut:
            self._key_cuts = [t for t in self._key_cuts if t > time_s + 1e-6]
        yield DecodedFrame(self._emitted_index, time_s, pixels, follows and not cut, cut)
        self._emitted_index += 1

    def _agrees_with(self, pixels: np.ndarray, key: _Interval) -> bool:
        """The decoded frame and the keyframe of ``key`` look alike (neither detector's test would
        part them at any distance)."""
        look = self.look(pixels)
        s = self.settings
        return (content_change(look.hsv, key.key_look.hsv) < s.min_content_val
                and chroma_change(look.hist, key.key_look.hist) < s.chroma_threshold)

    def _dense(self, decoder, shaper, interval: _Interval, following: _Interval | None, until_s: float,
               check_s: float | None = None) -> Iterator[DecodedFrame]:
        """Decode from ``interval``'s keyframe to ``until_s`` (+inf: a few frames into ``following``).
        With ``check_s``, stop there instead when the last frame decoded looks like the next keyframe."""
        self.stats.intervals_decoded += 1
        decoder.flush_buffers()
        packets = list(interval.packets)
        limit = until_s
        if math.isinf(until_s):
            if following is not None:
                packets += following.packets[:TRAIL_FRAMES + 8]
                limit = following.key_time + (TRAIL_FRAMES + 0.5) / self.fps
        if check_s is not None and following is not None and check_s < following.key_time:
            full_limit, limit = limit, check_s
        else:
            check_s = None
        previous_time: float | None = None
        last_pixels: np.ndarray | None = None

        def frames_of(packet):
            for frame in decoder.decode(packet):
                if frame.pts is not None:
                    yield float(frame.pts * self._base) - self.info.start_time_s, frame

        def handle(time_s: float, frame) -> list[DecodedFrame] | None:
            """The frames to yield for this decoded one; None once past the limit."""
            nonlocal previous_time, limit, check_s, last_pixels
            self.stats.frames_decoded += 1
            if time_s >= limit:
                if check_s is None or (last_pixels is not None and self._agrees_with(last_pixels, following)):
                    if check_s is not None:
                        self.stats.stopped_after_jump += 1
                    return None
                limit, check_s = full_limit, None  # something else happens before the next keyframe
            out: list[DecodedFrame] = []
            if time_s > self._emitted_until:
                # it follows the last frame handed on when the frame decoded just before it was that one
                follows = previous_time is not None and previous_time >= self._emitted_until - 1e-9
                last_pixels = shaper(frame)
                out = list(self._emit(time_s, last_pixels, follows))
            previous_time = time_s
            return out

        for packet in [*packets, None]:
            for time_s, frame in frames_of(packet):
                out = handle(time_s, frame)
                if out is None:
                    return
                yield from out

    def __iter__(self) -> Iterator[DecodedFrame]:
        import av  # imported here: the full decoder path does not need PyAV

        shaper = FrameShaper(self.info, self.size_px)
        with av.open(str(self.path)) as container:
            stream = container.streams[self.info.stream_index]
            base = self._base = stream.time_base
            decoder = stream.codec_context
            decoder.thread_type = "AUTO"
            keydec = av.CodecContext.create(decoder.name, "r")
            keydec.extradata = decoder.extradata
            if self.start_s > 0:
                container.seek(int((self.start_s + self.info.start_time_s) / base), stream=stream, backward=True)
            pending: list[_Interval] = []  # closed intervals waiting for the one after them
            current: _Interval | None = None
            stop_s = self.end_s if self.end_s is not None else math.inf
            at_end = True
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                time_s = float(packet.pts * base) - self.info.start_time_s
                if packet.is_keyframe:
                    pixels = self._decode_key(keydec, shaper, packet)
                    if pixels is not None:
                        look = self.look(pixels)
                        self.stats.keyframes += 1
                        if current is not None:
                            current.end_time = time_s
                            current.change_to_next = (content_change(current.key_look.hsv, look.hsv),
                                                      chroma_change(current.key_look.hist, look.hist))
                            pending.append(current)
                        current = _Interval(time_s, pixels, look)
                        while len(pending) >= 2:
                            yield from self._settle(decoder, shaper, pending, current)
                        if pending and pending[-1].key_time >= stop_s:
                            at_end = False  # what is left starts after the range
                            break
                if current is None:
                    continue  # packets before the first keyframe cannot be decoded alone
                current.packets.append(packet)
                current.times.append(time_s)
                current.sizes.append(packet.size)
                current.keys.append(bool(packet.is_keyframe))
            if at_end:
                if current is not None:
                    pending.append(current)
                while pending:
                    yield from self._settle(decoder, shaper, pending, None)

    def _settle(self, decoder, shaper, pending: list[_Interval], newest: _Interval | None) -> Iterator[DecodedFrame]:
        """Decide and decode the oldest pending interval (its neighbours are known by now)."""
        interval = pending.pop(0)
        following = pending[0] if pending else newest
        if (frames := self._frames(interval)) is not None:
            self._lengths[frames] += 1
        previous = getattr(self, "_previous_interval", None)
        self.stats.intervals += 1
        until, check = self._decode_until(interval, previous, following)
        self._previous_interval = interval
        # drop the previous interval's packets: they are no longer needed
        if previous is not None:
            previous.packets = []
        skipped_before, self._skipped = self._skipped, until is None
        if until == KEY_CUT:
            self.stats.keyframe_cuts += 1
            self._key_cuts.append(interval.end_time)
            # the stretch's own first frames are decoded all the same when the sampler may take one of them
            # (the frame pick_offset_s into a shot that starts at this keyframe); not when the stretch before
            # was skipped, its keyframes alike: then no shot starts at this keyframe
            until = None
            if not skipped_before:
                until = interval.key_time + self.settings.pick_offset_s + 1.5 / self.fps
                if until >= interval.end_time:
                    until = None
        if until is None:
            yield from self._emit(interval.key_time, interval.key_pixels, follows=False)
            return
        yield from self._dense(decoder, shaper, interval, following, until, check)

    @staticmethod
    def _decode_key(keydec, shaper, packet) -> np.ndarray | None:
        frames = keydec.decode(packet) + keydec.decode(None)
        keydec.flush_buffers()
        return shaper(frames[0]) if frames else None


def structure_ok(path: Path, info: VideoInfo, probe_packets: int = 300) -> bool:
    """True when the keyframe-guided scan can help: PyAV reads the stream and not every packet of
    its first ``probe_packets`` is a keyframe (intra-only codecs gain nothing from it)."""
    try:
        import av
    except ImportError:
        return False
    try:
        with av.open(str(path)) as container:
            stream = container.streams[info.stream_index]
            keys = total = 0
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                total += 1
                keys += bool(packet.is_keyframe)
                if total >= probe_packets:
                    break
    except (av.FFmpegError, IndexError, OSError) as exc:
        logger.info("%s: PyAV cannot read it (%s): full decode", path, exc)
        return False
    return total > 1 and keys < total


__all__ = ["GuideSettings", "GuidedReader", "FrameShaper", "packet_change_times", "structure_ok"]
