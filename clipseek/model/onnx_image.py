"""The image tower on ONNX Runtime, for pictures sent as queries to a text encoder that runs without torch.

The text encoder embeds a query's picture itself (services/text_encoder). When its text tower runs on ONNX
Runtime (clipseek.model.onnx_text) the image tower does too, so that a picture query does not bring torch
into the process. The export is the same as the text tower's (``python -m clipseek.model.onnx_export
--tower image``, same cache, same check against torch); the graph takes uint8 RGB frames already
letterboxed to the model's input square (clipseek.media.query_image does that) and returns fp32
L2-normalised embeddings. The image encoder service keeps torch (bf16 on CPUs that have it is faster).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from clipseek.model.onnx_text import (
    PIXELS_INPUT,
    VECTOR_OUTPUT,
    OnnxUnavailable,
    cache_file,
    default_cache_dir,
    ensure_exported,
    load_or_export,
)
from clipseek.model.spec import model_config, resolve_model

logger = logging.getLogger("clipseek.clip")


def prepare_image_export(model: str, pretrained: str | None, cache_dir: Path | None = None) -> Path:
    """Export the image tower of these settings into the cache unless it is there (no session is opened,
    so no memory is held); OnnxUnavailable when it cannot be."""
    spec = resolve_model(model, pretrained)
    return ensure_exported(spec, model, pretrained, cache_dir or default_cache_dir(), "image")


class OnnxImageModel:
    """The image tower of a model on ONNX Runtime: ``encode_frames`` as ClipModel's, without torch."""

    precision = "fp32"
    device = "cpu"
    towers = "image"

    def __init__(self, model: str, pretrained: str | None, threads: int = 1, cache_dir: Path | None = None):
        self.spec = resolve_model(model, pretrained)
        if not model_config(self.spec):
            raise OnnxUnavailable(f"no open_clip config found for {self.spec.name}")
        self.cache_dir = cache_dir or default_cache_dir()
        self.session, self.info = load_or_export(self.spec, model, pretrained, self.cache_dir, threads, "image")
        self.identity = self.info.identity
        self.embed_dim = self.info.embed_dim
        self.image_size = self.info.image_size
        logger.info("loaded the image tower of %s on ONNX Runtime (fp32, cpu), input %d px, from %s",
                    self.identity, self.image_size, cache_file(self.spec, self.cache_dir, "image"))

    def encode_frames(self, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Embed uint8 N x size x size x 3 RGB frames (letterboxed to the model's square); float32 N x dim."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[1:] != (self.image_size, self.image_size, 3) or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 N x {self.image_size} x {self.image_size} x 3 RGB, got "
                             f"{frames.dtype} {frames.shape}")
        out = [self.session.run([VECTOR_OUTPUT], {PIXELS_INPUT: np.ascontiguousarray(frames[i:i + batch_size])})[0]
               for i in range(0, len(frames), batch_size)]
        if not out:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)
