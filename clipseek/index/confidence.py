"""How much to trust a search result: a confidence number and its level (high, medium, low).

A raw cosine means different things for different queries and models (the demo model's matches sit
near 0.95, ViT-B-32's near 0.3). Two measures make a result readable:

- ``confidence`` (a z-score, the number reported): how many standard deviations the result's cosine
  stands above the query's cosines over the library, estimated from an evenly spread sample of at
  most ``SAMPLE_SIZE`` frames. A mean and a spread estimated from a sample do not grow with the
  library (a maximum over more frames would: it is higher by chance), so the same result in a
  library ten times larger keeps its confidence.
- the model's ``Thresholds``: the confidence and the cosine a result needs for each level. A query
  whose best frame only half matches (the right colour, another shape) can stand as far above the
  rest of a small library as a true match does; only the cosine, read on the model's own scale,
  tells them apart. Thresholds are measured per model with bench/confidence.py (docs/search.md);
  a model without measured thresholds gets ``UNMEASURED`` (z only).

Pure functions: no storage, no model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SAMPLE_SIZE = 1024  # frames whose scores estimate a query's distribution over the library
SAMPLE_VIDEOS = 256  # at most this many videos (evenly spread) give the sample its frames
LEVELS = ("low", "medium", "high")
MIN_SPREAD = 1e-3  # a query that scores every frame the same: no result stands out


@dataclass(frozen=True)
class Thresholds:
    """What a result needs to be ``high`` or ``medium``: a confidence (z) and a cosine, both at least."""

    high_z: float = 3.0
    medium_z: float = 2.0
    high_cosine: float = -1.0
    medium_cosine: float = -1.0


@dataclass(frozen=True)
class Calibration:
    """Thresholds for text queries (text tower vs frames) and for image queries (frames vs frames)."""

    text: Thresholds = Thresholds()
    image: Thresholds = Thresholds()
    measured: bool = False  # False: the defaults, not measured for this model

    def for_kind(self, kind: str) -> Thresholds:
        return self.image if kind == "image" else self.text


UNMEASURED = Calibration()

# bench/confidence.py on the demo model (libraries of 3-24 demo videos, x1 and x8, 64 concepts, 3 phrasings):
# best-frame cosine of a present concept >= 0.920 (text) / 0.951 (image), of an absent one <= 0.838 (text) /
# 0.868 (image); the z of a present concept >= 1.657. docs/search.md has the run (checkpoint of the seventh
# session, its image tower tuned on hard frames). Re-measure when the demo model is retrained.
CALIBRATIONS: dict[str, Calibration] = {
    "clipseek-demo": Calibration(
        text=Thresholds(high_z=1.5, medium_z=1.0, high_cosine=0.90, medium_cosine=0.87),
        image=Thresholds(high_z=1.5, medium_z=1.0, high_cosine=0.93, medium_cosine=0.895),
        measured=True),
}


def calibration_for(model: str) -> Calibration:
    """The measured thresholds of ``model`` (its name as the index records it), else ``UNMEASURED``."""
    return CALIBRATIONS.get(model, UNMEASURED)


def sample_rows(count: int, size: int = SAMPLE_SIZE) -> np.ndarray:
    """Indices of at most ``size`` of ``count`` rows, evenly spread."""
    if count <= size:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, size).round().astype(np.int64))


def sample_spans(durations: dict[str, float], videos: int = SAMPLE_VIDEOS) -> list[tuple[str, float, float]]:
    """The (video_id, start_s, end_s) spans whose frames make the sample: whole videos, at most
    ``videos`` of them, evenly spread over the ids (so the sample spans the library)."""
    ids = sorted(durations)
    return [(ids[i], 0.0, max(durations[ids[i]], 0.0) + 1.0) for i in sample_rows(len(ids), videos)]


def standing(scores: np.ndarray, sample_scores: np.ndarray) -> np.ndarray:
    """(score - mean) / standard deviation of ``sample_scores``, for each of ``scores``."""
    scores = np.asarray(scores, dtype=np.float64)
    sample = np.asarray(sample_scores, dtype=np.float64)
    if not len(sample):
        return np.zeros_like(scores)
    return (scores - sample.mean()) / max(float(sample.std()), MIN_SPREAD)


def level(cosine: float, z: float, thresholds: Thresholds) -> str:
    """``high``, ``medium`` or ``low`` for a result of this cosine and confidence."""
    if not (math.isfinite(cosine) and math.isfinite(z)):
        return "low"
    if z >= thresholds.high_z and cosine >= thresholds.high_cosine:
        return "high"
    if z >= thresholds.medium_z and cosine >= thresholds.medium_cosine:
        return "medium"
    return "low"


def check_level(name: str | None) -> str:
    """``name`` as a level (``""``, ``none``, ``any``: no minimum, i.e. low); ValueError naming it otherwise."""
    value = (name or "low").strip().lower()
    if value in ("", "none", "any"):
        value = "low"
    if value not in LEVELS:
        raise ValueError(f"min_confidence must be one of {', '.join(LEVELS)}, got {name!r}")
    return value


def at_least(found: str, wanted: str) -> bool:
    """Whether level ``found`` is ``wanted`` or better."""
    return LEVELS.index(found) >= LEVELS.index(wanted)
