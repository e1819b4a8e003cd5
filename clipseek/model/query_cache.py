"""A least-recently-used cache of query embeddings, for the text encoder.

Searches repeat (the same words typed again, a page reloaded, a filter changed on the same text),
and a cached embedding costs microseconds where running the text tower costs milliseconds
(bench/text_query.py). Keys are the exact texts the encoder would embed; values are read-only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class QueryCache:
    """Up to ``size`` embeddings by text; ``size`` 0 keeps nothing. Safe to share between threads."""

    def __init__(self, size: int):
        if size < 0:
            raise ValueError(f"the query cache size must be 0 or more, got {size}")
        self.size = size
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._entries.get(text)
            if vector is None:
                self.misses += 1
                return None
            self._entries.move_to_end(text)
            self.hits += 1
            return vector

    def put(self, text: str, vector: np.ndarray) -> np.ndarray:
        """Remember ``vector`` for ``text``; returns the (read-only) copy kept."""
        vector = np.array(vector, dtype=np.float32)  # our own copy, so no caller can change it
        vector.flags.writeable = False
        if self.size == 0:
            return vector
        with self._lock:
            self._entries[text] = vector
            self._entries.move_to_end(text)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return vector

    def encode(self, texts: list[str], encode_missing) -> list[np.ndarray]:
        """The embedding of each text: cached ones from here, the others from one call of
        ``encode_missing(list_of_texts) -> N x dim`` (each text embedded once even if repeated)."""
        found = {text: self.get(text) for text in dict.fromkeys(texts)}
        missing = [text for text, vector in found.items() if vector is None]
        if missing:
            for text, vector in zip(missing, encode_missing(missing), strict=True):
                found[text] = self.put(text, vector)
        return [found[text] for text in texts]
