"""What the index knows about a video: its identity, its paths, and the time ranges indexed so far.

A video is its content (``video_id`` is a prefix of the SHA-256 of the file): the same bytes at two
paths are one video with two paths and one set of frame vectors. A long video arrives as several
time ranges; each indexed range is a ``Piece`` with the shots found inside it. The video's shots
and covered ranges are derived from its pieces (``shots``, ``ranges``, ``complete``), so a range can
be replaced without touching the others, and two writers can add different ranges of one video
without rewriting a shared list.

Pure data and pure functions: no storage, no jina.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from clipseek.types import Shot

RANGE_EPSILON_S = 0.05  # range edges this close count as touching (container durations are not exact)


@dataclass(frozen=True)
class Piece:
    """One indexed time range of a video and the shots found inside it."""

    start_s: float
    end_s: float
    shots: tuple[Shot, ...] = ()
    indexed_at: str = ""

    def overlaps(self, start_s: float, end_s: float) -> bool:
        return self.start_s < end_s - RANGE_EPSILON_S and start_s < self.end_s - RANGE_EPSILON_S

    def trimmed(self, start_s: float, end_s: float) -> Piece | None:
        """The part of this piece inside [start_s, end_s), shots clipped to it; None when empty."""
        lo, hi = max(self.start_s, start_s), min(self.end_s, end_s)
        if hi - lo <= RANGE_EPSILON_S:
            return None
        shots = tuple(Shot(max(s.start_s, lo), min(s.end_s, hi), s.starts_at_cut and s.start_s >= lo)
                      for s in self.shots if s.end_s > lo and s.start_s < hi)
        return Piece(lo, hi, shots, self.indexed_at)


@dataclass(frozen=True)
class VideoRecord:
    """A video in the library (immutable: changes make a new record)."""

    video_id: str
    content_hash: str
    duration_s: float
    paths: tuple[str, ...] = ()  # where the content lives, the first one shown by default
    size_bytes: int = 0
    width_px: int = 0
    height_px: int = 0
    fps: float = 0.0
    indexed_at: str = ""  # ISO 8601, UTC: the last time a range of it was indexed
    pieces: tuple[Piece, ...] = ()  # sorted by start, never overlapping
    _derived: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def path(self) -> str:
        return self.paths[0] if self.paths else ""

    @property
    def ranges(self) -> list[list[float]]:
        """The indexed [start, end) ranges, touching ones merged."""
        if "ranges" not in self._derived:
            self._derived["ranges"] = merge_ranges([[p.start_s, p.end_s] for p in self.pieces])
        return self._derived["ranges"]

    @property
    def shots(self) -> list[Shot]:
        """Every shot, in time order; a shot cut by a range edge is joined again."""
        if "shots" not in self._derived:
            self._derived["shots"] = join_shots([s for p in self.pieces for s in p.shots])
        return self._derived["shots"]

    @property
    def shot_starts(self) -> list[float]:
        if "starts" not in self._derived:
            self._derived["starts"] = [s.start_s for s in self.shots]
        return self._derived["starts"]

    @property
    def shot_ends(self) -> list[float]:
        if "ends" not in self._derived:
            self._derived["ends"] = [s.end_s for s in self.shots]
        return self._derived["ends"]

    def covers(self, start_s: float, end_s: float) -> bool:
        return any(a <= start_s + RANGE_EPSILON_S and end_s - RANGE_EPSILON_S <= b for a, b in self.ranges)

    @property
    def complete(self) -> bool:
        return self.covers(0.0, self.duration_s)

    def with_changes(self, **changes) -> VideoRecord:
        changes.setdefault("_derived", {})
        return replace(self, **changes)


def merge_ranges(ranges: list[list[float]]) -> list[list[float]]:
    merged: list[list[float]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + RANGE_EPSILON_S:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def join_shots(shots: list[Shot]) -> list[Shot]:
    """Sort shots; join a shot that starts at a range edge (not a cut) to the one before it."""
    joined: list[Shot] = []
    for shot in sorted(shots, key=lambda s: s.start_s):
        if joined and not shot.starts_at_cut and abs(joined[-1].end_s - shot.start_s) <= RANGE_EPSILON_S:
            joined[-1] = Shot(joined[-1].start_s, shot.end_s, joined[-1].starts_at_cut)
        else:
            joined.append(shot)
    return joined


def replace_range(pieces: tuple[Piece, ...], new: Piece) -> tuple[tuple[Piece, ...], list[Piece], list[Piece]]:
    """Put ``new`` in place of whatever covered its time range before.

    Returns (the resulting pieces, the pieces removed, the remnants added back): a piece that only
    partly overlaps the new range keeps its part outside it (shots clipped to that part).
    """
    removed = [p for p in pieces if p.overlaps(new.start_s, new.end_s)]
    remnants: list[Piece] = []
    for old in removed:
        for part in (old.trimmed(old.start_s, new.start_s), old.trimmed(new.end_s, old.end_s)):
            if part is not None:
                remnants.append(part)
    kept = [p for p in pieces if p not in removed]
    return tuple(sorted(kept + remnants + [new], key=lambda p: p.start_s)), removed, remnants


def is_finite(*values: float | None) -> bool:
    return all(v is None or (isinstance(v, (int, float)) and math.isfinite(v)) for v in values)
