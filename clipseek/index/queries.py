"""What a search asks with: a text vector, an image vector (a picture, or a stored frame for "more like
this"), or both weighted. Pure functions: no storage, no model."""

from __future__ import annotations

import math

import numpy as np

from clipseek.errors import QueryError


def combine_query(text: np.ndarray | None, image: np.ndarray | None, image_weight: float = 0.5
                  ) -> tuple[np.ndarray, str]:
    """The unit query vector and its kind (``text`` or ``image``, whichever weighs more): the text
    vector, the image vector, or ``(1 - w) * text + w * image`` of both (unit vectors first)."""
    if not isinstance(image_weight, (int, float)) or not math.isfinite(image_weight) or not 0 <= image_weight <= 1:
        raise QueryError(f"image_weight must be a number from 0 to 1, got {image_weight!r}")
    parts = []
    for name, vector in (("text", text), ("image", image)):
        if vector is None:
            continue
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(vector).all() or norm < 1e-6:
            raise QueryError(f"the {name} query vector must be finite and not all zeros")
        parts.append((name, vector / norm))
    if not parts:
        raise QueryError("the query has no embedding (is the text encoder in the Flow?)")
    if len(parts) == 1:
        return parts[0][1], parts[0][0]
    (_, t), (_, i) = parts
    if len(t) != len(i):
        raise QueryError(f"the text query has {len(t)} dimensions, the image query {len(i)}: one model must embed both")
    both = (1.0 - image_weight) * t + image_weight * i
    norm = float(np.linalg.norm(both))
    if norm < 1e-6:
        raise QueryError("the text and the image cancel out: change image_weight")
    return both / norm, "image" if image_weight > 0.5 else "text"


def parse_like(spec: str) -> tuple[str, float]:
    """``VIDEO@SECONDS`` (a video id, prefix or path, then the time of a frame) as (video, seconds)."""
    video, at, seconds = (spec or "").strip().rpartition("@")
    if not at or not video.strip():
        raise QueryError(f"'more like this' wants VIDEO@SECONDS (a video id or path, then a time), got {spec!r}")
    try:
        time_s = float(seconds)
    except ValueError:
        raise QueryError(f"'more like this' wants VIDEO@SECONDS; {seconds!r} is not a number of seconds") from None
    if not math.isfinite(time_s) or time_s < 0:
        raise QueryError(f"'more like this' wants a time of 0 s or more, got {seconds!r}")
    return video.strip(), time_s
