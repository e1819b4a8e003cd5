"""Generate the demo video library: shots of coloured shapes with known cut times, and their truth.

Each video is a sequence of shots; a shot shows one concept of the demo vocabulary (a shape of a colour)
on a background, still or drifting slightly. Frames are drawn with :mod:`clipseek.demo.vocab` and piped
raw to the ffmpeg binary (H.264, 320x240, 25 fps). ``demo_01.mp4`` is the hard one: shots from 0.52 s to
20 s, a fade through black, and a hard cut between two shots of equal brightness (same background, same
place, a red and a blue cross of equal luma), which brightness-based cut detection misses. The others are
short (3-6 shots, 10-30 s) and between them show every concept.

``OUTDIR/truth.json`` holds every shot's start/end (exact to the frame: frame k starts at k/25 s), its
concept, its captions (English and Chinese), and every transition. A fade's shot boundary is the middle
of its black frames.

    python tools/make_demo_videos.py OUTDIR [--videos 24] [--seed 2024]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from clipseek.demo import vocab  # noqa: E402

FPS = 25
FRAME_SIZE_PX = (320, 240)
GOP_FRAMES = 50
FADE_FRAMES = 12  # fade out over 0.48 s, fade in over 0.48 s ...
BLACK_FRAMES = 4  # ... with 0.16 s of black between; the shot boundary is in its middle
VIDEO_SIZE_RANGE = (0.3, 0.55)  # object height as a fraction of the frame's
MAX_DRIFT = 0.12  # how far an object may move during a shot, as a fraction of the frame
EQUAL_LUMA_PAIR = (vocab.Concept("cross", "red"), vocab.Concept("cross", "blue"))
DEFAULT_SEED = 2024


class VideoEncodeError(RuntimeError):
    """ffmpeg failed to write a video; carries its stderr."""

    def __init__(self, path: Path, returncode: int, stderr: str) -> None:
        super().__init__(f"ffmpeg could not write {path} (exit {returncode}): {stderr.strip()[-2000:]}")
        self.path, self.returncode, self.stderr = path, returncode, stderr


@dataclass(frozen=True)
class Shot:
    """One shot: ``frames`` frames of a scene whose object drifts from ``scene``'s centre to ``end_centre``."""

    frames: int
    scene: vocab.Scene
    end_centre: tuple[float, float]
    fade_in: bool = False  # the shot starts with BLACK_FRAMES/2 black frames and a fade-in
    fade_out: bool = False  # the shot ends with a fade-out and BLACK_FRAMES/2 black frames


@dataclass
class VideoPlan:
    name: str
    shots: list[Shot] = field(default_factory=list)
    equal_luma_cuts: set[int] = field(default_factory=set)  # indices i of the cuts between shots i and i+1


def encode_argv(out_path: Path, width_px: int, height_px: int, fps: int = FPS,
                ffmpeg: str = "ffmpeg") -> list[str]:
    """ffmpeg argv that reads raw RGB frames from stdin and writes an H.264 MP4."""
    return [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width_px}x{height_px}", "-r", str(fps), "-i", "pipe:",
            "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
            "-g", str(GOP_FRAMES), "-movflags", "+faststart", str(out_path)]


# --- planning ----------------------------------------------------------------------------------------------

class ConceptDeck:
    """Deals concepts from shuffled decks of the whole vocabulary, so a library shows all of them."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.cards: list[vocab.Concept] = []

    def deal(self, avoid: set[vocab.Concept]) -> vocab.Concept:
        """The next concept of the deck that is not in ``avoid`` (a new deck once this one runs out)."""
        for _ in range(2):
            if not self.cards:
                self.cards = [vocab.CONCEPTS[i] for i in self.rng.permutation(len(vocab.CONCEPTS))]
            for index, concept in enumerate(self.cards):
                if concept not in avoid:
                    return self.cards.pop(index)
            self.cards = []
        raise ValueError(f"every concept is avoided: {sorted(avoid)}")


def plan_shot(rng: np.random.Generator, concept: vocab.Concept, frames: int, still: bool = False,
              background: vocab.Background | None = None) -> Shot:
    """A shot of ``concept``; the object stays inside the frame while it drifts."""
    width, height = FRAME_SIZE_PX
    scene = vocab.random_scene(rng, concept.shape, concept.colour, aspect=width / height,
                               size_range=VIDEO_SIZE_RANGE, max_rotation_deg=10.0, colour_jitter=False,
                               background=background)
    if still or rng.random() < 0.3:
        return Shot(frames, scene, (scene.centre_x, scene.centre_y))
    half_y = scene.size / 2 * 1.08
    half_x = half_y * height / width
    end_x = float(np.clip(scene.centre_x + rng.uniform(-MAX_DRIFT, MAX_DRIFT), half_x, 1 - half_x))
    end_y = float(np.clip(scene.centre_y + rng.uniform(-MAX_DRIFT, MAX_DRIFT), half_y, 1 - half_y))
    return Shot(frames, scene, (end_x, end_y))


def seconds_to_frames(seconds: float) -> int:
    return max(1, round(seconds * FPS))


def plan_first_video(rng: np.random.Generator, deck: ConceptDeck) -> VideoPlan:
    """demo_01: nine shots of 0.52-20 s, a fade between shots 3 and 4, an equal-luma cut between 6 and 7."""
    durations_s = (2.0, 0.52, 4.0, 20.0, 1.0, 3.0, 6.0, 2.6, 0.8)
    fade_after, equal_luma_after = 2, 5
    plan = VideoPlan("demo_01.mp4")
    for index, seconds in enumerate(durations_s):
        frames = seconds_to_frames(seconds)
        previous = {plan.shots[-1].scene.concept} if plan.shots else set()
        if index == equal_luma_after:
            shot = plan_shot(rng, EQUAL_LUMA_PAIR[0], frames, still=True,
                             background=vocab.Background("plain", 70, 70, (0, 0, 0)))
        elif index == equal_luma_after + 1:
            # Same background, place, size and angle as the shot before; only the hue changes.
            red, blue = plan.shots[-1].scene, EQUAL_LUMA_PAIR[1]
            shot = Shot(frames, replace(red, shape=blue.shape, colour=blue.colour, rgb=vocab.COLOURS[blue.colour]),
                        (red.centre_x, red.centre_y))
        else:
            avoid = previous | ({EQUAL_LUMA_PAIR[0]} if index + 1 == equal_luma_after else set())
            shot = plan_shot(rng, deck.deal(avoid), frames)
        plan.shots.append(replace(shot, fade_out=index == fade_after, fade_in=index == fade_after + 1))
    plan.equal_luma_cuts.add(equal_luma_after)
    return plan


def plan_short_video(rng: np.random.Generator, deck: ConceptDeck, name: str) -> VideoPlan:
    """3-6 shots of 1.5-7 s (10-30 s in all); now and then a fade between two shots."""
    count = int(rng.integers(3, 7))
    while True:
        durations = [int(rng.integers(round(1.5 * FPS), 7 * FPS + 1)) for _ in range(count)]
        if 10 * FPS <= sum(durations) <= 30 * FPS:
            break
    plan = VideoPlan(name)
    fade_next = False
    for frames in durations:
        previous = {plan.shots[-1].scene.concept} if plan.shots else set()
        shot = replace(plan_shot(rng, deck.deal(previous), frames), fade_in=fade_next)
        fade_next = len(plan.shots) + 1 < count and rng.random() < 0.2
        plan.shots.append(replace(shot, fade_out=fade_next))
    return plan


def plan_library(videos: int, seed: int) -> list[VideoPlan]:
    """Plans of ``videos`` videos; the first ``k`` are the same whatever ``videos`` is."""
    if videos < 1:
        raise ValueError(f"videos must be >= 1, got {videos}")
    deck = ConceptDeck(np.random.default_rng([seed, 0]))
    plans = [plan_first_video(np.random.default_rng([seed, 1]), deck)]
    for number in range(2, videos + 1):
        plans.append(plan_short_video(np.random.default_rng([seed, number]), deck, f"demo_{number:02d}.mp4"))
    return plans


# --- rendering ---------------------------------------------------------------------------------------------

def shot_brightness(shot: Shot, frame: int) -> float:
    """Fade factor (0 black .. 1 full) of frame ``frame`` of a shot."""

    def ramp(frames_from_edge: int) -> float:  # black, then a linear ramp up to full brightness
        return float(np.clip((frames_from_edge - BLACK_FRAMES // 2 + 1) / (FADE_FRAMES + 1), 0.0, 1.0))

    brightness = 1.0
    if shot.fade_in:
        brightness = min(brightness, ramp(frame))
    if shot.fade_out:
        brightness = min(brightness, ramp(shot.frames - 1 - frame))
    return brightness


def video_frames(plan: VideoPlan) -> Iterator[np.ndarray]:
    """Every frame of a planned video, RGB uint8 HxWx3."""
    width, height = FRAME_SIZE_PX
    for shot in plan.shots:
        background = vocab.render_background(shot.scene.background, width, height)
        (x0, y0), (x1, y1) = (shot.scene.centre_x, shot.scene.centre_y), shot.end_centre
        for frame in range(shot.frames):
            t = frame / max(1, shot.frames - 1)
            scene = replace(shot.scene, centre_x=x0 + (x1 - x0) * t, centre_y=y0 + (y1 - y0) * t)
            pixels = np.asarray(vocab.render_scene(scene, width, height, background=background))
            brightness = shot_brightness(shot, frame)
            if brightness < 1.0:
                pixels = (pixels.astype(np.float32) * brightness).round().astype(np.uint8)
            yield pixels


def write_video(plan: VideoPlan, out_path: Path, ffmpeg: str = "ffmpeg") -> None:
    """Render a planned video and encode it with ffmpeg."""
    width, height = FRAME_SIZE_PX
    argv = encode_argv(out_path, width, height, FPS, ffmpeg)
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        try:
            for pixels in video_frames(plan):
                process.stdin.write(pixels.tobytes())
        except BrokenPipeError:
            pass  # ffmpeg quit early; its exit status and stderr say why, below
        _, stderr = process.communicate()
    if process.returncode != 0:
        raise VideoEncodeError(out_path, process.returncode, stderr.decode(errors="replace"))


def truth_of(plan: VideoPlan) -> dict:
    """The truth.json entry of a planned video."""
    shots, transitions = [], []
    start = 0
    for index, shot in enumerate(plan.shots):
        end = start + shot.frames
        shots.append({"start_s": start / FPS, "end_s": end / FPS, "shape": shot.scene.shape,
                      "colour": shot.scene.colour, "caption": shot.scene.concept.caption,
                      "caption_zh": shot.scene.concept.caption_zh})
        if index + 1 < len(plan.shots):
            if shot.fade_out:
                half_black = BLACK_FRAMES // 2
                transitions.append({
                    "time_s": end / FPS, "kind": "fade", "equal_brightness": False,
                    "fade_out_start_s": (end - half_black - FADE_FRAMES) / FPS,
                    "black_start_s": (end - half_black) / FPS, "black_end_s": (end + half_black) / FPS,
                    "fade_in_end_s": (end + half_black + FADE_FRAMES) / FPS})
            else:
                transitions.append({"time_s": end / FPS, "kind": "cut",
                                    "equal_brightness": index in plan.equal_luma_cuts})
        start = end
    return {"file": plan.name, "duration_s": start / FPS, "frames": start, "fps": FPS,
            "width": FRAME_SIZE_PX[0], "height": FRAME_SIZE_PX[1], "shots": shots, "transitions": transitions}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="folder for the videos and truth.json")
    parser.add_argument("--videos", type=int, default=24, help="how many videos (the first is demo_01)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--ffmpeg", default="ffmpeg", help="ffmpeg binary")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    entries = []
    for plan in plan_library(args.videos, args.seed):
        write_video(plan, args.outdir / plan.name, args.ffmpeg)
        entries.append(truth_of(plan))
        if not args.quiet:
            print(f"{plan.name}: {len(plan.shots)} shots, {entries[-1]['duration_s']:.2f} s "
                  f"[{time.perf_counter() - started:.1f} s]", flush=True)
    truth = {"fps": FPS, "seed": args.seed, "videos": entries}
    (args.outdir / "truth.json").write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return truth


if __name__ == "__main__":
    main()
