"""The seam between the library's decisions and where vectors and records are kept.

A ``Backend`` stores two things: the catalogue (videos, their paths and indexed pieces, and the
tombstones of deletes) and the frames (one vector per sampled frame, tagged with its video and time).
The library (clipseek.index.library) reads through it and writes by handing it a ``Change``, which
the backend applies **atomically and durably**: when ``apply`` returns, the change survives a crash;
when it raises, nothing of it is visible, in memory or after a restart.

Two implementations, chosen by ``IndexSettings.backend``:

- ``embedded`` (clipseek.index.embedded): SQLite (WAL) for the catalogue and the frame table, hnswlib
  for the vectors, an append-only vector log plus checkpoints of the graph. The default: one machine,
  no server.
- ``qdrant`` (clipseek.index.qdrant): a Qdrant server (or qdrant-client's local mode in the workspace)
  holds both, so the indexer keeps no state and can run as replicas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from clipseek.errors import ClipseekError
from clipseek.index.clips import FrameHit
from clipseek.index.records import Piece, VideoRecord
from clipseek.index.topics import ShotTopic, Vocabulary


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made a workspace's vectors: a query must come from the same one.

    ``name`` is the architecture (open_clip's name), ``weights`` how the encoders named their weights:
    ``random``, or the pretrained tag / checkpoint file name and the checkpoint's hash
    (``laion2b_s34b_b79k sha256:0123456789abcdef``); "" in workspaces made before weights were recorded.
    The encoders send both as one text, ``<name> [<weights>]`` (clipseek.model.spec.model_identity),
    which is also how the backends store it.
    """

    name: str
    dim: int
    weights: str = ""

    @classmethod
    def parse(cls, text: str, dim: int) -> ModelIdentity:
        """The identity an encoder stamped (``<name> [<weights>]``, or a bare name) with ``dim``."""
        text = (text or "").strip()
        if text.endswith("]") and " [" in text:
            name, weights = text[:-1].split(" [", 1)
            return cls(name, dim, weights.strip())
        return cls(text, dim)

    @property
    def text(self) -> str:
        return f"{self.name} [{self.weights}]" if self.weights else self.name

    @property
    def _hash(self) -> str:
        last = self.weights.rsplit(" ", 1)[-1]
        return last if last.startswith("sha256:") else ""

    @property
    def _label(self) -> str:
        return self.weights[: -len(self._hash)].strip() if self._hash else self.weights

    def differs_from(self, other: ModelIdentity) -> bool:
        """Whether ``other`` is known to be another model: another architecture or dimension, other
        checkpoint bytes (both hashed), or other weights' names where neither side has a hash (random
        weights are never the same as a checkpoint's). Unknown weights (a workspace made before they
        were recorded) differ from nothing of the same architecture."""
        if (self.name and other.name and self.name != other.name) or (self.dim and other.dim
                                                                      and self.dim != other.dim):
            return True
        if not self.weights or not other.weights:
            return False
        if self._hash and other._hash:
            return self._hash != other._hash
        if "random" in (self._label, other._label):
            return self._label != other._label or bool(self._hash or other._hash)
        if self._hash or other._hash:  # one side's file not at hand (a tag before its download): cannot tell
            return False
        return self._label != other._label


@dataclass
class FrameBatch:
    """New frames of one video: unit vectors (float32, N x dim) at their times."""

    video_id: str
    times_s: np.ndarray
    vectors: np.ndarray


@dataclass
class Change:
    """Everything one request changes, applied together or not at all.

    Order of application: removals first (videos, then frames and pieces), then additions.
    ``videos`` upserts a record's own fields and paths; its pieces travel in ``pieces``.
    """

    videos: list[VideoRecord] = field(default_factory=list)
    removed_videos: list[str] = field(default_factory=list)
    removed_frames: list[tuple[str, float, float]] = field(default_factory=list)  # (video_id, start_s, end_s)
    removed_pieces: list[tuple[str, float]] = field(default_factory=list)  # (video_id, piece start_s)
    pieces: list[tuple[str, Piece]] = field(default_factory=list)
    frames: list[FrameBatch] = field(default_factory=list)
    tombstones: dict[str, float] = field(default_factory=dict)  # key ("video:<id>", "path:<path>") -> when
    model: ModelIdentity | None = None  # set with the first frames of a workspace
    metadata: list[tuple[str, str, dict]] = field(default_factory=list)  # (match, source, fields); {} removes
    video_meta: dict[str, dict] = field(default_factory=dict)  # video -> its effective metadata (merged)
    shot_topics: dict[str, list[ShotTopic]] = field(default_factory=dict)  # video -> all its shots' topics
    vocabulary: tuple[Vocabulary, np.ndarray] | None = None  # labels and their unit vectors

    def __bool__(self) -> bool:
        return bool(self.videos or self.removed_videos or self.removed_frames or self.removed_pieces
                    or self.pieces or self.frames or self.tombstones or self.model or self.metadata
                    or self.video_meta or self.shot_topics or self.vocabulary)


class Backend(Protocol):
    """What the library needs from a place that keeps the index."""

    @property
    def model(self) -> ModelIdentity | None: ...

    def video(self, video_id: str) -> VideoRecord | None: ...

    def videos(self, video_ids: list[str] | None = None) -> list[VideoRecord]:
        """All videos, or these (unknown ids are left out); each with its pieces."""

    def video_at(self, path: str) -> VideoRecord | None:
        """The video one of whose paths is exactly ``path``."""

    def tombstone(self, key: str) -> float:
        """When (``Library.generation``) the last delete under ``key`` happened, 0 if none."""

    def frame_count(self, video_id: str | None = None) -> int: ...

    def search_frames(self, query: np.ndarray, k: int, video_ids: list[str] | None = None) -> list[FrameHit]:
        """Up to ``k`` frames nearest the unit vector ``query`` (only of ``video_ids`` when given)."""

    def score_spans(self, query: np.ndarray, spans: list[tuple[str, float, float]]
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each (video_id, start_s, end_s): the times of its frames in [start_s, end_s), sorted, and
        their cosine to ``query`` (a unit vector: one score per frame; or a matrix of unit rows: frames x
        rows)."""

    # -- words (metadata) and topics --
    def metadata_rows(self, matches: list[str]) -> dict[str, dict[str, dict]]:
        """The stored metadata rows for these match keys: {match: {source: fields}}."""

    def videos_matching_keys(self, matches: list[str]) -> list[str]:
        """Ids of the videos that match keys name (``video:<id>``, ``path:<path>``, ``stem:<file name stem>``)."""

    def video_meta(self, video_ids: list[str]) -> dict[str, dict]:
        """The effective metadata of these videos (those that have any)."""

    def has_metadata(self) -> bool: ...

    def text_search(self, terms: list[str], k: int, video_ids: list[str] | None = None) -> list[tuple[str, float]]:
        """Videos whose metadata matches any of ``terms`` (clipseek.index.metadata.tokens), best first,
        with a relevance score (BM25: higher is better)."""

    def videos_where(self, where: dict[str, str]) -> set[str]:
        """Ids of the videos whose metadata has every field = value of ``where`` (``topic`` included)."""

    def shot_topics(self, video_ids: list[str] | None = None) -> dict[str, list[ShotTopic]]: ...

    def vocabulary(self) -> tuple[Vocabulary, np.ndarray] | None: ...

    def apply(self, change: Change) -> None:
        """Apply ``change`` atomically and durably (see the module's docstring)."""

    def close(self) -> None: ...


class IndexWriteError(ClipseekError):
    """A change could not be made durable (disk full, I/O error): nothing of it was applied."""
