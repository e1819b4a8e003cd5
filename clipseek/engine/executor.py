"""What every clipseek executor shares: settings loading, its logger, the pass-through, and the
process entry point that ``clipseek serve`` starts each executor with.

In a linear Flow jina accepts a chain of executors only when each can take what the one before sends
on every endpoint, so an executor passes the endpoints it does not serve straight on through
``/default`` (typed ``AnyDoc`` so any document type goes through). clipseek's gateway
(:mod:`clipseek.engine.gateway`) routes around that pass-through, so a request crosses only the executors
that serve its endpoint; under a plain jina gateway it still works, and being ``async`` it never
waits behind the executor's own work (jina runs a synchronous handler under a per-executor lock: a
search passing through the video loader would wait for the range it is decoding).

    python -m clipseek.engine.executor --uses services/indexer/config.yml --name indexer --host 127.0.0.1 --port 8081 \
        [--uses-with-json '{"workspace": "/data"}'] [--parent-pid PID]

runs one executor in this process as ``jina executor --native`` does, except that it exits with 1 when the
executor fails to start (jina's exits with 0), it takes no start-up lock (jina's is
``~/.cache/jina/locks/<class>.lock``, waited for without a timeout: a process left over from an earlier
run could hold it for ever), and with ``--parent-pid`` it is killed when that process dies.
"""

# No `from __future__ import annotations` here: jina reads the endpoint types at run time.

import json
import logging
import os
import signal
import sys
from typing import Any, TypeVar

from docarray import DocList
from docarray.base_doc import AnyDoc
from jina import Executor, requests

from clipseek.settings import load_settings

S = TypeVar("S")
EXIT_START_FAILED = 1
PR_SET_PDEATHSIG = 1  # linux/prctl.h


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
    async def pass_through(self, docs: DocList[AnyDoc], **kwargs: Any) -> DocList[AnyDoc]:
        return docs


# -- process entry point -----------------------------------------------------------------------------
def _take_option(argv: list[str], name: str) -> tuple[list[str], str | None]:
    """``argv`` without ``name VALUE``, and VALUE (None when absent)."""
    if name not in argv:
        return argv, None
    at = argv.index(name)
    if at + 1 >= len(argv):
        raise SystemExit(f"{name} needs a value")
    return argv[:at] + argv[at + 2:], argv[at + 1]


def exit_with_parent(argv: list[str]) -> list[str]:
    """Handle ``--parent-pid PID`` (and return ``argv`` without it): this process is killed when the
    process that started it dies, even by SIGKILL (Linux ``PR_SET_PDEATHSIG``), so that no executor or
    gateway outlives ``clipseek serve``; if that process is already gone, exit now."""
    argv, parent = _take_option(argv, "--parent-pid")
    if parent is None:
        return argv
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(parent):
        os._exit(EXIT_START_FAILED)
    return argv


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    from jina.jaml import JAML
    from jina.parsers import set_pod_parser
    from jina.serve.executors.run import run

    argv = exit_with_parent(list(sys.argv[1:] if argv is None else argv))
    argv, uses_with = _take_option(argv, "--uses-with-json")
    args = set_pod_parser().parse_args([*argv, "--native"])
    args.host = args.host[0]  # as jina's `executor` command does
    args.port_monitoring = args.port_monitoring[0]
    if uses_with:
        args.uses_with = json.loads(uses_with)
    from clipseek.engine.jina_compat import fast_document_ids, skip_jina_start_lock

    skip_jina_start_lock()
    fast_document_ids()
    ready = multiprocessing.Event()
    run(name=args.name, args=args, runtime_cls=args.runtime_cls, envs={}, is_started=multiprocessing.Event(),
        is_signal_handlers_installed=multiprocessing.Event(), is_shutdown=multiprocessing.Event(), is_ready=ready,
        jaml_classes=JAML.registered_classes())
    if not ready.is_set():
        print(f"{args.name}: the executor failed to start (see the error above)", file=sys.stderr, flush=True)
        return EXIT_START_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
