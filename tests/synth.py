"""Synthetic test videos made with ffmpeg's lavfi sources, with exactly known cut times."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Segment:
    colour: str  # any ffmpeg colour: "red", "0x00FF00", ...
    duration_s: float
    source: str = "color"  # "color", or "testsrc2" (moving pattern), "smptebars"
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0


def make_video(path: Path, segments: list[Segment], size: str = "160x120", fps: int = 25,
               codec: str = "libx264", extra: list[str] | None = None) -> list[float]:
    """Write the segments one after another; returns the cut times (start of each segment after the first)."""
    inputs: list[str] = []
    chains: list[str] = []
    for i, seg in enumerate(segments):
        if seg.source == "color":
            src = f"color=c={seg.colour}:s={size}:r={fps}:d={seg.duration_s}"
        else:
            src = f"{seg.source}=s={size}:r={fps}:d={seg.duration_s}"
        inputs += ["-f", "lavfi", "-i", src]
        fades = []
        if seg.fade_in_s:
            fades.append(f"fade=t=in:st=0:d={seg.fade_in_s}")
        if seg.fade_out_s:
            fades.append(f"fade=t=out:st={seg.duration_s - seg.fade_out_s}:d={seg.fade_out_s}")
        chains.append(f"[{i}:v]{','.join(fades) or 'null'},setsar=1[v{i}]")
    concat = "".join(f"[v{i}]" for i in range(len(segments)))
    graph = ";".join(chains) + f";{concat}concat=n={len(segments)}:v=1[out]"
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, "-filter_complex", graph, "-map", "[out]",
            "-c:v", codec, *(["-pix_fmt", "yuv420p"] if codec == "libx264" else []), *(extra or []), str(path)]
    subprocess.run(argv, check=True, capture_output=True)
    cuts, t = [], 0.0
    for seg in segments[:-1]:
        t += seg.duration_s
        cuts.append(round(t, 6))
    return cuts
