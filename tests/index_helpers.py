"""Synthetic videos for the index tests: clustered unit vectors with known shots (no jina, no model)."""

from __future__ import annotations

import numpy as np

from clipseek.index import RangeUpload
from clipseek.types import Shot


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


class SynthVideo:
    """A video of ``shots`` shots of 3 s; each shot has its own direction, its frames (one a second,
    at x.5 s) are small perturbations of it."""

    def __init__(self, name: str, shots: int = 4, dim: int = 32, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.video_id = name
        self.content_hash = (name * 64)[:64]
        self.path = f"/media/{name}.mp4"
        self.duration_s = 3.0 * shots
        self.spans = [Shot(3.0 * s, 3.0 * (s + 1)) for s in range(shots)]
        self.centres = unit(rng.normal(size=(shots, dim)))
        self.times = np.arange(0.5, self.duration_s, 1.0)
        noise = 0.05 * rng.normal(size=(len(self.times), dim))
        self.vectors = unit(self.centres[(self.times // 3).astype(int)] + noise)

    def upload(self, start_s: float = 0.0, end_s: float | None = None, path: str | None = None,
               model: str = "test-model", **extra) -> RangeUpload:
        end_s = self.duration_s if end_s is None else end_s
        keep = (self.times >= start_s) & (self.times < end_s)
        shots = [Shot(max(s.start_s, start_s), min(s.end_s, end_s), s.start_s >= start_s)
                 for s in self.spans if s.end_s > start_s and s.start_s < end_s]
        return RangeUpload(video_id=self.video_id, content_hash=self.content_hash, path=path or self.path,
                           duration_s=self.duration_s, start_s=start_s, end_s=end_s, shots=shots,
                           times_s=self.times[keep], vectors=self.vectors[keep], model=model, **extra)


def library_of(videos: list[SynthVideo], library) -> None:
    for video in videos:
        assert library.index_range(video.upload()).status == "indexed"


def videos(count: int, shots: int = 4, dim: int = 32) -> list[SynthVideo]:
    return [SynthVideo(f"video{i:03d}", shots, dim, seed=i) for i in range(count)]


def pairs(hits) -> list:
    """Search hits as (record, clip) pairs."""
    return [(hit.record, hit.clip) for hit in hits]
