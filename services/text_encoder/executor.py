"""CLIP text encoder: embeds search queries.

Endpoint: ``/search``. Everything else passes through. A query longer than the model's context is
truncated by the tokenizer (the end-of-text token is kept), not refused. Embeddings of recent
queries are kept (``query_cache_size``); the text tower runs on ``torch_threads`` threads.
"""

# No `from __future__ import annotations` here: jina reads the endpoint types at run time.

from dataclasses import dataclass
from typing import Any

from docarray import DocList
from jina import requests

from clipseek.docs import Query
from clipseek.engine.executor import ClipseekExecutor
from clipseek.model.clip import load_clip
from clipseek.model.query_cache import QueryCache
from clipseek.model.spec import DEFAULT_MODEL, DEFAULT_PRETRAINED


@dataclass
class TextEncoderSettings:
    model: str = DEFAULT_MODEL  # must be the same model as the image encoder's
    pretrained: str = DEFAULT_PRETRAINED
    device: str = "auto"
    precision: str = "auto"  # as the image encoder's (use the same on both)
    text_batch_size: int = 64  # queries per model call
    max_query_chars: int = 10000  # longer texts are cut here before tokenising (cheap guard)
    query_cache_size: int = 4096  # query embeddings remembered, least recently used dropped first; 0 = none
    torch_threads: int = 1  # threads per model call: one query is too small to split; 0 = torch's default


class TextEncoder(ClipseekExecutor):
    settings_class = TextEncoderSettings
    service_name = "text_encoder"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        s = self.settings
        if s.torch_threads < 0:
            raise ValueError(f"torch_threads must be 0 (torch's default) or more, got {s.torch_threads}")
        self.clip = load_clip(s.model, s.pretrained, s.device, s.precision, towers="text")
        self.clip.text_threads = s.torch_threads
        self.cache = QueryCache(s.query_cache_size)

    @requests(on="/search")
    def encode(self, docs: DocList[Query], **kwargs: Any) -> DocList[Query]:
        todo = []
        for doc in docs:
            text = (doc.text or "").strip()
            if not text:
                doc.error = "the query is empty: type what you are looking for"
            elif not doc.error:
                todo.append((doc, text[: self.settings.max_query_chars]))
        if todo:
            embeddings = self.cache.encode([text for _, text in todo], self._encode)
            for (doc, _), embedding in zip(todo, embeddings, strict=True):
                doc.embedding = embedding.copy()  # the cache keeps its own
                doc.model = self.clip.spec.name
        return docs

    def _encode(self, texts: list[str]):
        return self.clip.encode_texts(texts, self.settings.text_batch_size)
