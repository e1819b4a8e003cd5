"""From frame scores to clips: pure functions, no index and no jina.

A clip is built inside a shot around its best-matching frame: neighbouring sampled frames that match
about as well join it; the clip ends at the shot's boundary, or half way to the first neighbour that
does not match. "About as well" is within ``Margin.of(best)``: at least ``absolute``, and at least
``relative`` of the way from the best score down to the background (the typical score of the
query's candidate frames), so it adapts to how spread a model's scores are. Clips that touch across
a shot boundary are merged only when they score within ``cut`` of each other (0: never): a detected
cut is strong evidence of a new subject, so the bar to undo it is higher than the bar inside a shot. Clips
never overlap and stay inside the shot and the video, because they are cut from disjoint runs of
frames inside [0, duration].
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import NamedTuple


class ScoredFrame(NamedTuple):  # a tuple: a search builds hundreds, and a tuple is quicker to make
    time_s: float
    score: float
    is_hit: bool  # among the nearest neighbours of the query (a clip must start from one)


@dataclass(frozen=True)
class Margin:
    """How far below a clip's best score a frame may be and still belong to the clip."""

    absolute: float = 0.03
    relative: float = 0.5
    background: float | None = None  # typical score of the query's candidates (e.g. their median)
    cut: float = 0.03  # clips that touch across a shot boundary merge when their scores differ by at most this

    def of(self, best: float) -> float:
        if self.background is None:
            return self.absolute
        return max(self.absolute, self.relative * (best - self.background))


@dataclass(frozen=True)
class Clip:
    start_s: float
    end_s: float
    score: float
    best_time_s: float


def clips_in_shot(shot_start_s: float, shot_end_s: float, frames: list[ScoredFrame],
                  margin: Margin) -> list[Clip]:
    """Disjoint clips inside one shot; ``frames`` are the shot's sampled frames in time order."""
    if not frames or shot_end_s <= shot_start_s:
        return []
    assigned = [False] * len(frames)
    clips: list[Clip] = []
    order = sorted(range(len(frames)), key=lambda i: frames[i].score, reverse=True)
    for best in order:
        if assigned[best] or not frames[best].is_hit:
            continue
        floor = frames[best].score - margin.of(frames[best].score)
        lo = hi = best
        while lo > 0 and not assigned[lo - 1] and frames[lo - 1].score >= floor:
            lo -= 1
        while hi < len(frames) - 1 and not assigned[hi + 1] and frames[hi + 1].score >= floor:
            hi += 1
        for i in range(lo, hi + 1):
            assigned[i] = True
        start = shot_start_s if lo == 0 else (frames[lo - 1].time_s + frames[lo].time_s) / 2
        end = shot_end_s if hi == len(frames) - 1 else (frames[hi].time_s + frames[hi + 1].time_s) / 2
        clips.append(Clip(max(start, shot_start_s), min(end, shot_end_s), frames[best].score,
                          frames[best].time_s))
    return clips


def merge_touching(clips: list[Clip], margin: Margin, epsilon_s: float = 1e-3) -> list[Clip]:
    """Merge clips of one video that touch end to start and score within ``margin.cut`` (a cut of 0 or
    less: never)."""
    merged: list[Clip] = []
    for clip in sorted(clips, key=lambda c: c.start_s):
        if merged and margin.cut > 0:
            last = merged[-1]
            if abs(clip.start_s - last.end_s) <= epsilon_s and abs(clip.score - last.score) <= margin.cut:
                best = last if last.score >= clip.score else clip
                merged[-1] = Clip(last.start_s, max(last.end_s, clip.end_s), best.score, best.best_time_s)
                continue
        merged.append(clip)
    return merged


def clamp(clip: Clip, duration_s: float) -> Clip:
    """Keep a clip inside [0, duration_s] (the last shot may be probed a little long)."""
    if duration_s <= 0:
        return clip
    start = min(max(0.0, clip.start_s), duration_s)
    end = min(max(start, clip.end_s), duration_s)
    best = min(max(start, clip.best_time_s), end)
    return Clip(start, end, clip.score, best)


def rank(clips: list[tuple[str, Clip]], top_k: int) -> list[tuple[str, Clip]]:
    """Best first; ties broken by video and time so results are stable."""
    return sorted(clips, key=lambda vc: (-vc[1].score, vc[0], vc[1].start_s))[:top_k]


# -- from frame hits to clips ------------------------------------------------------------------------
class FrameHit(NamedTuple):
    """A frame among the nearest neighbours of the query."""

    video_id: str
    time_s: float
    score: float


@dataclass(frozen=True)
class HitShot:
    """A shot that holds at least one hit, with every indexed frame of it scored against the query."""

    video_id: str
    start_s: float
    end_s: float
    times_s: tuple[float, ...] = ()
    scores: tuple[float, ...] = ()


def shots_of_hits(hits: list[FrameHit], shot_starts: dict[str, list[float]],
                  shot_ends: dict[str, list[float]]) -> list[tuple[str, float, float]]:
    """The (video_id, start_s, end_s) of each shot holding a hit, in the order of their first hit.
    Hits in videos without shots (unknown to the catalogue) are dropped."""
    seen: dict[tuple[str, int], None] = {}
    for hit in hits:
        starts = shot_starts.get(hit.video_id)
        if not starts:
            continue
        seen[(hit.video_id, max(0, bisect.bisect_right(starts, hit.time_s) - 1))] = None
    return [(video_id, shot_starts[video_id][i], shot_ends[video_id][i]) for video_id, i in seen]


def clips_from_hits(hits: list[FrameHit], shots: list[HitShot], durations: dict[str, float],
                    margin: Margin, top_k: int) -> list[tuple[str, Clip]]:
    """Ranked, non-overlapping clips inside their videos. A hit keeps its own score (the vector
    index's exact one); the other frames of a hit shot use the score in ``shots``."""
    exact: dict[str, dict[float, float]] = {}
    for h in hits:
        exact.setdefault(h.video_id, {})[round(h.time_s, 6)] = h.score
    per_video: dict[str, list[Clip]] = {}
    for shot in shots:
        found = exact.get(shot.video_id, {})
        frames = []
        for time_s, score in zip(shot.times_s, shot.scores, strict=True):
            hit = found.get(round(time_s, 6))
            frames.append(ScoredFrame(time_s, score, False) if hit is None else ScoredFrame(time_s, hit, True))
        per_video.setdefault(shot.video_id, []).extend(clips_in_shot(shot.start_s, shot.end_s, frames, margin))
    results: list[tuple[str, Clip]] = []
    for video_id, clips in per_video.items():
        results.extend((video_id, clamp(c, durations.get(video_id, 0.0))) for c in merge_touching(clips, margin))
    return rank(results, top_k)
