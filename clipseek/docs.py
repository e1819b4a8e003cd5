"""The documents that travel between clipseek's services: read this file to learn the data flow.

Every service, the CLI and the web page import these types; nobody redefines a field.

``/index``   client -> VideoDoc(uri, [start_s, end_s], force)
             loader fills the probe fields, ``shots`` and ``frames`` (pixels at the encoder's size)
             image encoder fills ``Frame.embedding`` and drops the pixels
             indexer stores the frames and answers with the VideoDoc's summary (no frames)
``/probe``   client -> VideoDoc(uri): the loader expands folders and fills probe fields and the content
             hash without decoding; the indexer sets ``already_indexed`` and ``generation`` (and records
             a new path of content already indexed). Cheap; the client uses it to plan the ``/index``
             requests (and to split long videos into time ranges), each carrying ``generation``.
``/search``  client -> Query(text, top_k, video_ids): the text encoder fills ``embedding``, the indexer
             fills ``segments`` (ranked, non-overlapping clips) or ``error``.
``/videos``  client -> one empty VideoDoc: the indexer answers with one VideoDoc per indexed video.
``/delete``  client -> VideoDoc(video_id or uri): the indexer removes the video (by path: only that path
             when the same content is indexed at another one; ``paths`` says where it stays).
``/thumbnail`` client -> Thumbnail(uri, time_s): the loader fills ``jpeg_base64`` with the frame at that time.

Problems with one document (a missing file, a corrupt video, an empty query) are reported in its
``error`` field, never raised, so the rest of the request goes on and the services keep serving.

Numbers are checked by the types themselves, wherever a document is built or parsed (the HTTP
gateway, every executor reading a request, the client): every float is finite (``Finite``: no NaN,
no infinity) and every integer fits the wire (``WireInt``: docarray's protobuf carries integers as
32 bits). A request that breaks this is refused whole (HTTP 422), before any service acts on it.
Whether a value makes sense (top_k within the indexer's limit, a time range inside the video) is
each service's check, reported in ``error``; :mod:`clipseek.validation` holds the shared ones.
"""

# No `from __future__ import annotations`: pydantic and jina need the real types at run time.

from typing import Annotated

from docarray import BaseDoc, DocList
from docarray.typing import NdArray
from pydantic import Field

WIRE_INT_MAX = 2**31 - 1  # docarray's protobuf NodeProto.integer is an int32
Finite = Annotated[float, Field(allow_inf_nan=False)]
WireInt = Annotated[int, Field(ge=-WIRE_INT_MAX - 1, le=WIRE_INT_MAX)]


class Shot(BaseDoc):
    """A continuous take, ``start_s`` inclusive to ``end_s`` exclusive, in seconds of the video."""

    start_s: Finite
    end_s: Finite
    # False when the shot starts at the start of a requested time range rather than at a real
    # cut, so the indexer can join it to the shot before it.
    starts_at_cut: bool = True


class Frame(BaseDoc):
    """One sampled frame of a video, at its real presentation time."""

    time_s: Finite
    shot_index: WireInt = 0  # index into VideoDoc.shots
    pixels: NdArray | None = None  # uint8 HxWx3 RGB, letterboxed to the encoder's square input
    embedding: NdArray | None = None  # float32, L2-normalised


class VideoDoc(BaseDoc):
    """A video in a request or in the library. The request fields come first."""

    uri: str = ""  # path of the file (or folder, for /probe) as the user named it
    video_id: str = ""  # stable id: a prefix of the content hash
    start_s: Finite | None = None  # optional time range to index, for long videos
    end_s: Finite | None = None
    force: bool = False  # re-index even when the content is already indexed
    generation: Finite = 0.0  # when the index run was planned (s since the epoch): /probe sets it, /index sends it back

    # filled by the loader
    path: str = ""  # resolved absolute path under a media root
    content_hash: str = ""
    size_bytes: Finite = 0.0  # a float: files over 2 GiB do not fit the wire's int32
    duration_s: Finite = 0.0
    width_px: WireInt = 0
    height_px: WireInt = 0
    fps: Finite = 0.0
    shots: DocList[Shot] = DocList[Shot]()
    frames: DocList[Frame] = DocList[Frame]()

    # filled by the image encoder
    model: str = ""  # the model that made the embeddings; the index refuses to mix models

    # filled by the indexer
    paths: list[str] = []  # every path where this content is indexed (the same file copied = one video)
    already_indexed: bool = False  # the whole video is indexed (False: not yet, or only some of its ranges)
    num_shots: WireInt = 0
    num_frames: WireInt = 0
    indexed_at: str = ""  # ISO 8601, UTC
    status: str = ""  # "indexed", "unchanged", "deleted", "probed", "failed"
    error: str = ""  # why this video failed; empty when it did not


class Segment(BaseDoc):
    """A search result: a clip of one video, ranked by ``score``."""

    video_id: str
    video: str  # path of the video file
    start_s: Finite
    end_s: Finite
    score: Finite  # cosine similarity of the best frame to the query, in [-1, 1]
    thumbnail_s: Finite  # time of the best-matching frame, for the thumbnail and the player
    duration_s: Finite = 0.0  # of the whole video


class Query(BaseDoc):
    """A text query and, after ``/search``, its results."""

    text: str = ""
    top_k: WireInt = 10
    video_ids: list[str] = []  # restrict the search to these videos (ids or paths); empty = all
    embedding: NdArray | None = None  # filled by the text encoder
    model: str = ""  # the model that made the embedding
    segments: DocList[Segment] = DocList[Segment]()
    error: str = ""


class Thumbnail(BaseDoc):
    """A frame of a video at ``time_s``, as a base64 JPEG (so it travels as JSON over HTTP too)."""

    uri: str = ""
    time_s: Finite = 0.0
    width_px: WireInt = 320
    jpeg_base64: str = ""
    error: str = ""


# Each endpoint and the document type it takes and answers with (clipseek's gateway parses HTTP
# requests with these; the client sends them).
ENDPOINTS: dict[str, type[BaseDoc]] = {
    "/index": VideoDoc,
    "/probe": VideoDoc,
    "/search": Query,
    "/videos": VideoDoc,
    "/delete": VideoDoc,
    "/thumbnail": Thumbnail,
}
