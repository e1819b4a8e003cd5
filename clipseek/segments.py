"""From frame scores to clips: pure functions, no index and no jina.

A clip is built inside a shot around its best-matching frame: neighbouring sampled frames that match
about as well join it; the clip ends at the shot's boundary, or half way to the first neighbour that
does not match. "About as well" is within ``Margin.of(best)``: at least ``absolute``, and at least
``relative`` of the way from the best score down to the background (the typical score of the
query's candidate frames), so it adapts to how spread a model's scores are. Clips that touch across
a shot boundary are merged only when they score within ``absolute`` of each other: a detected cut is
strong evidence of a new subject, so the bar to undo it is higher than the bar inside a shot. Clips
never overlap and stay inside the shot and the video, because they are cut from disjoint runs of
frames inside [0, duration].
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoredFrame:
    time_s: float
    score: float
    is_hit: bool  # among the nearest neighbours of the query (a clip must start from one)


@dataclass(frozen=True)
class Margin:
    """How far below a clip's best score a frame may be and still belong to the clip."""

    absolute: float = 0.03
    relative: float = 0.5
    background: float | None = None  # typical score of the query's candidates (e.g. their median)

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
    """Merge clips of one video that touch end to start and score within ``margin.absolute``."""
    merged: list[Clip] = []
    for clip in sorted(clips, key=lambda c: c.start_s):
        if merged:
            last = merged[-1]
            if abs(clip.start_s - last.end_s) <= epsilon_s and abs(clip.score - last.score) <= margin.absolute:
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
