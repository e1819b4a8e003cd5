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


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, capture_output=True)


def make_audio_only(path: Path) -> None:
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(path))


def make_one_frame(path: Path) -> None:
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x120:r=25", "-frames:v", "1", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", str(path))


def make_tiny(path: Path, size_px: int = 16) -> None:
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={size_px}x{size_px}:r=25:d=2", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", str(path))


def make_truncated(source: Path, path: Path, keep: float = 0.5) -> None:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def make_bad_files(root: Path, good_video: Path) -> dict[str, Path]:
    """The bad inputs the engine must survive, by name."""
    files = {
        "empty": root / "empty.mp4",
        "random": root / "random_bytes.mp4",
        "text": root / "notes.txt",
        "truncated": root / "truncated.mp4",
        "audio_only": root / "audio_only.mp4",
    }
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(bytes((i * 7919 + 13) % 251 for i in range(50_000)))
    files["text"].write_text("not a video")
    make_truncated(good_video, files["truncated"])
    make_audio_only(files["audio_only"])
    return files
