"""The value types every layer shares (the wire's documents in clipseek/docs.py are converted to and
from these in clipseek/engine/documents.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shot:
    """A continuous take, ``start_s`` inclusive to ``end_s`` exclusive, in seconds of the video."""

    start_s: float
    end_s: float
    starts_at_cut: bool = True  # False: it starts at the edge of an indexed time range, not at a cut
