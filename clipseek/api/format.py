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
        "match": segment.match,
        "text_score": segment.text_score,
        "title": segment.title,
        "category": segment.category,
        "topic": segment.topic,
        "confidence": segment.confidence,
        "level": segment.level,
    }


def video_metadata(video: Any) -> dict:
    """A VideoDoc's metadata (title, description, category, tags, ...) as a dict ({} when it has none)."""
    import json

    if not video.metadata_json:
        return {}
    try:
        value = json.loads(video.metadata_json)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def topic_seconds(video: Any) -> dict[str, float]:
    """A VideoDoc's seconds per topic, most first."""
    return {t.name: t.seconds for t in video.topics}


def library_topic_seconds(videos: list) -> dict[str, float]:
    """Seconds per topic over ``videos``, most first."""
    totals: dict[str, float] = {}
    for video in videos:
        for name, seconds in topic_seconds(video).items():
            totals[name] = totals.get(name, 0.0) + seconds
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def suggested_category(video: Any) -> str:
    """The video's category, else the topic it spends most time on (a suggestion, not stored)."""
    category = video_metadata(video).get("category")
    if category:
        return str(category)
    seconds = topic_seconds(video)
    return max(seconds, key=seconds.get) if seconds else ""


def confidence_label(segment: Any) -> str:
    """``high 2.4``: the level and the confidence number (empty when the index gave none)."""
    return f"{segment.level} {segment.confidence:.1f}" if getattr(segment, "level", "") else ""


NO_CONFIDENT_RESULT = "no result is confident: the library may hold nothing like this query"
