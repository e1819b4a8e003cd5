"""A second renderer of the demo vocabulary: footage the demo model was not trained on.

The demo model is trained on frames drawn by ``clipseek.demo.vocab`` (PIL polygons on grey backgrounds). To
know whether it holds on other footage, this module draws the same concepts with code of its own: each
shape is rasterised from its own geometry (implicit inside-tests and a crossing-number polygon test in
numpy, on a 4x supersampled grid), in its own shades of each colour, on its own backgrounds (checks, radial
and two-tone gradients, smooth clutter, vignettes), in 640x480 (4:3) and 640x360 (16:9) frames at 30 fps
(the demo videos are 320x240 at 25). Objects are small (about a tenth of the frame height), medium or large
(up to 0.8), travel across the frame, start or end near its edges, and shots of 1-6 s are joined by hard
cuts, many of them between two objects of the same colour or the same shape. Frames are piped raw into
ffmpeg (H.264), so every shot starts and ends on a known frame: ``truth.json`` has the times.

    python tests/shape_footage.py OUTDIR [--videos 14] [--seed 77]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from clipseek.demo import vocab  # noqa: E402  (the names of the concepts and their captions only)

FPS = 30
FRAME_SIZES_PX: tuple[tuple[int, int], ...] = ((640, 480), (640, 360))
SUPERSAMPLE = 4
DEFAULT_SEED = 77
DEFAULT_VIDEOS = 14

# This renderer's own shade of each colour name (the training renderer has others).
SHADES: dict[str, tuple[int, int, int]] = {
    "red": (214, 38, 52),
    "orange": (247, 128, 24),
    "yellow": (236, 212, 58),
    "green": (52, 168, 74),
    "cyan": (44, 196, 206),
    "blue": (38, 88, 226),
    "purple": (142, 58, 196),
    "white": (236, 236, 230),
}
SIZE_CLASSES: dict[str, tuple[float, float]] = {  # object height as a fraction of the frame height
    "small": (0.10, 0.15),
    "medium": (0.2, 0.45),
    "large": (0.5, 0.8),
}
BACKGROUND_KINDS = ("checks", "radial", "two-tone", "clutter", "vignette")


class FootageError(RuntimeError):
    """ffmpeg could not write a video; carries its stderr."""


# --- shapes ------------------------------------------------------------------------------------------------

def _inside_polygon(u: np.ndarray, v: np.ndarray, corners: list[tuple[float, float]]) -> np.ndarray:
    """Crossing-number test: which points (u, v) lie inside the closed polygon ``corners``."""
    inside = np.zeros(u.shape, dtype=bool)
    for (u0, v0), (u1, v1) in zip(corners, corners[1:] + corners[:1], strict=True):
        if v0 == v1:
            continue
        crosses = (v0 > v) != (v1 > v)
        u_at = u0 + (v - v0) * (u1 - u0) / (v1 - v0)
        inside ^= crosses & (u < u_at)
    return inside


def _star_corners(points: int = 5, inner: float = 0.5) -> list[tuple[float, float]]:
    corners = []
    for i in range(2 * points):
        radius = 1.0 if i % 2 == 0 else inner
        angle = -math.pi / 2 + math.pi * i / points
        corners.append((radius * math.cos(angle), radius * math.sin(angle) + 0.1))
    return corners


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of ``shape`` at points (u, v), the object spanning about [-1, 1] (v grows downwards)."""
    if shape == "circle":
        return u * u + v * v <= 0.93**2
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 0.95**2) & (r2 >= 0.55**2)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "diamond":
        return np.abs(u) / 0.6 + np.abs(v) / 0.97 <= 1.0
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.92)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.92))
    if shape == "triangle":
        return _inside_polygon(u, v, [(0.0, -0.95), (0.95, 0.75), (-0.95, 0.75)])
    if shape == "star":
        return _inside_polygon(u, v, _star_corners())
    if shape == "heart":  # (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, y up, fitted into [-1, 1]
        x, y = u * 1.2, -(v * 1.15 - 0.15)
        return (x * x + y * y - 1) ** 3 - x * x * y**3 <= 0
    raise ValueError(f"shape must be one of {vocab.SHAPES}, got {shape!r}")


def sprite(shape: str, height_px: float, rotation_deg: float) -> np.ndarray:
    """Coverage (0-1, float32) of ``shape`` drawn ``height_px`` tall, on a square patch around its centre."""
    side = int(math.ceil(height_px * 1.2)) + 2
    steps = (np.arange(side * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE - side / 2
    x, y = np.meshgrid(steps, steps)
    cos_a, sin_a = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    scale = 2.0 / height_px
    u = (x * cos_a + y * sin_a) * scale
    v = (-x * sin_a + y * cos_a) * scale
    fine = shape_mask(shape, u, v).astype(np.float32)
    return fine.reshape(side, SUPERSAMPLE, side, SUPERSAMPLE).mean(axis=(1, 3))


# --- backgrounds -------------------------------------------------------------------------------------------

def background(kind: str, width_px: int, height_px: int, rng: np.random.Generator) -> np.ndarray:
    """A desaturated background, float32 HxWx3 (0-255, never above 165)."""
    ys, xs = np.mgrid[0:height_px, 0:width_px].astype(np.float32)
    low, high = sorted(float(v) for v in rng.uniform(10, 160, size=2))
    if kind == "checks":
        cell = float(rng.uniform(16, 64))
        grey = np.where(((xs // cell + ys // cell) % 2) == 0, low, high)
    elif kind == "radial":
        cx, cy = rng.uniform(0.2, 0.8) * width_px, rng.uniform(0.2, 0.8) * height_px
        distance = np.hypot(xs - cx, ys - cy) / math.hypot(width_px, height_px)
        grey = high + (low - high) * np.clip(distance * 1.6, 0, 1)
    elif kind == "two-tone":
        along, extent = (ys, height_px) if rng.random() < 0.5 else (xs, width_px)
        grey = np.where(along < rng.uniform(0.3, 0.7) * extent, low, high) + xs / width_px * rng.uniform(-15, 15)
    elif kind == "clutter":
        noise = rng.standard_normal((height_px // 8, width_px // 8)).astype(np.float32)
        smooth = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 2.5), (width_px, height_px),
                            interpolation=cv2.INTER_CUBIC)
        grey = (low + high) / 2 + smooth / max(float(np.abs(smooth).max()), 1e-6) * (high - low) / 2
    elif kind == "vignette":
        distance = np.hypot(xs / width_px - 0.5, ys / height_px - 0.5)
        grey = high * (1 - 0.8 * np.clip(distance / 0.7, 0, 1) ** 2)
    else:
        raise ValueError(f"background kind must be one of {BACKGROUND_KINDS}, got {kind!r}")
    tint = rng.uniform(-8, 8, size=3).astype(np.float32)
    return np.clip(grey[..., None] + tint, 0, 165).astype(np.float32)


# --- plans -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShotPlan:
    """One shot: an object of a concept travelling in a straight line from ``start`` to ``end`` (centre
    positions in pixels) over ``frames`` frames, on a background drawn from ``background_seed``."""

    concept: vocab.Concept
    frames: int
    size_class: str
    height_px: float
    rotation_deg: float
    start: tuple[float, float]
    end: tuple[float, float]
    rgb: tuple[int, int, int]
    brightness: float  # the whole shot's exposure (below 1 darker)
    background_kind: str
    background_seed: int
    same_as_previous: str = ""  # "colour", "shape" or "" (what this shot shares with the one before it)


@dataclass
class VideoPlan:
    name: str
    width_px: int
    height_px: int
    shots: list[ShotPlan] = field(default_factory=list)


def next_concept(rng: np.random.Generator, previous: vocab.Concept | None, deck: list[vocab.Concept]
                 ) -> tuple[vocab.Concept, str]:
    """The next shot's concept: a third of the cuts keep the colour, a third keep the shape, the others
    change both; unused concepts (``deck``) first, so the library shows the whole vocabulary."""
    roll = rng.random() if previous is not None else 1.0
    if roll < 1 / 3:
        kind, fits = "colour", [c for c in vocab.CONCEPTS if c.colour == previous.colour and c != previous]
    elif roll < 2 / 3:
        kind, fits = "shape", [c for c in vocab.CONCEPTS if c.shape == previous.shape and c != previous]
    else:
        kind = ""
        fits = [c for c in vocab.CONCEPTS
                if previous is None or (c.colour != previous.colour and c.shape != previous.shape)]
    fresh = [c for c in fits if c in deck]
    concept = fresh[rng.integers(len(fresh))] if fresh else fits[rng.integers(len(fits))]
    if concept in deck:
        deck.remove(concept)
    return concept, kind


def plan_motion(rng: np.random.Generator, width_px: int, height_px: int, half_px: float
                ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Start and end centres: half the shots cross the frame from near one edge to near the other, a
    quarter drift, a quarter stand still; the object stays inside the frame, sometimes close to an edge."""
    lo_x, hi_x, lo_y, hi_y = half_px, width_px - half_px, half_px, height_px - half_px

    def point() -> tuple[float, float]:
        return float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y))

    roll = rng.random()
    if roll < 0.5:
        near = float(rng.uniform(0, 0.06 * width_px))
        if rng.random() < 0.7:  # horizontal pass
            y0, y1 = (float(v) for v in rng.uniform(lo_y, hi_y, size=2))
            start, end = (lo_x + near, y0), (hi_x - near, y1)
        else:  # vertical or diagonal pass
            x0, x1 = (float(v) for v in rng.uniform(lo_x, hi_x, size=2))
            start, end = (x0, lo_y + near), (x1, hi_y - near)
        return (end, start) if rng.random() < 0.5 else (start, end)
    start = point()
    if roll < 0.75:
        end = (float(np.clip(start[0] + rng.uniform(-0.15, 0.15) * width_px, lo_x, hi_x)),
               float(np.clip(start[1] + rng.uniform(-0.15, 0.15) * height_px, lo_y, hi_y)))
        return start, end
    return start, start


def plan_video(rng: np.random.Generator, name: str, width_px: int, height_px: int, deck: list[vocab.Concept]
               ) -> VideoPlan:
    """4-7 shots of 1-6 s, hard cuts between them."""
    plan = VideoPlan(name, width_px, height_px)
    for _ in range(int(rng.integers(4, 8))):
        previous = plan.shots[-1] if plan.shots else None
        concept, same = next_concept(rng, previous.concept if previous else None, deck)
        size_class = str(rng.choice(list(SIZE_CLASSES), p=[0.3, 0.4, 0.3]))
        height = float(rng.uniform(*SIZE_CLASSES[size_class])) * height_px
        start, end = plan_motion(rng, width_px, height_px, height * 0.55)
        rgb = tuple(int(np.clip(v + rng.integers(-10, 11), 0, 255)) for v in SHADES[concept.colour])
        plan.shots.append(ShotPlan(
            concept=concept, frames=int(rng.integers(FPS, 6 * FPS + 1)), size_class=size_class,
            height_px=height, rotation_deg=float(rng.uniform(-12, 12)), start=start, end=end, rgb=rgb,
            brightness=float(rng.uniform(0.65, 1.15)), background_kind=str(rng.choice(BACKGROUND_KINDS)),
            background_seed=int(rng.integers(2**31)), same_as_previous=same))
    return plan


def plan_library(videos: int, seed: int) -> list[VideoPlan]:
    """Plans of ``videos`` videos, alternately 4:3 and 16:9."""
    if videos < 1:
        raise ValueError(f"videos must be >= 1, got {videos}")
    rng = np.random.default_rng(seed)
    deck = list(vocab.CONCEPTS)
    return [plan_video(rng, f"footage_{number:02d}.mp4", *FRAME_SIZES_PX[(number - 1) % len(FRAME_SIZES_PX)],
                       deck)
            for number in range(1, videos + 1)]


# --- rendering ---------------------------------------------------------------------------------------------

def shot_frames(shot: ShotPlan, width_px: int, height_px: int) -> Iterator[np.ndarray]:
    """The frames of one shot, RGB uint8 HxWx3."""
    base = background(shot.background_kind, width_px, height_px, np.random.default_rng(shot.background_seed))
    base = np.clip(base * shot.brightness, 0, 255).round().astype(np.uint8)
    colour = np.clip(np.asarray(shot.rgb, dtype=np.float32) * shot.brightness, 0, 255)
    coverage = sprite(shot.concept.shape, shot.height_px, shot.rotation_deg)[..., None]
    side = coverage.shape[0]
    for index in range(shot.frames):
        t = index / max(1, shot.frames - 1)
        cx = shot.start[0] + (shot.end[0] - shot.start[0]) * t
        cy = shot.start[1] + (shot.end[1] - shot.start[1]) * t
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        frame = base.copy()
        # The part of the patch inside the frame.
        fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(width_px, x0 + side), min(height_px, y0 + side)
        if fx1 > fx0 and fy1 > fy0:
            alpha = coverage[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
            region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
            frame[fy0:fy1, fx0:fx1] = (region * (1 - alpha) + colour * alpha).round().astype(np.uint8)
        yield frame


def encode_argv(out_path: Path, width_px: int, height_px: int, fps: int = FPS) -> list[str]:
    """ffmpeg reads raw RGB frames from stdin and writes H.264 (its default GOP, CRF 23)."""
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width_px}x{height_px}", "-r", str(fps), "-i", "pipe:",
            "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", str(out_path)]


def write_video(plan: VideoPlan, out_path: Path) -> None:
    argv = encode_argv(out_path, plan.width_px, plan.height_px)
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        try:
            for shot in plan.shots:
                for frame in shot_frames(shot, plan.width_px, plan.height_px):
                    process.stdin.write(frame.tobytes())
        except BrokenPipeError:
            pass  # ffmpeg quit early: its exit status and stderr say why, below
        _, stderr = process.communicate()
    if process.returncode != 0:
        raise FootageError(f"ffmpeg could not write {out_path} (exit {process.returncode}): "
                           f"{stderr.decode(errors='replace')[-2000:]}")


def truth_of(plan: VideoPlan) -> dict:
    """The truth.json entry of a video, in the shape ``clipseek.api.demo_eval`` reads."""
    shots, start = [], 0
    for shot in plan.shots:
        end = start + shot.frames
        shots.append({"start_s": start / FPS, "end_s": end / FPS, "shape": shot.concept.shape,
                      "colour": shot.concept.colour, "caption": shot.concept.caption,
                      "caption_zh": shot.concept.caption_zh, "size": shot.size_class,
                      "moves": shot.start != shot.end, "same_as_previous": shot.same_as_previous})
        start = end
    return {"file": plan.name, "duration_s": start / FPS, "frames": start, "fps": FPS,
            "width": plan.width_px, "height": plan.height_px, "shots": shots}


def make_library(outdir: Path, videos: int = DEFAULT_VIDEOS, seed: int = DEFAULT_SEED) -> dict:
    """Write the videos and ``truth.json`` into ``outdir``; returns the truth."""
    outdir.mkdir(parents=True, exist_ok=True)
    entries = []
    for plan in plan_library(videos, seed):
        write_video(plan, outdir / plan.name)
        entries.append(truth_of(plan))
    truth = {"fps": FPS, "seed": seed, "renderer": "tests/shape_footage.py", "videos": entries}
    (outdir / "truth.json").write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return truth


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--videos", type=int, default=DEFAULT_VIDEOS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    truth = make_library(args.outdir, args.videos, args.seed)
    shots = [s for v in truth["videos"] for s in v["shots"]]
    print(f"{len(truth['videos'])} videos, {len(shots)} shots, "
          f"{sum(v['duration_s'] for v in truth['videos']):.1f} s in {args.outdir}")


if __name__ == "__main__":
    main()
