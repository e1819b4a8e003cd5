"""Benchmark videos, generated with ffmpeg's lavfi sources and cached under ``build/bench/``.

A video is a one-minute "block" of shots with hard cuts every 2-6 s (flat colours, moving test
patterns, colour bars, a moving gradient, cellular automata), repeated with the concat demuxer
(stream copy, so a two-hour video costs one minute of encoding). Cut times are known exactly.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO / "build" / "bench"

# (source, option string, seconds): one block's shots. Moving sources make the H.264 decode real work.
# life, cellauto and gradients draw random grids, points and colours unless seeded and given their
# colours: so set, every machine generates the same video.
BLOCK_SHOTS: list[tuple[str, str, float]] = [
    ("testsrc2", "", 4.0),
    ("color", "c=0xC03020", 3.0),
    ("smptehdbars", "", 2.5),
    ("gradients", "speed=0.02:c0=0x3060C0:c1=0xC0A040:seed=3", 5.0),
    ("color", "c=0x2050C0", 3.5),
    ("life", "mold=10:ratio=0.1:death_color=#202060:life_color=#E0E040:seed=7", 4.5),
    ("testsrc2", "alpha=0", 3.0),
    ("color", "c=0x30A050", 2.0),
    ("cellauto", "rule=110:random_seed=5", 4.0),
    ("rgbtestsrc", "", 3.0),
    ("gradients", "speed=0.05:c0=0xFF8000:c1=0x0080FF:seed=13", 6.0),
    ("color", "c=0xE0E0E0", 2.5),
    ("testsrc2", "", 5.0),
    ("life", "ratio=0.3:death_color=#602020:life_color=#40E0E0:seed=11", 3.5),
    ("smptehdbars", "", 3.0),
    ("color", "c=0x804000", 5.5),
]
ENDLESS_SOURCES = {"life", "cellauto"}  # no duration option: trimmed in the filter graph
BLOCK_S = sum(seconds for _, _, seconds in BLOCK_SHOTS)  # 60.0


@dataclass(frozen=True)
class VideoSpec:
    """A benchmark video: ``blocks`` one-minute blocks (or a shorter first block) at this size."""

    name: str
    width_px: int
    height_px: int
    fps: int
    blocks: int
    block_s: float = BLOCK_S  # shorter blocks for quick runs: the shot list is cut at this length
    preset: str = "veryfast"

    @property
    def duration_s(self) -> float:
        return self.blocks * self.block_s

    @property
    def path(self) -> Path:
        return CACHE_DIR / f"{self.name}.mp4"


FULL_VIDEOS = {
    "10min-720p": VideoSpec("10min-720p30", 1280, 720, 30, blocks=10),
    "1min-1080p": VideoSpec("1min-1080p30", 1920, 1080, 30, blocks=1),
    "10min-240p": VideoSpec("10min-240p10", 320, 240, 10, blocks=10, preset="ultrafast"),
    "2h-240p": VideoSpec("2h-240p10", 320, 240, 10, blocks=120, preset="ultrafast"),
}
QUICK_VIDEOS = {
    "10min-720p": VideoSpec("quick-12s-360p", 640, 360, 25, blocks=1, block_s=12.0, preset="ultrafast"),
    "1min-1080p": VideoSpec("quick-6s-540p", 960, 540, 25, blocks=1, block_s=6.0, preset="ultrafast"),
    "10min-240p": VideoSpec("quick-12s-240p", 320, 240, 10, blocks=1, block_s=12.0, preset="ultrafast"),
    "2h-240p": VideoSpec("quick-48s-240p", 320, 240, 10, blocks=4, block_s=12.0, preset="ultrafast"),
}


def cut_times(spec: VideoSpec) -> list[float]:
    """The times of the cuts of ``spec``'s video (a shot starts at each; 0 not included)."""
    starts, t = [], 0.0
    for _ in range(spec.blocks):
        left = spec.block_s
        for _source, _options, seconds in BLOCK_SHOTS:
            if left <= 1e-6:
                break
            starts.append(round(t, 6))
            seconds = min(seconds, left)
            left -= seconds
            t += seconds
    return starts[1:]


def block_argv(spec: VideoSpec, out: Path) -> list[str]:
    """ffmpeg argv writing one block of ``spec``: its shots concatenated, H.264, yuv420p."""
    size = f"{spec.width_px}x{spec.height_px}"
    inputs: list[str] = []
    chains: list[str] = []
    left = spec.block_s
    for source, options, seconds in BLOCK_SHOTS:
        if left <= 1e-6:
            break
        seconds = min(seconds, left)
        left -= seconds
        endless = source in ENDLESS_SOURCES
        opts = ":".join(o for o in (options, f"s={size}", f"r={spec.fps}", "" if endless else f"d={seconds}") if o)
        inputs += ["-f", "lavfi", "-i", f"{source}={opts}"]
        n = len(chains)
        trim = f"trim=duration={seconds},setpts=PTS-STARTPTS," if endless else ""
        chains.append(f"[{n}:v]{trim}format=yuv420p,setsar=1[v{n}]")
    joined = "".join(f"[v{i}]" for i in range(len(chains)))
    graph = ";".join(chains) + f";{joined}concat=n={len(chains)}:v=1[out]"
    return ["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, "-filter_complex", graph, "-map", "[out]",
            "-c:v", "libx264", "-preset", spec.preset, "-g", str(spec.fps * 2), "-pix_fmt", "yuv420p",
            str(out)]


def concat_argv(block: Path, times: int, listing: Path, out: Path) -> list[str]:
    """ffmpeg argv repeating ``block`` ``times`` times by stream copy (concat demuxer)."""
    listing.write_text("".join(f"file '{block.name}'\n" for _ in range(times)))
    return ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
            "-c", "copy", str(out)]


def ensure_video(spec: VideoSpec) -> Path:
    """The video of ``spec``, generated on first use and cached."""
    if spec.path.is_file() and spec.path.stat().st_size > 0:
        return spec.path
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    block = CACHE_DIR / f"{spec.name}.block.mp4"
    subprocess.run(block_argv(spec, block), check=True, capture_output=True)
    if spec.blocks == 1:
        block.replace(spec.path)
        return spec.path
    tmp = spec.path.with_suffix(".tmp.mp4")
    subprocess.run(concat_argv(block, spec.blocks, CACHE_DIR / f"{spec.name}.txt", tmp), check=True,
                   capture_output=True)
    tmp.replace(spec.path)
    block.unlink()
    return spec.path


def videos(quick: bool) -> dict[str, VideoSpec]:
    return QUICK_VIDEOS if quick else FULL_VIDEOS
