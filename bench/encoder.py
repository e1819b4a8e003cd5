"""The image encoder alone against the machine's compute limit.

compute limit (images/s) = measured fp32 matmul rate (FLOP/s) / the model's FLOPs per image, with
FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` on one image (it counts matmuls and
convolutions, 2 FLOPs a multiply-add; softmax, GELU and layer norms are not counted, so the limit is
slightly optimistic). The count runs with PyTorch's fused attention fast path off: the counter does
not see inside ``_native_multi_head_attention`` and counted ViT-B-32 as 5.89 GFLOP instead of 8.73
(4.4 GMAC, the published figure). Matmul rate and encoder speed are measured alternately, and the
fraction is the median of the per-round fractions, so background load hits both alike.

int8 (``precision: int8``, clipseek.model.open_clip_compat.quantize_int8) is measured on the same weights as
fp32, with the cosine between the two embeddings of each frame.
"""

from __future__ import annotations

import time

import numpy as np


def matmul_gflops(size: int = 2048, reps: int = 3, dtype: str = "fp32") -> float:
    """GFLOP/s of a ``size``-square torch.matmul in ``dtype`` with all of torch's threads (best of ``reps``)."""
    import torch

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a = torch.randn(size, size, dtype=torch_dtype)
    b = torch.randn(size, size, dtype=torch_dtype)
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
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # else the attention projections go uncounted
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            clip.model.encode_image(image)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    return float(counter.get_total_flops())


class _Variant:
    """Run ``clip`` with another copy of its model (and input dtype) inside a ``with`` block."""

    def __init__(self, clip, model, dtype):
        self.clip, self.model, self.dtype = clip, model, dtype

    def __enter__(self):
        self.saved = (self.clip.model, self.clip.dtype)
        self.clip.model, self.clip.dtype = self.model, self.dtype
        return self.clip

    def __exit__(self, *exc):
        self.clip.model, self.clip.dtype = self.saved


def _rate(clip, pixels: np.ndarray, batch_size: int) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    embeddings = clip.encode_frames(pixels, batch_size)
    return len(pixels) / (time.perf_counter() - started), embeddings


def measure_encoder(model: str, pretrained: str, batch_size: int = 32, frames: int = 64, rounds: int = 3,
                    matmul_size: int = 2048) -> dict:
    """images/s of ``ClipModel.encode_frames`` at ``batch_size`` (and at batch 1) in fp32 against the
    fp32 compute limit, the same weights in bf16 against the bf16 limit, and int8 (MLPs) — the last
    two with the cosine of each frame's embedding to fp32's. Rounds alternate all of them."""
    import copy

    import torch

    from clipseek.model.clip import cpu_has_native_bf16, load_clip
    from clipseek.model.open_clip_compat import quantize_int8

    clip = load_clip(model, pretrained, "cpu", "fp32")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(frames, clip.image_size, clip.image_size, 3), dtype=np.uint8)
    flops = flops_per_image(clip)
    from open_clip.model import convert_weights_to_lp

    bf16_model = copy.deepcopy(clip.model)
    convert_weights_to_lp(bf16_model, dtype=torch.bfloat16)  # as open_clip's precision="bf16" (norms stay fp32)
    variants = {"bf16": _Variant(clip, bf16_model, torch.bfloat16),
                "int8": _Variant(clip, quantize_int8(clip.model), torch.float32)}
    warm = pixels[: min(frames, batch_size)]
    clip.encode_frames(warm, batch_size)
    for variant in variants.values():
        with variant as c:
            c.encode_frames(warm, batch_size)
    series: dict[str, list[float]] = {k: [] for k in ("fp32", "fp32_b1", "bf16", "int8", "gflops", "gflops_bf16",
                                                      "fraction", "fraction_bf16")}
    cosines: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        series["gflops"].append(matmul_gflops(matmul_size))
        rate, reference = _rate(clip, pixels, batch_size)
        series["fp32"].append(rate)
        series["fraction"].append(rate / (series["gflops"][-1] * 1e9 / flops))
        series["fp32_b1"].append(_rate(clip, pixels[: max(1, frames // 4)], 1)[0])
        series["gflops_bf16"].append(matmul_gflops(matmul_size, dtype="bf16"))
        for name, variant in variants.items():
            with variant as c:
                rate, embeddings = _rate(c, pixels, batch_size)
            series[name].append(rate)
            cosines[name] = (embeddings * reference).sum(axis=1)
        series["fraction_bf16"].append(series["bf16"][-1] / (series["gflops_bf16"][-1] * 1e9 / flops))
    med = {k: float(np.median(v)) for k, v in series.items()}
    return {"gflops_per_image": flops / 1e9, "matmul_gflops": med["gflops"], "images_per_s": med["fp32"],
            "images_per_s_batch1": med["fp32_b1"], "compute_limit_images_per_s": med["gflops"] * 1e9 / flops,
            "fraction_of_limit": med["fraction"], "batch_size": batch_size, "matmul_size": matmul_size,
            "torch_threads": torch.get_num_threads(), "cpu_native_bf16": cpu_has_native_bf16(),
            "bf16_matmul_gflops": med["gflops_bf16"], "bf16_images_per_s": med["bf16"],
            "bf16_fraction_of_limit": med["fraction_bf16"], "int8_images_per_s": med["int8"],
            **{f"{name}_cosine_{stat}": float(getattr(np, stat)(cosines[name]))
               for name in variants for stat in ("min", "mean")}}
