"""What every clipseek executor shares: settings loading, its logger, and the pass-through.

In a linear Flow every request goes through every executor. An executor passes the endpoints it
does not serve straight on through ``/default`` (typed ``AnyDoc`` so any document type goes
through); without it jina refuses to chain executors that serve different endpoints.
"""

# No `from __future__ import annotations` here: jina reads the endpoint types at run time.

import logging
from typing import Any, TypeVar

from docarray import DocList
from docarray.base_doc import AnyDoc
from jina import Executor, requests

from clipseek.settings import load_settings

S = TypeVar("S")


class ClipseekExecutor(Executor):
    """Base class: ``settings_class`` is the service's dataclass of settings."""

    settings_class: type = object
    service_name = "service"

    def __init__(self, **kwargs: Any):
        names = set(getattr(self.settings_class, "__dataclass_fields__", {}))
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        super().__init__(**kwargs)
        self.settings = load_settings(self.settings_class, overrides)
        self.log = logging.getLogger(f"clipseek.{self.service_name}")

    @requests
    def pass_through(self, docs: DocList[AnyDoc], **kwargs: Any) -> DocList[AnyDoc]:
        return docs
