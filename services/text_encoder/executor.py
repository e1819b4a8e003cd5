"""CLIP text encoder: embeds search queries.

Endpoint: ``/search``. Everything else passes through. A query longer than the model's context is
truncated by the tokenizer (the end-of-text token is kept), not refused.
"""

# No `from __future__ import annotations` here: jina reads the endpoint types at run time.

from dataclasses import dataclass
from typing import Any

from docarray import DocList
from jina import requests

from clipseek.clip_model import DEFAULT_MODEL, DEFAULT_PRETRAINED, load_clip
from clipseek.docs import Query
from clipseek.service import ClipseekExecutor


@dataclass
class TextEncoderSettings:
    model: str = DEFAULT_MODEL  # must be the same model as the image encoder's
    pretrained: str = DEFAULT_PRETRAINED
    device: str = "auto"
    precision: str = "auto"  # as the image encoder's (use the same on both)
    text_batch_size: int = 64  # queries per model call
    max_query_chars: int = 10000  # longer texts are cut here before tokenising (cheap guard)


class TextEncoder(ClipseekExecutor):
    settings_class = TextEncoderSettings
    service_name = "text_encoder"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        s = self.settings
        self.clip = load_clip(s.model, s.pretrained, s.device, s.precision, towers="text")

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
            embeddings = self.clip.encode_texts([text for _, text in todo], self.settings.text_batch_size)
            for (doc, _), embedding in zip(todo, embeddings, strict=True):
                doc.embedding = embedding
                doc.model = self.clip.spec.name
        return docs
