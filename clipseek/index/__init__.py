"""The index: which videos the library holds, their frame vectors, and search over them.

    clipseek.index.records    what a video is to the index (content, paths, indexed pieces, shots)
    clipseek.index.clips      from frame hits to ranked, non-overlapping clips (pure functions)
    clipseek.index.backend    the Backend protocol and the Change it applies atomically
    clipseek.index.embedded   SQLite + hnswlib in a workspace folder (the default)
    clipseek.index.qdrant     a Qdrant server, or qdrant-client's local mode (libraries beyond one machine)
    clipseek.index.library    the decisions: content vs paths, ranges, deletes, validation, search
    clipseek.index.migrate    old snapshot workspaces -> the embedded layout, on first load

``open_library`` picks the backend by name; docs/architecture.md shows how requests cross these.
"""

from __future__ import annotations

from pathlib import Path

from clipseek.index.library import Library, Outcome, RangeUpload, SearchSettings

BACKENDS = ("embedded", "qdrant")

__all__ = ["BACKENDS", "Library", "Outcome", "RangeUpload", "SearchSettings", "open_backend", "open_library"]


def open_backend(name: str, workspace: str | Path, *, hnsw=None, qdrant_url: str = "", qdrant_api_key: str = "",
                 collection: str = "clipseek", qdrant_shards: int = 1, qdrant_replication: int = 1):
    """The backend called ``name`` (``embedded`` or ``qdrant``) over ``workspace``."""
    if name == "embedded":
        from clipseek.index.embedded.backend import EmbeddedBackend

        return EmbeddedBackend(Path(workspace), hnsw)
    if name == "qdrant":
        from clipseek.index.qdrant import QdrantBackend

        return QdrantBackend(Path(workspace), url=qdrant_url, api_key=qdrant_api_key, collection=collection,
                             shards=qdrant_shards, replication=qdrant_replication)
    raise ValueError(f"index backend must be one of {', '.join(BACKENDS)}, got {name!r}")


def open_library(name: str, workspace: str | Path, search: SearchSettings | None = None, **backend_options) -> Library:
    return Library(open_backend(name, workspace, **backend_options), search)
