"""Whether the values of a request document make sense, beyond what its type guarantees.

The document types (:mod:`clipseek.docs`) already refuse, wherever a document is built or parsed, a
number that is not finite or does not fit the wire. What is left is each layer's judgement of a value,
and that lives with the rule: time ranges in clipseek.media.source.plan_range and
clipseek.index.library.check_upload, top_k and query vectors in clipseek.index.library.Library.search.
``document_problem`` checks a document built without validation against its type again.
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
