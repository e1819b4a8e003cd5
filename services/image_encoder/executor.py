"""CLIP image encoder: embeds the sampled frames of each video, then drops their pixels.

Endpoint: ``/index``. Everything else passes through.
"""

# No `from __future__ import annotations` here: jina reads the endpoint types at run time.

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from docarray import DocList
from jina import requests

from clipseek.docs import VideoDoc
from clipseek.engine.executor import ClipseekExecutor
from clipseek.model.clip import load_clip
from clipseek.model.spec import DEFAULT_MODEL, DEFAULT_PRETRAINED


@dataclass
class ImageEncoderSettings:
    model: str = DEFAULT_MODEL  # open_clip architecture, or "demo" for the shipped demo model
    pretrained: str = DEFAULT_PRETRAINED  # open_clip tag, a local checkpoint file, or "none" (random)
    device: str = "auto"  # "auto" (cuda if present), "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"  # auto = fp16 on GPU, bf16 on CPUs with native bf16, else fp32; fp32/fp16/bf16/int8
    batch_size: int = 32  # frames per model call


class ImageEncoder(ClipseekExecutor):
    settings_class = ImageEncoderSettings
    service_name = "image_encoder"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        s = self.settings
        self.clip = load_clip(s.model, s.pretrained, s.device, s.precision, towers="image")

    @requests(on="/index")
    def encode(self, docs: DocList[VideoDoc], **kwargs: Any) -> DocList[VideoDoc]:
        work = [(doc, frame) for doc in docs if not doc.error for frame in doc.frames if frame.pixels is not None]
        if not work:
            return docs
        started = time.perf_counter()
        pixels = np.stack([np.asarray(frame.pixels, dtype=np.uint8) for _, frame in work])
        embeddings = self.clip.encode_frames(pixels, self.settings.batch_size)
        for (_, frame), embedding in zip(work, embeddings, strict=True):
            frame.embedding = embedding
            frame.pixels = None  # the indexer needs only the vector; keep the message small
        for doc in docs:
            if not doc.error:
                doc.model = self.clip.identity  # architecture and weights: the workspace checks them
        elapsed = time.perf_counter() - started
        self.log.info("embedded %d frames in %.2f s (%.1f frames/s)", len(work), elapsed,
                      len(work) / max(elapsed, 1e-9))
        return docs
