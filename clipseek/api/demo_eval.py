"""End-to-end check of the engine on the demo library: every shot's caption should find that shot.

For each shot in ``truth.json`` (written by tools/make_demo_videos.py), search its caption through a
running Flow and count a hit when the top result is a shot showing that concept, with start and end
within ``tolerance_s`` of that shot's truth. The library shows most concepts in more than one place,
so another shot of the same concept is as right an answer as the one asked about; ``evaluate(...,
only_within_video=True)`` filters each search to the shot's own video, where the shot must be found
itself. Captions are English by default; ``language="zh"`` searches each shot's Chinese caption
(``caption_zh`` in truth.json). ``breakdown`` counts the hits per kind of shot (second renderer's
footage: object size, moving or still, frame shape, what it shares with the shot before);
``cut_recall`` checks the cuts the loader found against the truth. Used by ``tools/demo.py
--evaluate`` and by the tests.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from clipseek.api.client import ClipseekClient


@dataclass
class ShotCheck:
    video: str
    caption: str
    truth: tuple[float, float]
    found: tuple[str, float, float, float] | None  # (video file, start, end, score) of the top result
    accepted: list[tuple[str, float, float]] = field(default_factory=list)  # shots of the same concept

    def hit(self, tolerance_s: float) -> bool:
        if self.found is None:
            return False
        name, start, end = Path(self.found[0]).name, self.found[1], self.found[2]
        return any(name == video and abs(start - a) <= tolerance_s and abs(end - b) <= tolerance_s
                   for video, a, b in self.accepted)


@dataclass
class SearchEval:
    tolerance_s: float
    checks: list[ShotCheck] = field(default_factory=list)

    @property
    def hits(self) -> int:
        return sum(c.hit(self.tolerance_s) for c in self.checks)

    @property
    def rate(self) -> float:
        return self.hits / len(self.checks) if self.checks else 0.0

    @property
    def right_video_rate(self) -> float:
        good = sum(1 for c in self.checks if c.found and Path(c.found[0]).name in {v for v, _, _ in c.accepted})
        return good / len(self.checks) if self.checks else 0.0

    def misses(self) -> list[ShotCheck]:
        return [c for c in self.checks if not c.hit(self.tolerance_s)]

    def report(self) -> str:
        lines = [f"{len(self.checks)} shots in {len({c.video for c in self.checks})} videos: top result is the "
                 f"shot (start and end within {self.tolerance_s} s) for {self.hits} = {100 * self.rate:.1f}%; "
                 f"a video showing the concept {100 * self.right_video_rate:.1f}%"]
        for miss in self.misses():
            got = "nothing" if miss.found is None else (
                f"{Path(miss.found[0]).name} {miss.found[1]:.2f}-{miss.found[2]:.2f} s (score {miss.found[3]:.3f})")
            lines.append(f"  miss: {miss.video} {miss.truth[0]:.2f}-{miss.truth[1]:.2f} s '{miss.caption}' -> {got}")
        return "\n".join(lines)


def caption_key(language: str) -> str:
    """The truth.json field that holds a shot's caption in ``language`` ("caption" for English)."""
    return "caption" if language == "en" else f"caption_{language}"


def evaluate(client: ClipseekClient, truth_path: Path, tolerance_s: float = 0.25,
             only_within_video: bool = False, language: str = "en") -> SearchEval:
    """Search every shot's caption in ``language``. With ``only_within_video`` the search is filtered to
    the shot's video (then the shots of one video compete only with each other)."""
    truth = json.loads(Path(truth_path).read_text(encoding="utf-8"))
    folder = Path(truth_path).parent
    key = caption_key(language)
    by_concept: dict[str, list[tuple[str, float, float]]] = {}
    for video in truth["videos"]:
        for shot in video["shots"]:
            if key not in shot:
                raise ValueError(f"{truth_path}: {video['file']} has a shot without '{key}' (no {language} captions)")
            by_concept.setdefault(shot[key], []).append((video["file"], shot["start_s"], shot["end_s"]))
    result = SearchEval(tolerance_s)
    for video in truth["videos"]:
        for shot in video["shots"]:
            videos = [str((folder / video["file"]).resolve())] if only_within_video else []
            segments = client.search(shot[key], top_k=1, videos=videos, mode="frames")  # the frames alone
            found = (segments[0].video, segments[0].start_s, segments[0].end_s, segments[0].score) if segments else None
            accepted = [a for a in by_concept[shot[key]] if not only_within_video or a[0] == video["file"]]
            result.checks.append(ShotCheck(video["file"], shot[key], (shot["start_s"], shot["end_s"]), found,
                                           accepted))
    return result


def breakdown(result: SearchEval, truth: dict) -> str:
    """Hits per kind of shot, for footage whose truth says it (tests/shape_footage.py): object size,
    moving or still, frame shape, what it shares with the shot before; '' for other libraries."""
    shots = {(video["file"], shot["start_s"]): (video, shot) for video in truth["videos"] for shot in video["shots"]}
    totals: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    for check in result.checks:
        video, shot = shots[(check.video, check.truth[0])]
        if "size" not in shot:
            return ""
        kinds = [f"size {shot['size']}", "moving" if shot["moves"] else "still",
                 "4:3" if video["width"] * 3 == video["height"] * 4 else "16:9",
                 f"cut from the same {shot['same_as_previous']}" if shot["same_as_previous"] else "cut from another"]
        for kind in kinds:
            totals[kind] += 1
            hits[kind] += check.hit(result.tolerance_s)
    return "  " + ", ".join(f"{kind} {hits[kind]}/{totals[kind]}" for kind in sorted(totals))


def cut_recall(client: ClipseekClient, truth_path: Path, tolerance_s: float = 0.1) -> str:
    """How many of the truth's cuts the loader found (a shot of the index starting within
    ``tolerance_s``), and which it missed."""
    truth = json.loads(Path(truth_path).read_text(encoding="utf-8"))
    folder = Path(truth_path).parent
    indexed = {Path(v.path).name: v for v in client.videos([str((folder / v["file"]).resolve())
                                                               for v in truth["videos"]])}
    total, missed = 0, []
    for video in truth["videos"]:
        starts = [shot.start_s for shot in indexed[video["file"]].shots]
        for shot in video["shots"][1:]:
            total += 1
            if not any(abs(start - shot["start_s"]) <= tolerance_s for start in starts):
                kind = f"the same {shot['same_as_previous']}" if shot.get("same_as_previous") else "another"
                size = f", {shot['size']}" if "size" in shot else ""
                missed.append(f"  missed cut: {video['file']} {shot['start_s']:.2f} s (from {kind}{size})")
    return "\n".join([f"cuts found by the loader within {tolerance_s} s: {total - len(missed)}/{total}", *missed])
