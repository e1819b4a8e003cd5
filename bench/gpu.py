"""The GPU path, measured: ``python bench/gpu.py [--model ViT-B-32] [--video 10min-720p]``.

When CUDA is present (a driver that reports a device, and torch that sees it), it prints:

- decode: bare decode rates, i.e. ffmpeg decoding the video and throwing the frames away, on NVDEC
  (``-hwaccel cuda -hwaccel_output_format cuda``: frames stay on the GPU; one stream, and
  ``--nvdec-streams`` at once) and in software (all cores); the fastest is the decode limit; then the
  loader's own decode argv (clipseek.media.ffmpeg_cmd.decode_argv: frames scaled to the encoder's
  size and piped) with ``-hwaccel cuda`` and in software, and with the scaling done on the GPU
  (``scale_cuda``, not what the loader does: how much a GPU filter graph would add);
- the loader's scan (clipseek.media.scan.scan_range: decode, shot detection, sampling) over the whole
  video in the client's ranges, ``--in-flight`` of them side by side as the Flow's loader runs them:
  keyframe-guided (PyAV, software; when PyAV is installed), full decode on NVDEC, full decode in
  software; the shots of each against the software full decode's;
- compute: the image encoder (image tower, fp16) in images/s at ``--batch``, against the limit of
  the GPU's fp16 matmul rate divided by the model's FLOPs per image (bench/encoder.py's count);
- end to end: the loader's scan feeding the image encoder on the GPU, in one process (video frames/s
  and embedded frames/s, against the decode and compute limits above); and through the real Flow
  when jina is installed.

Without CUDA it prints why and measures nothing. ``--dry-run-cpu`` runs the same code on the CPU
(software decode, CPU matmul): to check the script, not a GPU figure. ``--ffprobe-json FILE``: for a
machine without ffprobe (the lent GPU machine had none), the ffprobe answer for the same generated
video made on another machine; the frame count decoded here is checked against it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import inputs  # noqa: E402
from bench.measure import load_average  # noqa: E402


def cuda_unavailable_reason() -> str:
    """Why the GPU section cannot run here ('' when it can)."""
    from clipseek.media.hardware import cuda_device_count, ffmpeg_hwaccels

    devices = cuda_device_count()
    if devices == 0:
        return "no CUDA device: the driver library (libcuda.so.1) is missing or reports none"
    import torch

    if not torch.cuda.is_available():
        return f"the driver reports {devices} device(s) but torch {torch.__version__} cannot use CUDA"
    if "cuda" not in ffmpeg_hwaccels():
        return "this ffmpeg was built without the cuda hwaccel"
    return ""


def timed_run(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:12])} ...: exit {done.returncode}: "
                           f"{done.stderr.decode(errors='replace')[-800:]}")
    return time.perf_counter() - started


def with_input_args(argv: list[str], extra: list[str]) -> list[str]:
    """``argv`` with ``extra`` options placed just before its ``-i``."""
    at = argv.index("-i")
    return argv[:at] + extra + argv[at:]


def video_info(video: Path, ffprobe_json: str | None):
    from clipseek.media.ffmpeg_cmd import parse_probe
    from clipseek.media.video import probe

    if shutil.which("ffprobe") or not ffprobe_json:
        return probe(video)
    print(f"ffprobe is not installed here: the video's ffprobe answer is {ffprobe_json} (made on another machine "
          f"for the same generated video); its frame count is checked against the frames decoded here")
    info = parse_probe(json.loads(Path(ffprobe_json).read_text()))
    if info is None:
        raise SystemExit(f"{ffprobe_json}: no video stream in it")
    return info


def gpu_scale_argv(video: Path, size_px: int) -> list[str]:
    """Decode on NVDEC and letterbox-scale on the GPU (scale_cuda), then download the small frames:
    a variant the loader does not use, measured to see what a GPU filter graph would add."""
    graph = (f"scale_cuda={size_px}:{size_px}:force_original_aspect_ratio=decrease:format=yuv420p,hwdownload,"
             f"format=yuv420p,pad={size_px}:{size_px}:(ow-iw)/2:(oh-ih)/2,format=rgb24,showinfo")
    return ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info", "-hwaccel", "cuda",
            "-hwaccel_output_format", "cuda", "-i", str(video), "-map", "0:v:0", "-vf", graph,
            "-f", "rawvideo", "-fps_mode", "passthrough", "pipe:"]


def measure_decode(video: Path, info, size_px: int, hwaccel: str | None, streams: int = 1) -> dict[str, float]:
    from clipseek.media.ffmpeg_cmd import decode_argv

    frames = info.num_frames or round(info.fps * info.duration_s)
    bare_sw = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(video), "-map", "0:v:0", "-f", "null", "-"]
    out = {"frames": frames, "bare_sw_fps": frames / timed_run(bare_sw),
           "loader_sw_fps": frames / timed_run(decode_argv(video, info, size_px))}
    if hwaccel:
        bare_hw = with_input_args(bare_sw, ["-hwaccel", hwaccel, "-hwaccel_output_format", hwaccel])
        out["bare_hw_fps"] = frames / timed_run(bare_hw)
        if streams > 1:  # the chip has several decoders: N decodes at once, frames/s summed
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=streams) as pool:
                list(pool.map(lambda _: timed_run(bare_hw), range(streams)))
            out["bare_hw_streams_fps"] = streams * frames / (time.perf_counter() - started)
        out["loader_hw_fps"] = frames / timed_run(decode_argv(video, info, size_px, hwaccel=hwaccel))
        try:
            out["gpu_scale_fps"] = frames / timed_run(gpu_scale_argv(video, size_px))
        except RuntimeError as exc:
            print(f"  (scale_cuda variant failed: {exc})")
    return out


def reader_frames(video: Path, info, size_px: int, hwaccel: str | None) -> tuple[int, float, str | None]:
    """Frames the loader's FrameReader hands on for the whole video, its wall time, and the hwaccel
    it ended on (None: software, also after a fallback)."""
    from clipseek.media.hardware import DecodeChoice, DecodePath
    from clipseek.media.video import FrameReader

    decode = DecodePath(DecodeChoice(hwaccel, "bench")) if hwaccel else None
    reader = FrameReader(video, info, size_px, decode=decode)
    started = time.perf_counter()
    count = sum(1 for _ in reader)
    return count, time.perf_counter() - started, reader.hwaccel


def scan_video(video: Path, info, size_px: int, variant: str, range_s: float, in_flight: int,
               on_range=None) -> dict:
    """scan_range over the whole video in ``range_s`` ranges, ``in_flight`` at once (threads, as the
    Flow's loader serves concurrent ranges); ``on_range(result)`` gets each range's scan as it ends."""
    from clipseek.api.index_run import plan_ranges  # the client's ranges (imports no jina)
    from clipseek.media.hardware import DecodeChoice, DecodePath
    from clipseek.media.scan import scan_range
    from clipseek.media.shots import SamplingSettings

    guided = variant == "guided"
    decode = DecodePath(DecodeChoice("cuda", "bench")) if variant == "full-hw" else None
    sampling = SamplingSettings()

    def one(span):
        result = scan_range(video, info, sampling, size_px, span[0], span[1], use_guide=guided, decode=decode)
        if on_range is not None:
            on_range(result)
        return result

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        results = list(pool.map(one, plan_ranges(info.duration_s, range_s)))
    wall = time.perf_counter() - started
    shots = sorted({round(s.start_s, 3) for r in results for s in r.scan.shots})
    return {"wall_s": wall, "decoded": sum(r.frames_decoded for r in results),
            "sampled": sum(len(r.scan.frames) for r in results), "shot_starts": shots,
            "methods": sorted({r.method for r in results})}


def matmul_tflops(device: str, size: int, dtype_name: str, reps: int = 5) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(reps + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        torch.matmul(a, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e12


def measure_compute(model: str, pretrained: str, device: str, precision: str, batch: int, frames: int):
    import numpy as np

    from bench.encoder import flops_per_image
    from clipseek.model.clip import load_clip

    flops = flops_per_image(load_clip(model, pretrained, "cpu", "fp32", towers="image"))  # FLOPs: device-free
    clip = load_clip(model, pretrained, device, precision, towers="image")
    pixels = np.random.default_rng(0).integers(0, 256, (frames, clip.image_size, clip.image_size, 3), np.uint8)
    clip.encode_frames(pixels[:batch], batch)  # warm-up (cuDNN/cuBLAS pick their kernels)
    started = time.perf_counter()
    clip.encode_frames(pixels, batch)  # ends with the embeddings on the host: synchronised
    images_per_s = frames / (time.perf_counter() - started)
    dtype = {"fp16": "float16", "bf16": "bfloat16"}.get(clip.precision, "float32")
    tflops = matmul_tflops(device, 8192 if device.startswith("cuda") else 2048, dtype)
    limit = tflops * 1e12 / flops
    return clip, {"gflops_per_image": flops / 1e9, "matmul_tflops": tflops, "images_per_s": images_per_s,
                  "limit_images_per_s": limit, "fraction": images_per_s / limit, "precision": clip.precision}


def pipeline(video: Path, info, size_px: int, variant: str, range_s: float, in_flight: int, clip,
             batch: int) -> dict:
    """The loader's scan feeding the image encoder, in this process: ranges are scanned ``in_flight`` at
    once; each range's sampled frames are embedded on the encoder's device as the range ends."""
    import numpy as np

    ready: queue.Queue = queue.Queue()
    embedded = [0]

    def encode_loop():
        while (item := ready.get()) is not None:
            clip.encode_frames(item, batch)
            embedded[0] += len(item)

    encoder = threading.Thread(target=encode_loop)
    encoder.start()
    started = time.perf_counter()
    try:
        scan = scan_video(video, info, size_px, variant, range_s, in_flight,
                          on_range=lambda r: r.scan.frames and ready.put(np.stack([f.pixels for f in r.scan.frames])))
    finally:
        ready.put(None)
        encoder.join()
    wall = time.perf_counter() - started
    return {"wall_s": wall, "embedded": embedded[0], "sampled": scan["sampled"]}


def measure_flow(video: Path, model: str, pretrained: str, device: str, frames: int) -> dict[str, float]:
    from bench.indexing import index_with, start_flow

    with tempfile.TemporaryDirectory(prefix="clipseek-gpu-ws-") as workspace:
        with start_flow(model, pretrained, video.parent, Path(workspace), {"device": device}) as flow:
            run = index_with(flow, video)
    return {"wall_s": run.wall_s, "video_fps": frames / run.wall_s, "embedded_fps": run.frames / run.wall_s,
            "embedded": run.frames}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--video", default="10min-720p", choices=sorted(inputs.FULL_VIDEOS))
    parser.add_argument("--quick", action="store_true", help="the short quick-run videos")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--frames", type=int, default=1024, help="frames embedded for the compute figure")
    parser.add_argument("--range-s", type=float, default=200.0, help="the client's range length (DEFAULT_CHUNK_S)")
    parser.add_argument("--in-flight", type=int, default=3, help="ranges scanned at once (DEFAULT_IN_FLIGHT)")
    parser.add_argument("--nvdec-streams", type=int, default=4,
                        help="bare NVDEC decodes run at once for the GPU's decode limit (it has several decoders)")
    parser.add_argument("--ffprobe-json", help="ffprobe's answer for the video, where ffprobe is missing")
    parser.add_argument("--parts", default="decode,scan,compute,pipeline,flow",
                        help="what to measure, comma-separated (default: all)")
    parser.add_argument("--variants", default="guided,full-hw,full-sw",
                        help="the loader's scans to measure (those this machine can run)")
    parser.add_argument("--shots-out", help="write each scan's shot start times to this JSON file")
    parser.add_argument("--dry-run-cpu", action="store_true", help="run on the CPU to check the script")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(f"load average at start: {load_average()}")
    if args.dry_run_cpu:
        device, hwaccel = "cpu", None
        print("DRY RUN ON THE CPU: software decode and CPU compute; these are not GPU figures")
    else:
        reason = cuda_unavailable_reason()
        if reason:
            print(f"GPU section skipped: {reason}")
            return 0
        import torch

        device, hwaccel = "cuda", "cuda"
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    ffmpeg_version = subprocess.run(["ffmpeg", "-hide_banner", "-version"], capture_output=True, text=True)
    print(f"ffmpeg: {ffmpeg_version.stdout.splitlines()[0] if ffmpeg_version.stdout else '?'}")
    from clipseek.media.hardware import detect_decode

    auto = detect_decode("auto")
    print(f"the loader's setting hwaccel=auto here: {auto.hwaccel or 'software'} ({auto.reason})")
    spec = (inputs.QUICK_VIDEOS if args.quick else inputs.FULL_VIDEOS)[args.video]
    video = inputs.ensure_video(spec)
    info = video_info(video, args.ffprobe_json)
    from clipseek.model.spec import image_size_for

    size_px = image_size_for(args.model)
    frames = info.num_frames or round(info.fps * info.duration_s)
    print(f"video {video.name}: {info.width_px}x{info.height_px}, {info.duration_s:.1f} s, {frames} frames; "
          f"frames {size_px} px")

    limit_fps = None
    if "decode" in parts:
        limit_fps = decode_part(video, info, size_px, hwaccel, frames, args.nvdec_streams)
    scans = {}
    if "scan" in parts or "pipeline" in parts:
        scans = scan_part(video, info, size_px, hwaccel, frames, args, inputs.cut_times(spec))
    clip = c = None
    if "compute" in parts or "pipeline" in parts:
        clip, c = measure_compute(args.model, args.pretrained, device, "auto", args.batch, args.frames)
        print(f"compute ({args.model}, {c['precision']}, batch {args.batch}): {c['images_per_s']:.0f} images/s; "
              f"matmul {c['matmul_tflops']:.1f} TFLOP/s / {c['gflops_per_image']:.2f} GFLOP = limit "
              f"{c['limit_images_per_s']:.0f} images/s -> {c['fraction']:.2f} of the compute limit")
    if "pipeline" in parts:
        fastest = min(scans, key=lambda v: scans[v]["wall_s"])
        p = pipeline(video, info, size_px, fastest, args.range_s, args.in_flight, clip, args.batch)
        video_fps, embedded_fps = frames / p["wall_s"], p["embedded"] / p["wall_s"]
        versus = [f"{video_fps / limit_fps:.2f} of the decode limit"] if limit_fps else []
        versus.append(f"{embedded_fps / c['limit_images_per_s']:.4f} of the compute limit")
        print(f"end to end in one process (the loader's scan, {fastest}, feeding the encoder on {device}): "
              f"{p['wall_s']:.1f} s = {video_fps:.0f} video frames/s ({video_fps / info.fps:.0f}x real time), "
              f"{embedded_fps:.1f} embedded frames/s ({p['embedded']} embedded) -> {', '.join(versus)}")
    if "flow" in parts:
        if importlib.util.find_spec("jina") is None:
            print("end to end through the Flow: not measured, jina is not installed here")
        else:
            e2e = measure_flow(video, args.model, args.pretrained, device, frames)
            print(f"end to end through the Flow: {e2e['wall_s']:.1f} s, {e2e['video_fps']:.0f} video frames/s, "
                  f"{e2e['embedded_fps']:.1f} embedded frames/s ({e2e['embedded']} embedded)")
    print(f"load average at end: {load_average()}")
    return 0


def decode_part(video: Path, info, size_px: int, hwaccel: str | None, frames: int, streams: int) -> float:
    """Prints the decode figures; returns the decode limit in frames/s (NVDEC's, else software's)."""
    d = measure_decode(video, info, size_px, hwaccel, streams)
    print(f"bare decode, frames thrown away: software (all cores) {d['bare_sw_fps']:.0f} frames/s"
          + (f", NVDEC one stream {d['bare_hw_fps']:.0f} frames/s" if hwaccel else "")
          + (f", NVDEC {streams} streams at once {d['bare_hw_streams_fps']:.0f} frames/s"
             if "bare_hw_streams_fps" in d else ""))
    # the decode limit: the fastest bare decode measured (the GPU's decoders together, or the CPU's cores)
    limit_fps = max(d.get("bare_hw_streams_fps", 0.0), d.get("bare_hw_fps", 0.0), d["bare_sw_fps"])
    print(f"decode limit (the fastest bare decode above): {limit_fps:.0f} frames/s")
    loader_fps = d.get("loader_hw_fps", d["loader_sw_fps"])
    print(f"the loader's decode argv (scale + pad + rgb24 + showinfo, to a pipe): software {d['loader_sw_fps']:.0f} "
          f"frames/s" + (f", -hwaccel cuda {d['loader_hw_fps']:.0f} frames/s" if hwaccel else "")
          + (f", scaled on the GPU (scale_cuda) {d['gpu_scale_fps']:.0f} frames/s" if "gpu_scale_fps" in d else "")
          + f" -> {loader_fps / limit_fps:.2f} of the decode limit"
          + (f" ({loader_fps / d['bare_hw_fps']:.2f} of one NVDEC stream)" if hwaccel else ""))
    for hw in ([hwaccel] if hwaccel else []) + [None]:
        count, wall, ended = reader_frames(video, info, size_px, hw)
        print(f"the loader's FrameReader, {'-hwaccel ' + hw if hw else 'software'}: {count} frames in {wall:.1f} s = "
              f"{count / wall:.0f} frames/s (ended on {ended or 'software'}); frame count "
              f"{'matches' if count == frames else 'DIFFERS FROM'} the probe's {frames}")

    return limit_fps


def scan_part(video: Path, info, size_px: int, hwaccel: str | None, frames: int, args, cuts: list[float]) -> dict:
    """Prints the loader's scans of the whole video and how close they place the video's known
    ``cuts``; returns them by variant."""
    wanted = args.variants.split(",")
    variants = [v for v in wanted if (v != "guided" or importlib.util.find_spec("av")) and (v != "full-hw" or hwaccel)]
    if "guided" in wanted and "guided" not in variants:
        print("keyframe-guided scan not measured: PyAV is not installed here")
    scans = {}
    for variant in variants:
        scans[variant] = s = scan_video(video, info, size_px, variant, args.range_s, args.in_flight)
        errors = [min((abs(cut - start) for start in s["shot_starts"]), default=math.inf) for cut in cuts]
        print(f"the loader's scan ({variant}, {args.range_s:.0f} s ranges, {args.in_flight} in flight): "
              f"{s['wall_s']:.1f} s = {frames / s['wall_s']:.0f} video frames/s; {s['decoded']} frames decoded, "
              f"{s['sampled']} sampled, {len(s['shot_starts'])} shots; methods {s['methods']}; "
              f"{sum(e <= 0.1 for e in errors)} of the video's {len(cuts)} cuts found within 0.1 s "
              f"(largest distance {max(errors, default=0.0):.3f} s)")
    if args.shots_out:
        Path(args.shots_out).write_text(json.dumps({v: s["shot_starts"] for v, s in scans.items()}))
    if "full-sw" in scans:
        reference = scans["full-sw"]["shot_starts"]
        for variant, s in scans.items():
            if variant != "full-sw":
                moved = len(set(s["shot_starts"]) ^ set(reference))
                print(f"  shots of {variant} against full-sw: "
                      f"{'the same' if not moved else f'{moved} shot starts differ'}")
    return scans


if __name__ == "__main__":
    sys.exit(main())
