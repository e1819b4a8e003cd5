"""CLIP text encoder: embeds search queries, and the prompts of topic labels.

Endpoints: ``/search`` (each Query's text), ``/topics`` (every prompt of each TopicLabel: one row of its
``embedding`` a prompt, for the indexer's zero-shot tagging). Everything else passes through. A query
longer than the model's context is truncated by the tokenizer (the end-of-text token is kept), not
refused. The text tower runs on ONNX Runtime (``text_runtime``: this process then never imports torch;
clipseek.model.onnx_text) on ``onnx_threads`` threads, or on torch, on ``torch_threads``. Embeddings of
recent queries are kept (``query_cache_size``). A picture as the query (``image_base64``, or ``image_path`` under
``media_roots``) is embedded by the model's image tower, loaded here on the first such query (on ONNX Runtime
when the text tower is: exported in the background at start; else with torch): /search stays off the image
encoder, which is busy with /index batches and may be down while search is up.
"""

# No `from __future__ import annotations` here: jina reads the endpoint types at run time.

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from docarray import DocList
from jina import requests

from clipseek.docs import Query, TopicLabel
from clipseek.engine.executor import ClipseekExecutor
from clipseek.errors import ClipseekError
from clipseek.media.hardware import cuda_device_count
from clipseek.media.query_image import decode_base64, query_pixels, read_query_file
from clipseek.model.clip import load_clip
from clipseek.model.onnx_image import OnnxImageModel, prepare_image_export
from clipseek.model.onnx_text import OnnxTextModel, OnnxUnavailable, choose_runtime
from clipseek.model.query_cache import QueryCache
from clipseek.model.spec import DEFAULT_MODEL, DEFAULT_PRETRAINED


@dataclass
class TextEncoderSettings:
    model: str = DEFAULT_MODEL  # must be the same model as the image encoder's
    pretrained: str = DEFAULT_PRETRAINED
    device: str = "auto"
    precision: str = "auto"  # as the image encoder's (use the same on both)
    text_runtime: str = "auto"  # auto | onnx | torch: auto = ONNX Runtime (no torch in this process) on a CPU in fp32
    onnx_cache_dir: str = ""  # where exported text towers are kept; "" = ~/.cache/clipseek/onnx
    text_batch_size: int = 64  # queries per model call
    max_query_chars: int = 10000  # longer texts are cut here before tokenising (cheap guard)
    query_cache_size: int = 4096  # query embeddings remembered, least recently used dropped first; 0 = none
    torch_threads: int = 1  # threads per model call on torch: with 2, busy cores made a query ~20x slower; 0 = all
    # threads per ONNX Runtime call: 2 cut a query from ~17 to ~11 ms on idle cores, no slower on busy ones; 0 = all
    onnx_threads: int = 2
    media_roots: list[str] = field(default_factory=lambda: ["."])  # where a query's image_path may point


class TextEncoder(ClipseekExecutor):
    settings_class = TextEncoderSettings
    service_name = "text_encoder"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        s = self.settings
        if s.torch_threads < 0:
            raise ValueError(f"torch_threads must be 0 (torch's default) or more, got {s.torch_threads}")
        if s.onnx_threads < 0:
            raise ValueError(f"onnx_threads must be 0 (one per core) or more, got {s.onnx_threads}")
        self.clip = self._text_model()
        self.cache = QueryCache(s.query_cache_size)
        self._images = None  # the image tower, loaded on the first picture query
        self._image_export: threading.Thread | None = None
        if isinstance(self.clip, OnnxTextModel):  # have the image tower's export ready before a picture query
            self._image_export = threading.Thread(target=self._prepare_image_tower, name="image-tower-export",
                                                  daemon=True)
            self._image_export.start()

    def _text_model(self):
        """The text tower on the runtime ``text_runtime`` picks (auto: onnx, or torch with one log line why)."""
        s = self.settings
        runtime, why = choose_runtime(s.text_runtime, s.device, s.precision,
                                      cuda_device_count() if s.device == "auto" else 0)
        if runtime == "onnx":
            try:
                return OnnxTextModel(s.model, s.pretrained, s.onnx_threads, self._onnx_cache_dir())
            except OnnxUnavailable as exc:
                if s.text_runtime == "onnx":
                    raise
                self.log.warning("text_runtime auto falls back to torch for %s: %s", s.model, exc)
        else:
            self.log.info("text tower of %s on torch (%s)", s.model, why)
        clip = load_clip(s.model, s.pretrained, s.device, s.precision, towers="text")
        clip.text_threads = s.torch_threads
        return clip

    @requests(on="/search")
    def encode(self, docs: DocList[Query], **kwargs: Any) -> DocList[Query]:
        todo = []
        for doc in docs:
            text = (doc.text or "").strip()
            has_image = bool(doc.image_base64 or doc.image_path or doc.like)
            if not text and not has_image:
                doc.error = "the query is empty: type what you are looking for"
            elif not doc.error:
                self._embed_image(doc)
                if text and not doc.error:
                    todo.append((doc, text[: self.settings.max_query_chars]))
        if todo:
            embeddings = self.cache.encode([text for _, text in todo], self._encode)
            for (doc, _), embedding in zip(todo, embeddings, strict=True):
                doc.embedding = embedding.copy()  # the cache keeps its own
                doc.model = self.clip.identity  # architecture and weights: the workspace checks them
        return docs

    @requests(on="/topics")
    def encode_labels(self, docs: DocList[TopicLabel], **kwargs: Any) -> DocList[TopicLabel]:
        todo = []
        for doc in docs:
            doc.prompts = [p.strip()[: self.settings.max_query_chars] for p in doc.prompts if p.strip()]
            if not doc.prompts:
                doc.error = doc.error or f"label {doc.name!r} has no prompts to embed"
            elif not doc.error:
                todo.append(doc)
        texts = [prompt for doc in todo for prompt in doc.prompts]
        if texts:
            embeddings = self._encode(texts)  # not cached: a vocabulary is embedded once
            at = 0
            for doc in todo:
                doc.embedding = embeddings[at:at + len(doc.prompts)].copy()
                doc.model = self.clip.identity  # as for queries: the indexer checks it against the workspace
                at += len(doc.prompts)
        return docs

    def _embed_image(self, doc: Query) -> None:
        """``doc``'s picture, checked and embedded into ``image_embedding``; its bytes dropped."""
        if not (doc.image_base64 or doc.image_path):
            return
        try:
            if doc.image_base64 and doc.image_path:
                raise ClipseekError("a query takes the image's bytes or its path, not both")
            data = (decode_base64(doc.image_base64) if doc.image_base64
                    else read_query_file(doc.image_path, self.settings.media_roots))
            image_tower = self._image_tower()
            pixels = query_pixels(data, image_tower.image_size, name=f"query image {doc.image_path}".strip()
                                  if doc.image_path else "the query image")
            doc.image_embedding = image_tower.encode_frames(pixels[np.newaxis])[0]
            doc.model = image_tower.spec.name
        except ClipseekError as exc:
            doc.error = str(exc)
            self.log.warning("query image refused: %s", exc)
        doc.image_base64 = ""

    def _onnx_cache_dir(self) -> Path | None:
        return Path(self.settings.onnx_cache_dir).expanduser() if self.settings.onnx_cache_dir else None

    def _prepare_image_tower(self) -> None:
        try:
            prepare_image_export(self.settings.model, self.settings.pretrained, self._onnx_cache_dir())
        except OnnxUnavailable as exc:  # said again, once, if a picture query comes
            self.log.info("the image tower is not exported to ONNX: %s", exc)

    def _image_tower(self):
        """The image tower for picture queries: on ONNX Runtime beside an ONNX text tower (torch stays out of
        this process), else, or when its export fails (one warning), on torch."""
        if self._images is None:
            s = self.settings
            if self._image_export is not None:
                self._image_export.join()
                try:
                    self._images = OnnxImageModel(s.model, s.pretrained, s.onnx_threads, self._onnx_cache_dir())
                except OnnxUnavailable as exc:
                    self.log.warning("picture queries fall back to torch for %s: %s", s.model, exc)
            if self._images is None:
                self._images = load_clip(s.model, s.pretrained, s.device, s.precision, towers="image")
        return self._images

    def _encode(self, texts: list[str]):
        return self.clip.encode_texts(texts, self.settings.text_batch_size)
