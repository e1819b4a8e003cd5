"""The demo vocabulary (shapes x colours), its captions, and the renderer that draws its scenes.

One renderer serves three callers: training the demo model, evaluating it, and drawing the demo videos.
A :class:`Scene` says what is in a frame (shape, colour, position and size relative to the frame,
background); :func:`render_scene` draws it at any width/height, so the same scene can be a 320x240 video
frame or a 16:9 training image. Backgrounds are grey (at most a faint tint) and never brighter than
``BACKGROUND_MAX_LEVEL``, so no background can be mistaken for an object colour.

Captions come in English and Chinese (``LANGUAGES``): "a red circle", "一个红色的圆形", and several other
phrasings of each.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart", "ring", "diamond")

# Saturated, well separated hues plus white. Red and blue have the same Rec. 601 luma (~97) on
# purpose: a hard cut between them keeps the frame's brightness, which brightness-based cut
# detection (ffmpeg's scene score) misses; the demo videos use that pair for such a cut.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "orange": (255, 140, 0),
    "yellow": (245, 225, 40),
    "green": (40, 180, 50),
    "cyan": (30, 210, 225),
    "blue": (45, 95, 245),
    "purple": (150, 60, 210),
    "white": (245, 245, 245),
}

BACKGROUND_KINDS: tuple[str, ...] = ("plain", "noise", "gradient", "stripes", "blotches")
BACKGROUND_MAX_LEVEL = 170  # grey level; white objects (245) and yellow ones (luma ~210) stay clear of it

# Phrasings of one concept. "{a}" is the article ("a" or "an"). The first is the canonical caption.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "{a} {colour} {shape}",
    "a photo of {a} {colour} {shape}",
    "{a} {colour} {shape} on a plain background",
    "{colour} {shape}",
    "the {colour} {shape}",
    "a picture of {a} {colour} {shape}",
    "a video frame showing {a} {colour} {shape}",
    "{a} {shape} that is {colour}",
)


# The same vocabulary in Chinese, and its phrasings ("{colour}" and "{shape}" are the Chinese words).
COLOURS_ZH: dict[str, str] = {
    "red": "红色", "orange": "橙色", "yellow": "黄色", "green": "绿色",
    "cyan": "青色", "blue": "蓝色", "purple": "紫色", "white": "白色",
}
SHAPES_ZH: dict[str, str] = {
    "circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形",
    "cross": "十字", "heart": "心形", "ring": "圆环", "diamond": "菱形",
}
CAPTION_TEMPLATES_ZH: tuple[str, ...] = (
    "一个{colour}的{shape}",
    "{colour}{shape}",
    "{colour}的{shape}",
    "一张{colour}{shape}的照片",
    "画面中有一个{colour}的{shape}",
    "纯色背景上的{colour}{shape}",
    "这个{shape}是{colour}的",
    "视频里出现了一个{colour}的{shape}",
)
TEMPLATES: dict[str, tuple[str, ...]] = {"en": CAPTION_TEMPLATES, "zh": CAPTION_TEMPLATES_ZH}
LANGUAGES: tuple[str, ...] = tuple(TEMPLATES)


class Concept(NamedTuple):
    """One thing the demo model knows: a shape of a colour."""

    shape: str
    colour: str

    @property
    def caption(self) -> str:
        """The canonical caption, e.g. "a red circle", "an orange star"."""
        return caption(self.shape, self.colour)

    @property
    def caption_zh(self) -> str:
        """The canonical Chinese caption, e.g. "一个红色的圆形"."""
        return caption(self.shape, self.colour, language="zh")


CONCEPTS: tuple[Concept, ...] = tuple(Concept(shape, colour) for shape in SHAPES for colour in COLOURS)


def caption(shape: str, colour: str, template: int = 0, language: str = "en") -> str:
    """Caption of a concept in phrasing ``template`` (an index into ``TEMPLATES[language]``)."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    if colour not in COLOURS:
        raise ValueError(f"colour must be one of {tuple(COLOURS)}, got {colour!r}")
    if language not in TEMPLATES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    templates = TEMPLATES[language]
    if not 0 <= template < len(templates):
        raise ValueError(f"template must be 0..{len(templates) - 1}, got {template}")
    if language == "zh":
        return templates[template].format(colour=COLOURS_ZH[colour], shape=SHAPES_ZH[shape])
    article = "an" if colour[0] in "aeiou" else "a"
    return templates[template].format(a=article, colour=colour, shape=shape)


def captions(shape: str, colour: str, language: str | None = None) -> list[str]:
    """Every phrasing of a concept's caption, in ``language`` (every language if None)."""
    if language is not None and language not in TEMPLATES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    languages = LANGUAGES if language is None else (language,)
    return [caption(shape, colour, t, lang) for lang in languages for t in range(len(TEMPLATES[lang]))]


@dataclass(frozen=True)
class Background:
    """A desaturated background. Levels are grey values 0-255; lengths are fractions of frame height."""

    kind: str = "plain"
    level: int = 40
    level2: int = 40  # second grey of a gradient or stripes, spread of blotches
    tint: tuple[int, int, int] = (0, 0, 0)  # small per-channel offset, keeps backgrounds near grey
    angle_deg: float = 0.0  # direction of a gradient or of stripes
    period: float = 0.1  # stripe period, fraction of frame height
    noise_sigma: float = 0.0
    seed: int = 0  # seeds the noise and blotches, so a background is the same every time it is drawn


@dataclass(frozen=True)
class Scene:
    """One object on a background. Position is the object's centre as fractions of the frame's width and
    height; ``size`` is the object's extent as a fraction of the frame height."""

    shape: str
    colour: str
    rgb: tuple[int, int, int]
    centre_x: float = 0.5
    centre_y: float = 0.5
    size: float = 0.4
    rotation_deg: float = 0.0
    background: Background = Background()

    @property
    def concept(self) -> Concept:
        return Concept(self.shape, self.colour)


# --- sampling -------------------------------------------------------------------------------------------

def random_background(rng: np.random.Generator, kinds: tuple[str, ...] = BACKGROUND_KINDS) -> Background:
    """A random desaturated background of one of ``kinds``."""
    kind = str(rng.choice(kinds))
    level = int(rng.integers(0, BACKGROUND_MAX_LEVEL + 1))
    tint = tuple(int(v) for v in rng.integers(-6, 7, size=3))
    if kind == "plain":
        return Background(kind, level, level, tint, seed=int(rng.integers(2**31)))
    if kind == "noise":
        return Background(kind, int(rng.integers(20, 150)), 0, tint, noise_sigma=float(rng.uniform(5, 25)),
                          seed=int(rng.integers(2**31)))
    if kind == "gradient":
        level2 = int(rng.integers(0, BACKGROUND_MAX_LEVEL + 1))
        return Background(kind, level, level2, tint, angle_deg=float(rng.uniform(0, 360)),
                          seed=int(rng.integers(2**31)))
    if kind == "stripes":
        level = int(rng.integers(0, BACKGROUND_MAX_LEVEL - 50))
        level2 = level + int(rng.integers(15, 51))
        angle = float(rng.choice([0.0, 90.0, 45.0, -45.0])) + float(rng.uniform(-10, 10))
        return Background(kind, level, level2, tint, angle_deg=angle, period=float(rng.uniform(0.05, 0.3)),
                          seed=int(rng.integers(2**31)))
    if kind == "blotches":
        level = int(rng.integers(30, 140))
        return Background(kind, level, int(rng.integers(10, 31)), tint, seed=int(rng.integers(2**31)))
    raise ValueError(f"background kind must be one of {BACKGROUND_KINDS}, got {kind!r}")


@dataclass(frozen=True)
class Variety:
    """How far random scenes stray from plain ones. The defaults add nothing (the demo videos and the
    held-out frames use them); training asks for more, so the model holds on footage drawn otherwise."""

    log_size: bool = False  # draw sizes uniformly on a log scale (as many small objects as large ones)
    overflow: float = 0.0  # share of the object's width/height that may lie outside the frame
    hue_jitter_deg: float = 0.0  # object hue moved by up to this much
    min_saturation: float = 1.0  # object colour mixed towards its grey down to this saturation factor


PLAIN = Variety()


def jitter_rgb(rng: np.random.Generator, rgb: tuple[int, int, int], channel: int = 12,
               brightness: tuple[float, float] = (0.85, 1.05), hue_deg: float = 0.0,
               min_saturation: float = 1.0) -> tuple[int, int, int]:
    """A colour near ``rgb``: hue moved by up to ``hue_deg`` and saturation scaled down to
    ``min_saturation`` (each only when asked for), scaled in brightness, then each channel moved by up to
    ``channel``."""
    values = np.asarray(rgb, dtype=np.float64)
    if hue_deg > 0 or min_saturation < 1.0:
        hue, lightness, saturation = colorsys.rgb_to_hls(*(values / 255.0))
        hue = (hue + rng.uniform(-hue_deg, hue_deg) / 360.0) % 1.0
        saturation *= rng.uniform(min_saturation, 1.0)
        values = np.asarray(colorsys.hls_to_rgb(hue, lightness, saturation)) * 255.0
    scale = rng.uniform(*brightness)
    moved = values * scale + rng.integers(-channel, channel + 1, size=3)
    return tuple(int(v) for v in np.clip(np.round(moved), 0, 255))


def random_scene(rng: np.random.Generator, shape: str | None = None, colour: str | None = None,
                 aspect: float = 4 / 3, size_range: tuple[float, float] = (0.22, 0.65),
                 max_rotation_deg: float = 15.0, colour_jitter: bool = True,
                 background: Background | None = None, variety: Variety = PLAIN) -> Scene:
    """A random scene of one object inside a frame of width/height ``aspect`` (wholly inside unless
    ``variety.overflow`` lets part of it out).

    ``shape``/``colour`` left out are drawn at random; ``background`` left out is drawn at random.
    """
    shape = str(rng.choice(SHAPES)) if shape is None else shape
    colour = str(rng.choice(list(COLOURS))) if colour is None else colour
    if shape not in SHAPES or colour not in COLOURS:
        raise ValueError(f"unknown concept {colour!r} {shape!r}; shapes {SHAPES}, colours {tuple(COLOURS)}")
    low, high = size_range
    if not 0 < low <= high:
        raise ValueError(f"size_range must be 0 < low <= high, got {size_range}")
    size = float(np.exp(rng.uniform(math.log(low), math.log(high))) if variety.log_size else rng.uniform(low, high))
    # Half the object's extent, as fractions of width and height, with a little room for rotation.
    half_y = size / 2 * 1.08
    half_x = half_y / aspect
    if half_x >= 0.5 or half_y >= 0.5:
        raise ValueError(f"object of size {size:.2f} does not fit a frame of aspect {aspect:.2f}")
    if colour_jitter:
        rgb = jitter_rgb(rng, COLOURS[colour], hue_deg=variety.hue_jitter_deg, min_saturation=variety.min_saturation)
    else:
        rgb = COLOURS[colour]
    out_x, out_y = 2 * half_x * variety.overflow, 2 * half_y * variety.overflow
    return Scene(
        shape=shape,
        colour=colour,
        rgb=rgb,
        centre_x=float(rng.uniform(half_x - out_x, 1 - half_x + out_x)),
        centre_y=float(rng.uniform(half_y - out_y, 1 - half_y + out_y)),
        size=size,
        rotation_deg=float(rng.uniform(-max_rotation_deg, max_rotation_deg)),
        background=random_background(rng) if background is None else background,
    )


# --- drawing --------------------------------------------------------------------------------------------

def _regular_polygon(n: int, radius: float, start_deg: float) -> list[tuple[float, float]]:
    return [(radius * math.cos(math.radians(start_deg + 360 * i / n)),
             radius * math.sin(math.radians(start_deg + 360 * i / n))) for i in range(n)]


def _star() -> list[tuple[float, float]]:
    points = []
    for i in range(10):
        radius = 1.0 if i % 2 == 0 else 0.42
        angle = math.radians(-90 + 36 * i)
        points.append((radius * math.cos(angle), radius * math.sin(angle) + 0.08))
    return points


def _cross(arm: float = 0.34) -> list[tuple[float, float]]:
    a, b = arm, 0.9
    return [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a),
            (-a, -a)]


def _heart(points: int = 48) -> list[tuple[float, float]]:
    raw = []
    for i in range(points):
        t = 2 * math.pi * i / points
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        raw.append((x, -y))  # image y grows downwards
    xs, ys = [p[0] for p in raw], [p[1] for p in raw]
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    half = max(max(xs) - min(xs), max(ys) - min(ys)) / 2
    return [((x - cx) / half * 0.95, (y - cy) / half * 0.95) for x, y in raw]


# Outlines in unit coordinates (the object's extent is about [-1, 1]); circle and ring are drawn as ellipses.
_OUTLINES: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.78, -0.78), (0.78, -0.78), (0.78, 0.78), (-0.78, 0.78)],
    "triangle": [(x, y + 0.2) for x, y in _regular_polygon(3, 1.05, -90)],
    "star": _star(),
    "cross": _cross(),
    "heart": _heart(),
    "diamond": [(0, -1.0), (0.62, 0), (0, 1.0), (-0.62, 0)],
}


def draw_object(image: Image.Image, scene: Scene) -> Image.Image:
    """Draw the scene's object onto ``image`` (in place) and return it."""
    width, height = image.size
    radius_px = scene.size * height / 2
    cx, cy = scene.centre_x * width, scene.centre_y * height
    draw = ImageDraw.Draw(image)
    if scene.shape in ("circle", "ring"):
        r = radius_px * 0.92
        box = (cx - r, cy - r, cx + r, cy + r)
        if scene.shape == "circle":
            draw.ellipse(box, fill=scene.rgb)
        else:
            draw.ellipse(box, outline=scene.rgb, width=max(2, round(r * 0.36)))
        return image
    if scene.shape not in _OUTLINES:
        raise ValueError(f"shape must be one of {SHAPES}, got {scene.shape!r}")
    cos_a, sin_a = math.cos(math.radians(scene.rotation_deg)), math.sin(math.radians(scene.rotation_deg))
    points = [(cx + radius_px * (x * cos_a - y * sin_a), cy + radius_px * (x * sin_a + y * cos_a))
              for x, y in _OUTLINES[scene.shape]]
    draw.polygon(points, fill=scene.rgb)
    return image


def render_background(background: Background, width_px: int, height_px: int) -> Image.Image:
    """Draw a background at ``width_px`` x ``height_px``."""
    if width_px <= 0 or height_px <= 0:
        raise ValueError(f"frame size must be positive, got {width_px}x{height_px}")
    b = background
    if b.kind == "plain":
        rgb = tuple(int(np.clip(b.level + t, 0, 255)) for t in b.tint)
        return Image.new("RGB", (width_px, height_px), rgb)
    if b.kind == "noise":
        rng = np.random.default_rng(b.seed)
        grey = b.level + rng.standard_normal((height_px, width_px), dtype=np.float32) * np.float32(b.noise_sigma)
    elif b.kind in ("gradient", "stripes"):
        angle = math.radians(b.angle_deg)
        xs = np.arange(width_px, dtype=np.float32)[None, :] * np.float32(math.cos(angle) / height_px)
        ys = np.arange(height_px, dtype=np.float32)[:, None] * np.float32(math.sin(angle) / height_px)
        along = xs + ys
        if b.kind == "gradient":
            low = float(along.min())
            span = max(float(along.max()) - low, 1e-6)
            grey = b.level + np.float32((b.level2 - b.level) / span) * (along - np.float32(low))
        else:
            phase = np.floor(along * np.float32(2 / max(b.period, 1e-3))) % 2
            grey = np.where(phase == 0, np.float32(b.level), np.float32(b.level2))
    elif b.kind == "blotches":
        rng = np.random.default_rng(b.seed)
        coarse = rng.standard_normal((4, 5)).astype(np.float32)
        blobs = Image.fromarray(coarse).resize((width_px, height_px), Image.BICUBIC)
        grey = b.level + np.asarray(blobs, dtype=np.float32) * np.float32(b.level2)
    else:
        raise ValueError(f"background kind must be one of {BACKGROUND_KINDS}, got {b.kind!r}")
    rgb = grey[..., None] + np.asarray(b.tint, dtype=np.float32)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def render_scene(scene: Scene, width_px: int, height_px: int, background: Image.Image | None = None) -> Image.Image:
    """Draw a scene at ``width_px`` x ``height_px``.

    ``background`` is an already rendered background of that size (video frames reuse one per shot);
    it is copied, never drawn on.
    """
    if background is None:
        image = render_background(scene.background, width_px, height_px)
    else:
        if background.size != (width_px, height_px):
            raise ValueError(f"background is {background.size}, expected {(width_px, height_px)}")
        image = background.copy()
    return draw_object(image, scene)

