"""The image encoder alone against the machine's compute limit.

compute limit (images/s) = measured fp32 matmul rate (FLOP/s) / the model's FLOPs per image, with
FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` on one image (it counts matmuls and
convolutions, 2 FLOPs a multiply-add; softmax, GELU and layer norms are not counted, so the limit is
slightly optimistic). Matmul rate and encoder speed are measured alternately, and the fraction is the
median of the per-round fractions, so background load hits both alike.
"""

from __future__ import annotations

import time

import numpy as np


def matmul_gflops(size: int = 2048, reps: int = 3) -> float:
    """fp32 GFLOP/s of a ``size``-square torch.matmul with all of torch's threads (best of ``reps``)."""
    import torch

    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def flops_per_image(clip) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    image = torch.zeros(1, 3, clip.image_size, clip.image_size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        clip.model.encode_image(image)
    return float(counter.get_total_flops())


def measure_encoder(model: str, pretrained: str, batch_size: int = 32, frames: int = 64, rounds: int = 3,
                    matmul_size: int = 2048) -> dict:
    """images/s of ``ClipModel.encode_frames`` at ``batch_size`` (and at batch 1), vs the compute limit."""
    import torch

    from clipseek.clip_model import load_clip

    clip = load_clip(model, pretrained)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(frames, clip.image_size, clip.image_size, 3), dtype=np.uint8)
    flops = flops_per_image(clip)
    clip.encode_frames(pixels[: min(frames, batch_size)], batch_size)  # warm-up
    rates, rates_b1, gflops, fractions = [], [], [], []
    for _ in range(rounds):
        gflops.append(matmul_gflops(matmul_size))
        started = time.perf_counter()
        clip.encode_frames(pixels, batch_size)
        rates.append(frames / (time.perf_counter() - started))
        fractions.append(rates[-1] / (gflops[-1] * 1e9 / flops))
        few = pixels[: max(1, frames // 4)]
        started = time.perf_counter()
        clip.encode_frames(few, 1)
        rates_b1.append(len(few) / (time.perf_counter() - started))
    return {"gflops_per_image": flops / 1e9, "matmul_gflops": float(np.median(gflops)),
            "images_per_s": float(np.median(rates)), "images_per_s_batch1": float(np.median(rates_b1)),
            "compute_limit_images_per_s": float(np.median(gflops)) * 1e9 / flops,
            "fraction_of_limit": float(np.median(fractions)), "batch_size": batch_size, "matmul_size": matmul_size,
            "torch_threads": torch.get_num_threads()}
