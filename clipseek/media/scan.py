"""One time range of a video: decode what is needed, find the shots, choose the frames to embed.

The keyframe-guided decoder (clipseek/media/keyscan.py) is used where the stream has structure to guide it;
otherwise every frame is decoded by ffmpeg (clipseek/media/video.py). Either way the frames go through the
same shot sampler (clipseek/media/shots.py), fed from a little before the range to a little after it, so
that the frames chosen inside the range do not depend on where the range starts or ends.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from clipseek.media.ffmpeg_cmd import VideoInfo
from clipseek.media.hardware import DecodePath
from clipseek.media.keyscan import GuidedReader, GuideSettings, GuideStats, structure_ok
from clipseek.media.shots import SamplingSettings, ShotSampler, ShotScan
from clipseek.media.video import FrameReader

logger = logging.getLogger("clipseek.media.scan")


@dataclass
class RangeScan:
    scan: ShotScan
    # "keyframes" (guided), "full", or "full (cuda)": the full decoder asked ffmpeg for that hwaccel and
    # ffmpeg did not fail (ffmpeg may still have decoded some frames in software by itself)
    method: str
    frames_decoded: int  # frames the decoders produced (keyframes included)
    stderr_tail: str = ""
    guide: GuideStats | None = None  # what the keyframe-guided scan decided (None: the full path)


def guide_settings(sampling: SamplingSettings, max_keyframe_gap_s: float, shortcuts: bool = True) -> GuideSettings:
    return GuideSettings(max_keyframe_gap_s=max_keyframe_gap_s, keyframe_cuts=shortcuts, stop_after_jump=shortcuts,
                         adaptive_threshold=sampling.adaptive_threshold, min_content_val=sampling.min_content_val,
                         chroma_threshold=sampling.chroma_threshold, dark_luma=sampling.dark_luma,
                         pick_offset_s=sampling.first_offset_s)


def scan_range(path: Path, info: VideoInfo, sampling: SamplingSettings, size_px: int, start_s: float,
               end_s: float | None, keyframe_scan: bool = True, max_keyframe_gap_s: float = 10.0,
               use_guide: bool | None = None, keyframe_shortcuts: bool = True,
               decode: DecodePath | None = None) -> RangeScan:
    """Shots of [start_s, end_s) and the frames chosen in it (``end_s`` None: to the end).

    ``decode``: the hardware decode path the full decoder uses (clipseek.media.hardware; None:
    software). The keyframe-guided scan decodes in software (PyAV) either way."""
    sampler = ShotSampler(sampling, info.fps, size_px, info.aspect, start_s,
                          end_s if end_s is not None else math.inf)
    decode_from = sampling.decode_start_s(start_s)
    decode_to = sampling.decode_end_s(end_s) if end_s is not None else None
    guided = use_guide if use_guide is not None else (keyframe_scan and structure_ok(path, info))
    if guided:
        reader = GuidedReader(path, info, size_px, decode_from, decode_to,
                              guide_settings(sampling, max_keyframe_gap_s, keyframe_shortcuts), look=sampler.looker)
        for frame in reader:
            sampler.push(frame)
        scan = sampler.finish()
        if scan.frames:
            return RangeScan(scan, "keyframes", reader.stats.frames_decoded + reader.stats.keyframes,
                             guide=reader.stats)
        # A range shorter than a keyframe interval can lie wholly inside a stretch that was not decoded;
        # it is decoded in full (a range with no frame to show is an error only if it really has none).
        logger.debug("%s %.2f-%s s: no frame from the keyframe scan, decoding the range in full", path.name,
                     start_s, end_s)
        return scan_range(path, info, sampling, size_px, start_s, end_s, use_guide=False, decode=decode)
    full = FrameReader(path, info, size_px, decode_from, decode_to, decode=decode)
    for frame in full:
        sampler.push(frame)
    scan = sampler.finish()
    return RangeScan(scan, "full" if full.hwaccel is None else f"full ({full.hwaccel})", scan.num_decoded,
                     full.stderr_tail)
