"""Whether the values of a request document make sense, beyond what its type guarantees.

The document types (:mod:`clipseek.docs`) already refuse, wherever a document is built or parsed, a
number that is not finite or does not fit the wire. What is left is each service's judgement of a value:
these checks, shared so that every service says it the same way. Each returns "" when the value is
fine, else the message for the document's ``error`` (the request goes on with the other documents).
"""

from __future__ import annotations

from docarray import BaseDoc
from pydantic import ValidationError


def document_problem(doc: BaseDoc) -> str:
    """The document's values checked against its type again: for a document built without validation
    (``model_construct``) or changed in place, before a service acts on it (e.g. writes the index)."""
    fields = {name: getattr(doc, name) for name in type(doc).model_fields if name != "id"}
    try:
        type(doc).model_validate(fields)
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}, got {e.get('input')!r}"
                         for e in exc.errors())
    return ""


def top_k_problem(top_k: int, limit: int) -> str:
    """top_k must be 1..limit (the indexer's max_top_k)."""
    return "" if 1 <= top_k <= limit else f"top_k must be between 1 and {limit}, got {top_k}"


def time_range_problem(start_s: float | None, end_s: float | None, duration_s: float = 0.0) -> str:
    """A time range to index: start_s >= 0 (None = 0), end_s after start_s (None = the video's end), and,
    when the video's ``duration_s`` is known, starting before its end."""
    start = 0.0 if start_s is None else start_s
    if start < 0:
        return f"start_s must be 0 or more, got {start_s}"
    if end_s is not None and end_s <= start:
        return f"empty time range {start:.3f}-{end_s:.3f} s"
    if duration_s > 0 and start >= duration_s:
        return f"start_s {start:.3f} s is past the end of the video ({duration_s:.3f} s)"
    return ""
