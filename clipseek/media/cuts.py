"""Cut detectors over consecutive frames, and the per-frame measures they and the sampler share.

``AdaptiveCut`` is PySceneDetect's AdaptiveDetector test (the best of its detectors on the BBC shot
set, F1 91.6 against 86.7 for ContentDetector): the mean change of hue, saturation and value from the
previous frame, against the mean change of the frames around it, so steady motion is not a cut. It is
written out here (the same arithmetic) so that it can restart after a gap in the frames: the
keyframe-guided scan (clipseek/media/keyscan.py) feeds it short runs of consecutive frames, and a run
must be judged from its own third frame, not after PySceneDetect's start-up wait of ``min_scene_len``.

``ChromaCutDetector`` finds cuts between two shots of equal brightness where only a small object
changes colour, which the whole-frame averages miss.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

HUE_BINS = 18
GREY_BINS = 4


@dataclass
class FrameLook:
    """What detection and sampling need of one frame, measured on the picture shrunk to ``detect_px``."""

    hsv: np.ndarray  # uint8 HxWx3 (OpenCV HSV)
    hist: np.ndarray  # chroma histogram (see chroma_histogram)
    thumb: np.ndarray  # 16x16 float32 grey thumbnail, for drift
    luma98: float  # 98th percentile of grey: under dark_luma the frame is black


def chroma_histogram(hsv: np.ndarray) -> np.ndarray:
    """Share of pixels per hue bin; grey pixels (low saturation or value) go to brightness bins, so
    noise and fades barely count."""
    flat = hsv.reshape(-1, 3).astype(np.int32)
    chromatic = (flat[:, 1] >= 48) & (flat[:, 2] >= 48)
    bins = np.where(chromatic, flat[:, 0] * HUE_BINS // 180, HUE_BINS + flat[:, 2] * GREY_BINS // 256)
    counts = np.bincount(bins, minlength=HUE_BINS + GREY_BINS).astype(np.float32)
    return counts / max(1.0, counts.sum())


def look_at(picture: np.ndarray) -> FrameLook:
    """Measure an RGB picture (already cropped to the content and shrunk)."""
    hsv = cv2.cvtColor(picture, cv2.COLOR_RGB2HSV)
    grey = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
    # "Black" means nearly every pixel is dark (the 98th percentile), so a dark scene with a bright
    # object in it is not mistaken for the black of a fade.
    flat = grey.reshape(-1)
    k = int(0.98 * (flat.size - 1))
    luma = float(np.partition(flat, k)[k])
    thumb = cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
    return FrameLook(hsv, chroma_histogram(hsv), thumb, luma)


def content_change(a: np.ndarray, b: np.ndarray) -> float:
    """PySceneDetect's content_val: the mean absolute change of H, S and V, averaged (0-255).

    The same float as numpy's ``np.abs(a - b).reshape(-1, 3).mean(axis=0).mean()`` on int16 (exact
    sums per channel, each divided by the pixel count, then their mean) without numpy's slow strided
    reduction (the shot scan alone: docs/benchmarks.md, fifth session)."""
    sums = cv2.sumElems(cv2.absdiff(a, b))  # exact: integer sums in doubles
    pixels = a.shape[0] * a.shape[1]
    return (sums[0] / pixels + sums[1] / pixels + sums[2] / pixels) / 3


def chroma_change(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels whose colour bin changed (0-1)."""
    return float(np.abs(a - b).sum() / 2)


def drift(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two grey thumbnails (0-255)."""
    return float(np.abs(a - b).mean())


class _AdaptiveTest:
    """A frame is a cut when its score is at least ``threshold`` and ``ratio`` times the mean score
    of the ``window`` frames on each side (fewer before it at the start of a run), and at least
    ``min_gap_frames`` after the last cut."""

    def __init__(self, threshold: float, ratio: float, window: int, min_gap_frames: int):
        self.threshold = threshold
        self.ratio = ratio
        self.window = window
        self.min_gap_frames = min_gap_frames
        self._scores: deque[tuple[int, float]] = deque()
        self._last_cut = -(10**9)

    def reset(self) -> None:
        """The next frame does not follow the last one: forget the scores (not the last cut)."""
        self._scores.clear()

    def add(self, index: int, score: float) -> list[int]:
        self._scores.append((index, score))
        if len(self._scores) < self.window + 1:
            return []
        while len(self._scores) > 2 * self.window + 1:
            self._scores.popleft()
        target = len(self._scores) - 1 - self.window
        t_index, value = self._scores[target]
        others = [v for i, (_, v) in enumerate(self._scores) if i != target]
        mean = sum(others) / len(others)
        ratio = value / mean if mean > 1e-5 else (255.0 if value >= self.threshold else 0.0)
        if value >= self.threshold and ratio >= self.ratio and t_index - self._last_cut >= self.min_gap_frames:
            self._last_cut = t_index
            return [t_index]
        return []


class AdaptiveCut:
    """PySceneDetect's AdaptiveDetector (content_val of HSV, adaptive ratio over 2 frames each side)."""

    def __init__(self, adaptive_threshold: float, min_content_val: float, min_gap_frames: int, window: int = 2):
        self.window = window
        self._test = _AdaptiveTest(min_content_val, adaptive_threshold, window, min_gap_frames)
        self._previous: np.ndarray | None = None

    def reset(self) -> None:
        self._previous = None
        self._test.reset()

    def process(self, index: int, hsv: np.ndarray) -> list[int]:
        """Feed frame ``index``; returns the cuts it can now decide (``window`` frames back)."""
        previous, self._previous = self._previous, hsv
        if previous is None:
            return []
        return self._test.add(index, content_change(hsv, previous))


class ChromaCutDetector:
    """Cuts where the colours in the picture change at once, even if its brightness does not.

    PySceneDetect's detectors average over the whole frame, so a small object that changes hue
    between two shots of equal brightness (a red cross cut to a blue cross) scores too low. This
    compares hue/saturation histograms of consecutive frames and reports a frame whose change is
    large both absolutely and against its neighbours (the same adaptive test as AdaptiveCut).
    """

    def __init__(self, threshold: float, ratio: float = 3.0, window: int = 2, min_gap_frames: int = 1):
        self.window = window
        self._test = _AdaptiveTest(threshold, ratio, window, min_gap_frames)
        self._previous: np.ndarray | None = None

    def reset(self) -> None:
        self._previous = None
        self._test.reset()

    def process(self, index: int, hist: np.ndarray) -> list[int]:
        previous, self._previous = self._previous, hist
        if previous is None:
            return []
        return self._test.add(index, chroma_change(hist, previous))
