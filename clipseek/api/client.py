"""Talking to a running clipseek Flow, over HTTP (plain httpx, no jina needed) or gRPC.

The CLI and the web page both use this module, so indexing a library (probe, skip what is
already indexed, split long videos into time ranges) behaves the same everywhere.

Every document sent gets its answer or an error: requests carry at most MAX_DOCS_PER_REQUEST
documents (larger inputs are sent in several), and an endpoint that answers each document with one
(``/index``, ``/search``, ``/delete``, ``/thumbnail``) must answer as many as it was sent. The API key
(``CLIPSEEK_API_KEY``) goes in the ``Authorization`` header (HTTP) or metadata (gRPC).
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from docarray import BaseDoc, DocList
from pydantic import ValidationError

from clipseek.api.defaults import (  # noqa: F401 (DEFAULT_ADDRESS is imported from here by the page)
    DEFAULT_ADDRESS,
    DEFAULT_CHUNK_S,
    DEFAULT_IN_FLIGHT,
    MAX_DOCS_PER_REQUEST,
    default_address,
    default_api_key,
)
from clipseek.api.index_run import IndexOutcome, IndexReport, IndexRun, plan_ranges  # noqa: F401
from clipseek.docs import MetadataRowDoc, Query, Segment, Thumbnail, TopicLabel, VideoDoc
from clipseek.errors import (
    AuthenticationError,
    ClipseekError,
    FlowUnavailableError,
    QueryError,
    ServiceUnavailableError,
)

# /probe expands folders, /videos lists the library, /vocabulary answers the library's labels
ONE_ANSWER_EACH = frozenset({"/index", "/search", "/delete", "/thumbnail", "/metadata", "/topics"})
SERVICE_HEADER = "x-clipseek-service"  # clipseek's gateway names the service that is down (HTTP 503)
_GRPC_METHOD = "/jina.JinaSingleDataRequestRPC/process_single_data"
_JINA_DEPLOYMENT = re.compile(r"deployment `?(\w+)")


def validation_message(exc: ValidationError) -> str:
    """pydantic's errors as one line: ``top_k: Input should be ... , got 2147483648``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())) or "request"
        given = repr(error.get("input"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}, got {given[:60]}")
    return "; ".join(parts)


def make_doc(doc_type: type[BaseDoc], **fields: Any) -> Any:
    """A document of ``doc_type``; raises QueryError (not pydantic's ValidationError) for a bad value."""
    try:
        return doc_type(**fields)
    except ValidationError as exc:
        raise QueryError(validation_message(exc)) from None


class ClipseekClient:
    """``address``: ``http://host:port`` (the gateway's HTTP port) or ``grpc://host:port``;
    ``api_key``: the Flow's CLIPSEEK_API_KEY (default: this environment's)."""

    def __init__(self, address: str | None = None, timeout_s: float = 30.0, index_timeout_s: float = 1800.0,
                 api_key: str | None = None):
        self.address = (address or default_address()).rstrip("/")
        self.timeout_s = timeout_s  # searches, listings, thumbnails: a hung Flow is reported quickly
        self.index_timeout_s = index_timeout_s  # /index and /probe decode or hash whole files
        self.api_key = default_api_key() if api_key is None else api_key
        self.protocol = "grpc" if self.address.startswith("grpc://") else "http"
        if self.protocol == "http" and "://" not in self.address:
            self.address = "http://" + self.address
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers) if self.protocol == "http" else None
        self._long = {"/index", "/probe"}
        self._grpc_call: Any = None
        self._grpc_lock = threading.Lock()

    # -- transport ---------------------------------------------------------------------------
    def _post(self, endpoint: str, docs: DocList, doc_type: type) -> DocList:
        """Send ``docs`` in requests of at most MAX_DOCS_PER_REQUEST; every answer, in order."""
        answers: list = []
        for at in range(0, len(docs), MAX_DOCS_PER_REQUEST):
            batch = DocList[doc_type](docs[at:at + MAX_DOCS_PER_REQUEST])
            got = (self._post_http if self.protocol == "http" else self._post_grpc)(endpoint, batch, doc_type)
            if endpoint in ONE_ANSWER_EACH and len(got) != len(batch):
                raise ClipseekError(f"{endpoint} at {self.address} answered {len(got)} of the {len(batch)} "
                                    f"documents sent")
            answers.extend(got)
        return DocList[doc_type](answers)

    def _timeout(self, endpoint: str) -> float:
        return self.index_timeout_s if endpoint in self._long else self.timeout_s

    def _post_http(self, endpoint: str, docs: DocList, doc_type: type) -> list:
        payload = {"data": [doc.model_dump(exclude={"id"}) for doc in docs]}
        try:
            response = self._http.post(f"{self.address}{endpoint}", json=_jsonable(payload),
                                       timeout=self._timeout(endpoint))
        except httpx.TimeoutException:
            raise ClipseekError(f"{endpoint} at {self.address} did not answer in time") from None
        except httpx.TransportError as exc:
            raise FlowUnavailableError(
                f"cannot reach the clipseek Flow at {self.address} ({exc.__class__.__name__}); "
                f"start it with `clipseek serve` or set CLIPSEEK_ADDRESS") from None
        if response.status_code != 200:
            raise self._http_error(endpoint, response)
        body = response.json()
        status = (body.get("header") or {}).get("status") or {}
        if status.get("code") == "ERROR" or status.get("code") == 1:
            raise ClipseekError(f"{endpoint} failed in the Flow: {status.get('description', status)}")
        try:
            return [doc_type.model_validate(item) for item in body.get("data") or []]
        except ValidationError as exc:
            raise ClipseekError(f"{endpoint} at {self.address} answered with a bad document: "
                                f"{validation_message(exc)}") from None

    def _http_error(self, endpoint: str, response: httpx.Response) -> ClipseekError:
        try:
            detail = response.json().get("detail", "")
        except ValueError:
            detail = ""
        detail = str(detail or response.text)[:500]
        code = response.status_code
        if code == 401:
            return AuthenticationError(f"the clipseek Flow at {self.address} refused {endpoint}: {detail}")
        if code in (400, 413, 422):
            return QueryError(f"{endpoint}: the Flow refused the request: {detail}")
        if code == 503:
            service = response.headers.get(SERVICE_HEADER, "")
            return ServiceUnavailableError(f"{endpoint} at {self.address}: {detail}", service)
        return ClipseekError(f"{endpoint} failed at {self.address}: HTTP {code} {detail}")

    def _grpc(self) -> Any:
        with self._grpc_lock:
            if self._grpc_call is None:
                import grpc
                from jina.proto import serializer

                from clipseek.engine.jina_compat import fast_document_ids

                fast_document_ids()  # answers are read with docarray: its id parsing, without a validator per call
                target = self.address.removeprefix("grpc://")
                channel = grpc.insecure_channel(target, options=[
                    ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1),
                    ("grpc.enable_http_proxy", 0)])
                self._grpc_call = channel.unary_unary(
                    _GRPC_METHOD, request_serializer=serializer.DataRequestProto.SerializeToString)
            return self._grpc_call

    def _post_grpc(self, endpoint: str, docs: DocList, doc_type: type) -> list:
        """One request to the gateway's ``process_single_data`` (the answer is read as bytes: jina's
        own decoder fails on the answer of a call that ended in an error)."""
        import grpc
        from jina.proto import serializer
        from jina.types.request.data import DataRequest

        call = self._grpc()
        request = DataRequest()
        request.header.exec_endpoint = endpoint
        request.data.docs = docs
        metadata = (("authorization", f"Bearer {self.api_key}"),) if self.api_key else None
        try:
            raw = call(request, timeout=self._timeout(endpoint), metadata=metadata)
        except grpc.RpcError as exc:
            raise self._grpc_error(endpoint, exc) from None
        response = serializer.DataRequestProto.FromString(raw)
        status = response.header.status
        if status.code == status.ERROR:
            where = status.exception.executor or "the Flow"
            message = status.description.strip().splitlines()
            if status.exception.name == "ValidationError":
                raise QueryError(f"{endpoint}: {where} refused the request: {' '.join(message[:3])}")
            raise ClipseekError(f"{endpoint} failed in {where}: {' '.join(message[:3])}")
        response.document_array_cls = DocList[doc_type]
        return list(response.data.docs)

    def _grpc_error(self, endpoint: str, exc: Any) -> ClipseekError:
        import grpc

        code, details = exc.code(), (exc.details() or "")
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return AuthenticationError(f"the clipseek Flow at {self.address} refused {endpoint}: {details}")
        if code == grpc.StatusCode.UNAVAILABLE:
            service = _JINA_DEPLOYMENT.search(details)
            if service:
                return ServiceUnavailableError(f"{endpoint} at {self.address}: the {service.group(1)} service "
                                               f"is down ({details.split(' |')[0]})", service.group(1))
            return FlowUnavailableError(f"cannot reach the clipseek Flow at {self.address} ({details}); "
                                        f"start it with `clipseek serve` or set CLIPSEEK_ADDRESS")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ClipseekError(f"{endpoint} at {self.address} did not answer in time")
        return ClipseekError(f"{endpoint} failed at {self.address}: {code.name} {details}")

    def is_ready(self) -> bool:
        """Whether the Flow answers and every one of its services is up (HTTP: its readiness check)."""
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
    def search(self, text: str = "", top_k: int = 10, videos: Iterable[str] = (), *, min_confidence: str = "",
               image: bytes | None = None, image_path: str = "", image_weight: float = 0.5,
               like: str = "", where: Iterable[str] = (), mode: str = "auto",
               text_weight: float = 1.0) -> list[Segment]:
        """Ranked clips for ``text``, a picture (``image`` bytes, or ``image_path`` under the Flow's media
        roots; with text too, ``image_weight`` is the picture's share) or ``like`` (VIDEO@SECONDS: more
        like that indexed frame); only those at ``min_confidence`` or above. ``where``: metadata filters
        "field=value" (all must hold; ``topic=...`` filters shots); ``mode``: frames, text, hybrid or auto
        (hybrid when the library has metadata); ``text_weight``: the weight of the words in hybrid
        (docs/metadata.md). Raises QueryError for a bad query (empty, bad top_k, not an image, ...)."""
        if image is not None and not image:
            raise QueryError("the query image is empty (0 bytes)")
        extra = {"image_base64": base64.b64encode(image).decode("ascii")} if image is not None else {}
        query = make_doc(Query, text=text, top_k=top_k, video_ids=list(videos), min_confidence=min_confidence,
                         image_path=image_path, image_weight=image_weight, like=like, where=list(where),
                         text_mode=mode, text_weight=text_weight, **extra)
        result = self._post("/search", DocList[Query]([query]), Query)
        if result[0].error:
            raise QueryError(result[0].error)
        return list(result[0].segments)

    def videos(self, videos: Iterable[str] = ()) -> list[VideoDoc]:
        """Every indexed video; or these (ids or paths), with their shots and each shot's topic (raises
        for an unknown one)."""
        named = [make_doc(VideoDoc, uri=str(v)) for v in videos]
        if not named:
            return list(self._post("/videos", DocList[VideoDoc]([VideoDoc()]), VideoDoc))
        found = list(self._post("/videos", DocList[VideoDoc](named), VideoDoc))
        failed = [v.error for v in found if v.error]
        if failed:
            raise QueryError("; ".join(failed))
        return found

    def more_like(self, video: str, time_s: float, top_k: int = 10, videos: Iterable[str] = (),
                  min_confidence: str = "") -> list[Segment]:
        """Clips like the indexed frame of ``video`` (id or path) nearest ``time_s``, by its stored vector."""
        return self.search(top_k=top_k, videos=videos, min_confidence=min_confidence, like=f"{video}@{time_s:g}")

    def delete(self, video: str) -> VideoDoc:
        result = self._post("/delete", DocList[VideoDoc]([make_doc(VideoDoc, uri=video)]), VideoDoc)[0]
        if result.error:
            raise ClipseekError(result.error)
        return result

    def probe(self, paths: Iterable[str], force: bool = False) -> list[VideoDoc]:
        docs = DocList[VideoDoc]([make_doc(VideoDoc, uri=str(p), force=force) for p in paths])
        return list(self._post("/probe", docs, VideoDoc)) if docs else []

    # -- words: metadata and topics -------------------------------------------------------
    def import_metadata(self, rows: Iterable[Any]) -> list[MetadataRowDoc]:
        """Send manifest rows (clipseek.index.metadata.MetadataRow, from ``read_manifest``) in requests of at
        most MAX_DOCS_PER_REQUEST; each answered "attached", "waiting" (for its video) or "failed"."""
        import json

        docs = DocList[MetadataRowDoc]([
            make_doc(MetadataRowDoc, match=row.match, fields_json=json.dumps(row.fields, ensure_ascii=False),
                     line=row.line) for row in rows])
        return list(self._post("/metadata", docs, MetadataRowDoc)) if docs else []

    def vocabulary(self) -> list[TopicLabel]:
        """The library's topic labels (empty: it has no vocabulary yet)."""
        return list(self._post("/vocabulary", DocList[TopicLabel]([TopicLabel()]), TopicLabel))

    def set_vocabulary(self, vocabulary: Any) -> int:
        """Make ``vocabulary`` (clipseek.index.topics.Vocabulary) the library's, in one request: the text
        encoder embeds its prompts, the indexer tags every shot. Returns the shots tagged."""
        labels = list(vocabulary.labels)
        if not 1 <= len(labels) <= MAX_DOCS_PER_REQUEST:  # one request: a vocabulary is replaced whole
            raise QueryError(f"a vocabulary has 1 to {MAX_DOCS_PER_REQUEST} labels, got {len(labels)}")
        docs = DocList[TopicLabel]([make_doc(TopicLabel, name=lab.name, zh=lab.zh, prompts=list(lab.prompts))
                                    for lab in labels])
        answers = self._post("/topics", docs, TopicLabel)
        failed = next((a.error for a in answers if a.error), "")
        if failed:
            raise ClipseekError(failed)
        return answers[0].shots_tagged

    def ensure_vocabulary(self, videos: list[VideoDoc] | None = None) -> list[TopicLabel]:
        """The library's topic labels; when it has none and holds videos, the default vocabulary is set
        first: the demo shapes when its videos were embedded with the demo model, else the 31 categories
        of clipseek.index.topics.DEFAULT_VOCABULARY."""
        labels = self.vocabulary()
        if labels:
            return labels
        videos = self.videos() if videos is None else videos
        if not videos:
            return []
        from clipseek.index.topics import DEFAULT_VOCABULARY, DEMO_VOCABULARY
        from clipseek.model.spec import DEMO_MODEL_NAME

        demo = any(v.model == DEMO_MODEL_NAME for v in videos)
        self.set_vocabulary(DEMO_VOCABULARY if demo else DEFAULT_VOCABULARY)
        return self.vocabulary()

    def thumbnail(self, video: str, time_s: float, width_px: int = 320) -> bytes:
        import base64

        doc = make_doc(Thumbnail, uri=video, time_s=time_s, width_px=width_px)
        result = self._post("/thumbnail", DocList[Thumbnail]([doc]), Thumbnail)[0]
        if result.error:
            raise ClipseekError(result.error)
        return base64.b64decode(result.jpeg_base64)

    def index_range(self, path: str, start_s: float, end_s: float | None, force: bool = False,
                    generation: float = 0.0) -> VideoDoc:
        """Index one time range; ``generation`` (from /probe) lets the indexer refuse it if the video was
        deleted after the run was planned."""
        doc = make_doc(VideoDoc, uri=path, start_s=start_s, end_s=end_s, force=force, generation=generation)
        return self._post("/index", DocList[VideoDoc]([doc]), VideoDoc)[0]

    def _index_range_or_error(self, path: str, start_s: float, end_s: float | None, force: bool,
                              generation: float = 0.0) -> VideoDoc:
        """The range's answer; a failure of this range (a bad file, a service of the Flow that is down)
        as an answer with ``error``. Raises only when the Flow itself cannot be used (unreachable, the
        API key refused): then no other file can be indexed either."""
        try:
            return self.index_range(path, start_s, end_s, force, generation)
        except (FlowUnavailableError, AuthenticationError):
            raise
        except ClipseekError as exc:
            return VideoDoc(uri=path, error=str(exc), status="failed")

    def index(self, paths: Iterable[str], force: bool = False, chunk_s: float = DEFAULT_CHUNK_S,
              on_progress: Callable[[str, float, float], Any] | None = None,
              on_file: Callable[[IndexOutcome], Any] | None = None,
              in_flight: int = DEFAULT_IN_FLIGHT) -> IndexReport:
        """Index files and folders (recursively): see clipseek.api.index_run. Each file gets an outcome;
        one bad file does not stop the others. ``on_progress(path, done_s, total_s)`` follows the seconds
        of video indexed; ``on_file(outcome)`` is called once per file, in order."""
        return IndexRun(self, force, chunk_s, in_flight, on_progress, on_file).run(paths)


def _jsonable(value: Any) -> Any:
    """numpy arrays and other odd values in a doc dict, made JSON-friendly."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
