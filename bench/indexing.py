"""Indexing through the real Flow, its parts alone (decode, encode), and the VCED baseline."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.measure import cpu_by_service, free_port, median, python_children_peak_rss_mb
from bench.worker import run_in_child


@dataclass
class FlowIndexRun:
    wall_s: float
    frames: int
    shots: int
    peak_rss_mb: dict[int, float]  # pid -> VmHWM of each Python process of the Flow
    cpu_s: float = 0.0  # CPU seconds the Flow's processes spent while indexing (all cores)
    cpu_by_service: dict[str, float] | None = None  # the same, per service (video_loader, gateway, ...)

    @property
    def max_rss_mb(self) -> float:
        return max(self.peak_rss_mb.values(), default=0.0)

    @property
    def total_rss_mb(self) -> float:
        return sum(self.peak_rss_mb.values())


def start_flow(model: str, pretrained: str, media_root: Path, workspace: Path, overrides: dict | None = None,
               flow: str = ""):
    """The real Flow on free ports (a context manager: ``with start_flow(...) as flow``); ``flow``: a
    flow.yml other than the repository's."""
    from clipseek.engine.serve import BackgroundFlow, ServeSettings

    settings = ServeSettings(grpc_port=free_port(), http_port=free_port(), flow=flow)
    return BackgroundFlow(settings, {"model": model, "pretrained": pretrained, "media_roots": [str(media_root)],
                                     "workspace": str(workspace), **(overrides or {})})


def index_with(flow, video: Path, chunk_s: float | None = None, in_flight: int | None = None) -> FlowIndexRun:
    """Index ``video`` (force) through a running Flow over HTTP; peak RSS is over the Flow's life so far."""
    from clipseek.api.client import DEFAULT_CHUNK_S, DEFAULT_IN_FLIGHT, ClipseekClient

    client = ClipseekClient(flow.http)
    cpu_before = cpu_by_service(os.getpid())
    started = time.perf_counter()
    report = client.index([str(video)], force=True, chunk_s=chunk_s or DEFAULT_CHUNK_S,
                          in_flight=in_flight or DEFAULT_IN_FLIGHT)
    wall_s = time.perf_counter() - started
    services: dict[str, float] = {}
    for pid, (name, cpu) in cpu_by_service(os.getpid()).items():
        services[name] = services.get(name, 0.0) + cpu - cpu_before.get(pid, (name, 0.0))[1]
    cpu_s = sum(services.values())
    outcome = report.outcomes[0]
    if outcome.status != "indexed":
        raise RuntimeError(f"indexing {video} failed: {outcome.status} {outcome.error}")
    return FlowIndexRun(wall_s, outcome.num_frames, outcome.num_shots, python_children_peak_rss_mb(os.getpid()),
                        cpu_s, services)


def index_through_flow(video: Path, model: str, pretrained: str, overrides: dict | None = None,
                       chunk_s: float | None = None) -> FlowIndexRun:
    """Start a fresh Flow (fresh workspace, so the peak RSS is this run's alone) and index ``video``."""
    with tempfile.TemporaryDirectory(prefix="clipseek-bench-ws-") as workspace:
        with start_flow(model, pretrained, video.parent, Path(workspace), overrides) as flow:
            return index_with(flow, video, chunk_s)


def index_in_fresh_process(video: str, model: str, pretrained: str, overrides: dict | None = None,
                           chunk_s: float | None = None) -> dict:
    """``index_through_flow`` as a bench.worker task: the Flow's executors are forked from a fresh
    process that has no threads yet (forking a process that already ran a Flow, with its gRPC
    threads, deadlocked the children now and then)."""
    run = index_through_flow(Path(video), model, pretrained, overrides, chunk_s)
    return {"wall_s": run.wall_s, "frames": run.frames, "shots": run.shots, "peak_rss_mb": run.peak_rss_mb,
            "cpu_s": run.cpu_s}


def index_in_child(video: Path, model: str, pretrained: str, overrides: dict | None = None,
                   chunk_s: float | None = None) -> FlowIndexRun:
    done = run_in_child("flow_index", video=str(video), model=model, pretrained=pretrained, overrides=overrides,
                        chunk_s=chunk_s)
    return FlowIndexRun(done["wall_s"], done["frames"], done["shots"],
                        {int(pid): mb for pid, mb in done["peak_rss_mb"].items()}, done.get("cpu_s", 0.0))


@dataclass
class PartsRun:
    decode_s: float  # ffmpeg decode + shot scan + sampling (the loader's work), all ranges
    encode_s: float  # image encoder alone on the sampled frames
    frames: int


def decode_and_encode_alone(video: str, model: str, pretrained: str, chunk_s: float | None = None,
                            batch_size: int = 32) -> PartsRun:
    """The loader's and the image encoder's work on ``video`` (in the client's ranges), one after the
    other, in this process (run it through bench.worker), the encoder at the Flow's precision."""
    from clipseek.api.client import DEFAULT_CHUNK_S, plan_ranges

    chunk_s = chunk_s or DEFAULT_CHUNK_S
    from clipseek.media.scan import scan_range
    from clipseek.media.shots import SamplingSettings
    from clipseek.media.video import probe
    from clipseek.model.clip import load_clip
    from clipseek.model.spec import image_size_for

    video = Path(video)
    info = probe(video)
    size_px = image_size_for(model, pretrained)
    sampling = SamplingSettings()  # the loader's defaults
    pixels = []
    started = time.perf_counter()
    for start_s, end_s in plan_ranges(info.duration_s, chunk_s):
        scan = scan_range(video, info, sampling, size_px, start_s, end_s).scan
        pixels.extend(f.pixels for f in scan.frames)
    decode_s = time.perf_counter() - started
    # the image encoder's precision and device as the Flow's gets them (CLIPSEEK_PRECISION, ...)
    from clipseek.settings import load_settings
    from services.image_encoder.executor import ImageEncoderSettings

    settings = load_settings(ImageEncoderSettings)
    clip = load_clip(model, pretrained, settings.device, settings.precision, towers="image")
    frames = np.stack(pixels)
    started = time.perf_counter()
    clip.encode_frames(frames, batch_size)
    encode_s = time.perf_counter() - started
    return PartsRun(decode_s, encode_s, len(frames))


def vced_baseline(video: Path, model: str, pretrained: str) -> dict:
    """One run of bench/vced_baseline.py in a child process (its own peak RSS)."""
    return run_in_child("baseline", video=str(video), model=model, pretrained=pretrained)


@dataclass
class IndexingResult:
    video: str
    model: str
    duration_s: float
    ours: list[FlowIndexRun]
    parts: list[PartsRun]
    baseline: list[dict]

    @property
    def wall_s(self) -> float:
        return median([r.wall_s for r in self.ours])

    @property
    def frames(self) -> int:
        return self.ours[0].frames

    @property
    def decode_s(self) -> float:
        return median([p.decode_s for p in self.parts])

    @property
    def encode_s(self) -> float:
        return median([p.encode_s for p in self.parts])

    @property
    def baseline_wall_s(self) -> float:
        return median([b["wall_s"] for b in self.baseline])

    @property
    def speedup_ratios(self) -> list[float]:
        """Baseline wall / ours wall, pairing the runs made back to back."""
        return [b["wall_s"] / o.wall_s for b, o in zip(self.baseline, self.ours, strict=False)]


def measure_indexing(label: str, video: Path, duration_s: float, model: str, pretrained: str, runs: int,
                     with_parts: bool, with_baseline: bool, log) -> IndexingResult:
    """``runs`` rounds of: ours through the Flow, then (optionally) decode/encode alone and the baseline,
    interleaved so that the machine's background load hits all of them alike."""
    result = IndexingResult(label, model, duration_s, [], [], [])
    for i in range(runs):
        result.ours.append(index_in_child(video, model, pretrained))
        log(f"  {label} {model} run {i + 1}: ours {result.ours[-1].wall_s:.1f} s, "
            f"{result.ours[-1].frames} frames, peak RSS MiB {sorted(result.ours[-1].peak_rss_mb.values())}")
        if with_parts:
            result.parts.append(PartsRun(**run_in_child("parts", video=str(video), model=model,
                                                         pretrained=pretrained)))
            log(f"    decode alone {result.parts[-1].decode_s:.1f} s, encode alone {result.parts[-1].encode_s:.1f} s")
        if with_baseline:
            result.baseline.append(vced_baseline(video, model, pretrained))
            b = result.baseline[-1]
            log(f"    VCED baseline {b['wall_s']:.1f} s (decode {b['decode_s']:.1f} s, encode {b['encode_s']:.1f} s), "
                f"{b['frames']} frames, peak RSS {b['peak_rss_mb']:.0f} MiB")
    return result
