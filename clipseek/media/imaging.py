"""Small image helpers shared by the loader, the encoders, the demo model and the tests.

The video loader asks ffmpeg for frames already letterboxed to the encoder's square input
(``scale=...:force_original_aspect_ratio=decrease,pad=...``). ``letterbox`` does the same
with PIL for still images (training the demo model, image queries, tests), so that every
frame the model sees was shaped the same way.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def letterbox(rgb: np.ndarray | Image.Image, size_px: int) -> np.ndarray:
    """Fit an RGB image inside a ``size_px`` square, keeping its aspect, padding with black.

    Returns ``uint8`` HxWx3 with H == W == size_px; the content is centred, as ffmpeg's
    ``pad=S:S:(ow-iw)/2:(oh-ih)/2`` places it.
    """
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    image = image.convert("RGB")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ValueError(f"image has no pixels: {width}x{height}")
    scale = min(size_px / width, size_px / height)
    new_w = max(1, min(size_px, round(width * scale)))
    new_h = max(1, min(size_px, round(height * scale)))
    resized = image.resize((new_w, new_h), Image.BICUBIC)
    canvas = Image.new("RGB", (size_px, size_px))
    canvas.paste(resized, ((size_px - new_w) // 2, (size_px - new_h) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def mean_luma(rgb: np.ndarray) -> float:
    """Mean brightness (0-255, Rec. 601 weights) of an RGB uint8 frame."""
    frame = np.asarray(rgb, dtype=np.float32)
    return float((frame[..., 0] * 0.299 + frame[..., 1] * 0.587 + frame[..., 2] * 0.114).mean())
