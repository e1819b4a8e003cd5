"""The GPU path, measured: ``python bench/gpu.py [--model ViT-B-32] [--video 10min-720p]``.

When CUDA is present (a driver that reports a device, and torch that sees it), it prints:

- decode: the loader's ffmpeg decode (clipseek.ffmpeg_cmd.decode_argv, frames to a pipe at the
  encoder's size) with ``-hwaccel cuda`` and in software, in frames/s, against the bare NVDEC limit
  (``ffmpeg -hwaccel cuda -hwaccel_output_format cuda -i VIDEO -f null -``: frames stay on the GPU);
- compute: the image encoder (image tower, fp16) in images/s at ``--batch``, against the limit of
  the GPU's fp16 matmul rate divided by the model's FLOPs per image (bench/encoder.py's count);
- end to end: the video indexed through the Flow with the encoders on ``cuda``, in video frames/s
  and embedded frames/s.

Without CUDA it prints why and measures nothing. ``--dry-run-cpu`` runs the same code on the CPU
(software decode, CPU matmul): to check the script, not a GPU figure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
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
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - started


def with_input_args(argv: list[str], extra: list[str]) -> list[str]:
    """``argv`` with ``extra`` options placed just before its ``-i``."""
    at = argv.index("-i")
    return argv[:at] + extra + argv[at:]


def measure_decode(video: Path, size_px: int, hwaccel: str | None) -> dict[str, float]:
    from clipseek.media.ffmpeg_cmd import decode_argv
    from clipseek.media.video import probe

    info = probe(video)
    frames = info.num_frames or round(info.fps * info.duration_s)
    hw = ["-hwaccel", hwaccel] if hwaccel else []
    bare = ["ffmpeg", "-nostdin", "-v", "error", *hw, *(["-hwaccel_output_format", hwaccel] if hwaccel else []),
            "-i", str(video), "-map", "0:v:0", "-f", "null", "-"]
    loader = decode_argv(video, info, size_px)
    return {"frames": frames, "bare_fps": frames / timed_run(bare),
            "loader_fps": frames / timed_run(with_input_args(loader, hw)),
            "loader_software_fps": frames / timed_run(loader)}


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


def measure_compute(model: str, pretrained: str, device: str, precision: str, batch: int, frames: int) -> dict:
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
    return {"gflops_per_image": flops / 1e9, "matmul_tflops": tflops, "images_per_s": images_per_s,
            "limit_images_per_s": limit, "fraction": images_per_s / limit, "precision": clip.precision}


def measure_end_to_end(video: Path, model: str, pretrained: str, device: str, frames: int) -> dict[str, float]:
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
    parser.add_argument("--dry-run-cpu", action="store_true", help="run on the CPU to check the script")
    args = parser.parse_args()
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
    video = inputs.ensure_video((inputs.QUICK_VIDEOS if args.quick else inputs.FULL_VIDEOS)[args.video])
    from clipseek.model.spec import image_size_for

    decode = measure_decode(video, image_size_for(args.model), hwaccel)
    print(f"decode ({video.name}, {decode['frames']} frames): loader {'hw' if hwaccel else 'sw'} "
          f"{decode['loader_fps']:.0f} frames/s, loader software {decode['loader_software_fps']:.0f} frames/s, "
          f"bare decode limit {decode['bare_fps']:.0f} frames/s -> {decode['loader_fps'] / decode['bare_fps']:.2f} "
          f"of the decode limit")
    compute = measure_compute(args.model, args.pretrained, device, "auto", args.batch, args.frames)
    print(f"compute ({args.model}, {compute['precision']}, batch {args.batch}): {compute['images_per_s']:.0f} "
          f"images/s; matmul {compute['matmul_tflops']:.1f} TFLOP/s / {compute['gflops_per_image']:.2f} GFLOP "
          f"= limit {compute['limit_images_per_s']:.0f} images/s -> {compute['fraction']:.2f} of the compute limit")
    e2e = measure_end_to_end(video, args.model, args.pretrained, device, int(decode["frames"]))
    print(f"end to end through the Flow: {e2e['wall_s']:.1f} s, {e2e['video_fps']:.0f} video frames/s, "
          f"{e2e['embedded_fps']:.1f} embedded frames/s ({e2e['embedded']} embedded); the loader decodes with "
          f"the path clipseek.media.hardware picks only once it is wired into its argv")
    print(f"load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
