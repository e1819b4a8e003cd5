"""Talking to a running clipseek Flow, over HTTP (plain httpx, no jina needed) or gRPC (jina's client).

The CLI and the web page both use this module, so indexing a library (probe, skip what is
already indexed, split long videos into time ranges) behaves the same everywhere.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import httpx
from docarray import DocList

from clipseek.docs import Query, Segment, Thumbnail, VideoDoc
from clipseek.errors import ClipseekError, FlowUnavailableError, QueryError

DEFAULT_ADDRESS = "http://127.0.0.1:51001"
DEFAULT_CHUNK_S = 120.0  # seconds of video per /index request
DEFAULT_IN_FLIGHT = 2  # /index requests under way at once: the loader decodes one while the encoder embeds the other


def default_address() -> str:
    return os.environ.get("CLIPSEEK_ADDRESS", DEFAULT_ADDRESS)


@dataclass
class IndexOutcome:
    """What happened to one file of an index run."""

    path: str
    status: str  # "indexed", "unchanged", "failed"
    video_id: str = ""
    error: str = ""
    duration_s: float = 0.0
    num_frames: int = 0
    num_shots: int = 0


@dataclass
class IndexReport:
    outcomes: list[IndexOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[IndexOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def plan_ranges(duration_s: float, chunk_s: float) -> list[tuple[float, float | None]]:
    """Split [0, duration) into time ranges of at most ``chunk_s`` (the last ends at the video's end)."""
    if duration_s <= 0 or duration_s <= chunk_s:
        return [(0.0, None)]
    count = math.ceil(duration_s / chunk_s)
    step = duration_s / count
    return [(round(i * step, 3), None if i == count - 1 else round((i + 1) * step, 3)) for i in range(count)]


class ClipseekClient:
    """``address``: ``http://host:port`` (the gateway's HTTP port) or ``grpc://host:port``."""

    def __init__(self, address: str | None = None, timeout_s: float = 30.0, index_timeout_s: float = 1800.0):
        self.address = (address or default_address()).rstrip("/")
        self.timeout_s = timeout_s  # searches, listings, thumbnails: a hung Flow is reported quickly
        self.index_timeout_s = index_timeout_s  # /index and /probe decode or hash whole files
        self.protocol = "grpc" if self.address.startswith("grpc://") else "http"
        if self.protocol == "http" and "://" not in self.address:
            self.address = "http://" + self.address
        self._http = httpx.Client(timeout=timeout_s) if self.protocol == "http" else None
        self._long = {"/index", "/probe"}
        self._local = threading.local()  # one jina gRPC client per thread (index() sends from a pool)

    # -- transport ---------------------------------------------------------------------------
    def _post(self, endpoint: str, docs: DocList, doc_type: type) -> DocList:
        if self.protocol == "http":
            return self._post_http(endpoint, docs, doc_type)
        return self._post_grpc(endpoint, docs, doc_type)

    def _post_http(self, endpoint: str, docs: DocList, doc_type: type) -> DocList:
        payload = {"data": [doc.model_dump(exclude={"id"}) for doc in docs]}
        try:
            timeout = self.index_timeout_s if endpoint in self._long else self.timeout_s
            response = self._http.post(f"{self.address}{endpoint}", json=_jsonable(payload), timeout=timeout)
        except httpx.TimeoutException:
            raise ClipseekError(f"{endpoint} at {self.address} did not answer in time") from None
        except httpx.TransportError as exc:
            raise FlowUnavailableError(
                f"cannot reach the clipseek Flow at {self.address} ({exc.__class__.__name__}); "
                f"start it with `clipseek serve` or set CLIPSEEK_ADDRESS") from None
        if response.status_code != 200:
            raise ClipseekError(f"{endpoint} failed at {self.address}: HTTP {response.status_code} "
                                f"{response.text[:300]}")
        body = response.json()
        status = (body.get("header") or {}).get("status") or {}
        if status.get("code") == "ERROR" or status.get("code") == 1:
            raise ClipseekError(f"{endpoint} failed in the Flow: {status.get('description', status)}")
        return DocList[doc_type]([doc_type.model_validate(item) for item in body.get("data") or []])

    def _post_grpc(self, endpoint: str, docs: DocList, doc_type: type) -> DocList:
        from jina import Client
        from jina.excepts import BadServer, BadServerFlow

        client = getattr(self._local, "grpc", None)
        if client is None:
            host, _, port = self.address.removeprefix("grpc://").rpartition(":")
            client = self._local.grpc = Client(host=host or "127.0.0.1", port=int(port), protocol="grpc")
        try:
            timeout = self.index_timeout_s if endpoint in self._long else self.timeout_s
            return client.post(endpoint, docs, return_type=DocList[doc_type], timeout=timeout)
        except (ConnectionError, BadServerFlow) as exc:
            raise FlowUnavailableError(f"cannot reach the clipseek Flow at {self.address}: {exc}") from None
        except BadServer as exc:
            raise ClipseekError(f"{endpoint} failed in the Flow: {exc}") from None

    def is_ready(self) -> bool:
        if self.protocol == "http":
            try:
                return self._http.get(f"{self.address}/", timeout=3).status_code == 200
            except httpx.TransportError:
                return False
        try:
            self.videos()
            return True
        except ClipseekError:
            return False

    # -- API ---------------------------------------------------------------------------------
    def search(self, text: str, top_k: int = 10, videos: Iterable[str] = ()) -> list[Segment]:
        """Ranked clips for ``text``; raises QueryError for a bad query (empty text, bad top_k, ...)."""
        query = Query(text=text, top_k=top_k, video_ids=list(videos))
        result = self._post("/search", DocList[Query]([query]), Query)
        if not result:
            raise ClipseekError("/search returned nothing")
        if result[0].error:
            raise QueryError(result[0].error)
        return list(result[0].segments)

    def videos(self) -> list[VideoDoc]:
        return list(self._post("/videos", DocList[VideoDoc]([VideoDoc()]), VideoDoc))

    def delete(self, video: str) -> VideoDoc:
        result = self._post("/delete", DocList[VideoDoc]([VideoDoc(uri=video)]), VideoDoc)[0]
        if result.error:
            raise ClipseekError(result.error)
        return result

    def probe(self, paths: Iterable[str], force: bool = False) -> list[VideoDoc]:
        docs = DocList[VideoDoc]([VideoDoc(uri=str(p), force=force) for p in paths])
        return list(self._post("/probe", docs, VideoDoc)) if docs else []

    def thumbnail(self, video: str, time_s: float, width_px: int = 320) -> bytes:
        import base64

        result = self._post("/thumbnail", DocList[Thumbnail]([Thumbnail(uri=video, time_s=time_s,
                                                                       width_px=width_px)]), Thumbnail)[0]
        if result.error:
            raise ClipseekError(result.error)
        return base64.b64decode(result.jpeg_base64)

    def index_range(self, path: str, start_s: float, end_s: float | None, force: bool = False,
                    generation: float = 0.0) -> VideoDoc:
        """Index one time range; ``generation`` (from /probe) lets the indexer refuse it if the video was
        deleted after the run was planned."""
        doc = VideoDoc(uri=path, start_s=start_s, end_s=end_s, force=force, generation=generation)
        return self._post("/index", DocList[VideoDoc]([doc]), VideoDoc)[0]

    def _index_range_or_error(self, path: str, start_s: float, end_s: float | None, force: bool,
                              generation: float) -> VideoDoc:
        try:
            return self.index_range(path, start_s, end_s, force, generation)
        except FlowUnavailableError:
            raise
        except ClipseekError as exc:
            return VideoDoc(uri=path, error=str(exc), status="failed")

    def index(self, paths: Iterable[str], force: bool = False, chunk_s: float = DEFAULT_CHUNK_S,
              on_progress: Callable[[str, float, float], Any] | None = None,
              on_file: Callable[[IndexOutcome], Any] | None = None,
              in_flight: int = DEFAULT_IN_FLIGHT) -> IndexReport:
        """Index files and folders (recursively). Each file gets an outcome; one bad file does not stop
        the others. ``on_progress(path, done_s, total_s)`` follows the seconds of video indexed.

        Videos are sent as time ranges of ``chunk_s``, ``in_flight`` requests at a time (ranges of
        the same video or of the next ones), so the Flow's loader decodes one range while the image
        encoder embeds the one before. Results are taken in order; after a range fails, no further range
        of that video is sent (the one already under way may still be indexed: the video is reported
        failed and is not complete in the index, so the next run sends it again).
        """
        report = IndexReport()
        planned = self.probe(paths, force=force)
        total_s = sum(d.duration_s for d in planned if not d.error and (force or not d.already_indexed))
        done_s = 0.0
        outcomes: list[IndexOutcome] = []
        ranges_left: list[int] = []
        for video in planned:
            if video.error:
                outcomes.append(IndexOutcome(video.path or video.uri, "failed", error=video.error))
                ranges_left.append(0)
            elif video.already_indexed and not force:
                outcomes.append(IndexOutcome(video.path, "unchanged", video.video_id, duration_s=video.duration_s,
                                             num_frames=video.num_frames, num_shots=video.num_shots))
                ranges_left.append(0)
            else:
                outcomes.append(IndexOutcome(video.path, "unchanged", video.video_id, duration_s=video.duration_s))
                ranges_left.append(len(plan_ranges(video.duration_s, chunk_s)))
        jobs = deque((i, start_s, end_s) for i, video in enumerate(planned) if ranges_left[i]
                     for start_s, end_s in plan_ranges(video.duration_s, chunk_s))
        reported = 0

        def report_finished() -> None:
            nonlocal reported
            while reported < len(outcomes) and ranges_left[reported] == 0:
                report.outcomes.append(outcomes[reported])
                if on_file:
                    on_file(outcomes[reported])
                reported += 1

        pending: deque[tuple[int, float, float | None, Future]] = deque()
        report_finished()
        while jobs or pending:
            while jobs and len(pending) < max(1, in_flight):
                i, start_s, end_s = jobs.popleft()
                if outcomes[i].status == "failed":  # an earlier range of this video failed
                    ranges_left[i] -= 1
                    continue
                pending.append((i, start_s, end_s, _in_background(
                    self._index_range_or_error, planned[i].path, start_s, end_s, force, planned[i].generation)))
            if not pending:
                report_finished()
                continue
            i, start_s, end_s, future = pending.popleft()
            result, outcome = future.result(), outcomes[i]  # Ctrl-C or FlowUnavailableError leave at once
            ranges_left[i] -= 1
            if outcome.status == "failed":
                pass
            elif result.error:
                outcome.status, outcome.error = "failed", result.error
            else:
                if result.status == "indexed":
                    outcome.status = "indexed"
                outcome.num_frames, outcome.num_shots = result.num_frames, result.num_shots
                outcome.duration_s = result.duration_s or outcome.duration_s
                done_s += max(0.0, (end_s if end_s is not None else planned[i].duration_s) - start_s)
                if on_progress:
                    on_progress(outcome.path, done_s, total_s)
            report_finished()
        return report


def _in_background(fn: Callable[..., Any], *args: Any) -> Future:
    """Run ``fn(*args)`` on a daemon thread: a run that stops (Ctrl-C, the Flow went away) does not wait
    for the requests still under way, as a ThreadPoolExecutor would, at its exit and at the program's."""
    future: Future = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True, name="clipseek-index").start()
    return future


def _jsonable(value: Any) -> Any:
    """numpy arrays and other odd values in a doc dict, made JSON-friendly."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
