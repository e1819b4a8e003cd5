"""How the CLI and the page write times and results for people (and for JSON)."""

from __future__ import annotations

from typing import Any


def format_time(seconds: float) -> str:
    """mm:ss.s (h:mm:ss.s past an hour)."""
    seconds = max(0.0, seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{int(hours)}:{int(minutes):02d}:{secs:04.1f}"
    return f"{int(minutes):02d}:{secs:04.1f}"


def segment_json(segment: Any) -> dict:
    """A search result as the CLI's ``--json`` prints it."""
    return {
        "video": segment.video,
        "video_id": segment.video_id,
        "start_s": segment.start_s,
        "end_s": segment.end_s,
        "score": segment.score,
        "thumbnail_s": segment.thumbnail_s,
        "duration_s": segment.duration_s,
    }
