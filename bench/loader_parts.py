"""Where the loader's time goes, and what each decode setting saves: ``python bench/loader_parts.py
[--seconds 120]`` on the first seconds of the benchmark's 10-minute 720p video.

Prints, each the best of ``--repeat`` runs: ffmpeg's bare decode (``-f null``), also with
``-skip_frame noref|bidir|nokey`` (frames the decoder may skip) and the frames each one leaves;
ffmpeg delivering 224 px RGB frames to a pipe with the loader's argv, and with bilinear scaling (the loader's before
this round); and the shot scan alone (``ShotSampler`` over frames already in memory) at the
loader's detection size and at the full 224 px; last the loader's own path for the range (``scan_range``:
keyframe-guided decoding with PyAV, shot scan, sampling), with a digest of the frames it picked and the
shots it found (equal digests: the same pixels and cuts). Not part of ``bench/run.py``: a diagnostic for
docs/benchmarks.md. ``--scan-only``: only scan_range, with the loader's ``keyframe_shortcuts`` off and
on in turn (CPU time, frames decoded, digests of the shots and of the frames picked).
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import inputs  # noqa: E402
from clipseek.media.ffmpeg_cmd import decode_argv, file_url  # noqa: E402
from clipseek.media.scan import scan_range  # noqa: E402
from clipseek.media.shots import SamplingSettings, scan_frames  # noqa: E402
from clipseek.media.video import FrameReader, probe  # noqa: E402


def best_of(repeat: int, run) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def ffmpeg_to_devnull(argv: list[str]) -> None:
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def scan_digest(scan, with_frames: bool = True) -> str:
    """The shots found (and the frames picked, times and pixels): equal digests, the same result."""
    digest = hashlib.sha256(repr([(s.start_s, s.end_s) for s in scan.shots]).encode())
    for frame in scan.frames if with_frames else ():
        digest.update(repr(frame.time_s).encode() + frame.pixels.tobytes())
    return digest.hexdigest()[:16]


def scan_shortcuts(video: Path, info, end: float, repeat: int) -> None:
    """scan_range with the loader's keyframe_shortcuts off and on, in turn ``repeat`` times: wall and CPU
    time (this process, decoder threads included), frames decoded, shots and frames picked."""
    print(f"{video.name}, first {end:.0f} s, scan_range at 224 px, keyframe_shortcuts off/on in turn:")
    for round_ in range(repeat):
        for shortcuts in (False, True):
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            result = scan_range(video, info, SamplingSettings(), 224, 0.0, end, keyframe_shortcuts=shortcuts)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
            used = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
            scan = result.scan
            print(f"  round {round_ + 1}, shortcuts {'on ' if shortcuts else 'off'}: {wall:6.2f} s wall, "
                  f"{used:6.2f} s CPU, {result.frames_decoded} frames decoded, {len(scan.shots)} shots "
                  f"(digest {scan_digest(scan, with_frames=False)}), {len(scan.frames)} frames picked "
                  f"(digest {scan_digest(scan)})", flush=True)
            if result.guide is not None:
                g = result.guide
                print(f"      stretches between keyframes {g.intervals}, decoded {g.intervals_decoded} "
                      f"({g.frames_decoded} frames), taken as cut at an early keyframe {g.keyframe_cuts}, "
                      f"stopped just past a cut {g.stopped_after_jump}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how much of the video (from its start)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--scan-only", action="store_true",
                        help="only the loader's scan_range, with and without keyframe_shortcuts, in turn")
    args = parser.parse_args()
    video = inputs.ensure_video(inputs.FULL_VIDEOS["10min-720p"])
    info = probe(video)
    end = min(args.seconds, info.duration_s)
    if args.scan_only:
        scan_shortcuts(video, info, end, args.repeat)
        return
    bare = ["ffmpeg", "-nostdin", "-v", "error", "-t", f"{end}", "-i", file_url(video), "-an", "-f", "null", "-"]
    ours = decode_argv(video, info, 224, 0.0, end)
    older = [a.replace("flags=area", "flags=bilinear") for a in ours]
    rows = [("ffmpeg bare decode (-f null)", best_of(args.repeat, lambda: ffmpeg_to_devnull(bare)))]
    for skip in ("noref", "bidir", "nokey"):
        at = bare.index("-i")
        argv = bare[:at] + ["-skip_frame", skip] + bare[at:]  # an input (decoder) option
        seconds = best_of(args.repeat, lambda a=argv: ffmpeg_to_devnull(a))
        count_argv = ["ffmpeg", "-nostdin", "-t", f"{end}", "-skip_frame", skip, "-i", file_url(video), "-an",
                      "-vf", "showinfo", "-f", "null", "-"]
        counted = subprocess.run(count_argv, capture_output=True, text=True, check=True).stderr.count("pts_time:")
        rows.append((f"ffmpeg bare decode, -skip_frame {skip} ({counted} frames decoded)", seconds))
    rows += [("ffmpeg -> 224 px RGB pipe, loader's argv (area scaling)",
              best_of(args.repeat, lambda: ffmpeg_to_devnull(ours))),
             ("ffmpeg -> 224 px RGB pipe, bilinear scaling",
              best_of(args.repeat, lambda: ffmpeg_to_devnull(older)))]
    frames = list(FrameReader(video, info, 224, 0.0, end))
    for detect_px in (SamplingSettings().detect_px, 224):
        settings = SamplingSettings(detect_px=detect_px)
        shots: list = []
        seconds = best_of(args.repeat, lambda s=settings, out=shots: out.append(
            scan_frames(frames, s, info.fps, 224, info.aspect, 0.0, end)))
        cuts = ", ".join(f"{s.start_s:.2f}" for s in shots[-1].shots[1:12])
        rows.append((f"shot scan alone, detect_px {detect_px} ({len(shots[-1].shots)} shots: {cuts}, ...)",
                     seconds))
    scans: list = []
    seconds = best_of(args.repeat, lambda: scans.append(scan_range(video, info, SamplingSettings(), 224, 0.0, end)))
    scan = scans[-1].scan
    rows.append((f"the loader's scan_range ({len(scan.frames)} frames picked, {len(scan.shots)} shots, "
                 f"digest {scan_digest(scan)})", seconds))
    print(f"{video.name}, first {end:.0f} s ({len(frames)} frames), best of {args.repeat}:")
    for label, seconds in rows:
        print(f"  {seconds:7.2f} s  {label}")


if __name__ == "__main__":
    main()
