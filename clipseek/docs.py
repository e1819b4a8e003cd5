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
             fills ``segments`` (ranked, non-overlapping clips, each with its ``confidence``) or ``error``.
             A picture as the query: ``image_base64`` (the file's bytes) or ``image_path`` (under the media
             roots); the text encoder embeds it with the model's image tower into ``image_embedding``.
             "More like this": ``like`` = VIDEO@SECONDS, the indexer searches with that stored frame's vector.
``/videos``  client -> one empty VideoDoc: the indexer answers with one VideoDoc per indexed video.
``/delete``  client -> VideoDoc(video_id or uri): the indexer removes the video (by path: only that path
             when the same content is indexed at another one; ``paths`` says where it stays).
``/thumbnail`` client -> Thumbnail(uri, time_s): the loader fills ``jpeg_base64`` with the frame at that time.

What the videos are about (docs/metadata.md):

``/index``   the loader also fills ``container_meta_json`` (the file's own tags) and ``sidecar_meta_json``
             (``<video>.json``; a bad one is a ``warning``, not a failure); the indexer stores both.
``/videos``  each answer carries ``metadata_json`` (the video's merged metadata) and ``topics`` (seconds
             per topic); VideoDocs naming videos (``video_id`` or ``uri``) get those videos only, with
             their ``shots`` and each shot's ``topic``.
``/metadata`` client -> MetadataRowDoc(match, fields_json) per manifest row: the indexer stores them (rows
             for videos not indexed yet wait for them) and answers each with ``status`` or ``error``.
``/topics``  client -> TopicLabel(name, zh, prompts) per label: the text encoder fills ``embedding`` (one
             row per prompt), the indexer makes them the library's vocabulary and tags every shot.
``/vocabulary`` client -> one empty TopicLabel: the indexer answers the library's labels (none: no vocabulary).
``/search``  ``Query.text_mode``, ``text_weight`` and ``where`` choose how the words count; each Segment
             says why it was found (``match``, ``text_score``) and what its video is about.

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
    topic: str = ""  # /videos naming a video: the label of the vocabulary this shot was tagged with
    topic_score: Finite = 0.0  # its cosine to that label


class Frame(BaseDoc):
    """One sampled frame of a video, at its real presentation time."""

    time_s: Finite
    shot_index: WireInt = 0  # index into VideoDoc.shots
    pixels: NdArray | None = None  # uint8 HxWx3 RGB, letterboxed to the encoder's square input
    embedding: NdArray | None = None  # float32, L2-normalised


class TopicSeconds(BaseDoc):
    """How long a video spends on one topic (the sum of its shots tagged with it)."""

    name: str
    seconds: Finite


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
    container_meta_json: str = ""  # the file's own tags as metadata fields (a JSON object); "": not read
    sidecar_meta_json: str = ""  # the fields of <video>.json (a JSON object, {} when there is none); "": not read
    warning: str = ""  # something the user should know that did not stop the video (a bad sidecar file)

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
    metadata_json: str = ""  # /videos: its metadata (title, description, category, tags, ...), a JSON object
    topics: DocList[TopicSeconds] = DocList[TopicSeconds]()  # /videos: seconds per topic, most first


class Segment(BaseDoc):
    """A search result: a clip of one video, ranked by ``score``."""

    video_id: str
    video: str  # path of the video file
    start_s: Finite
    end_s: Finite
    score: Finite  # cosine similarity of the best frame to the query, in [-1, 1]
    thumbnail_s: Finite  # time of the best-matching frame, for the thumbnail and the player
    duration_s: Finite = 0.0  # of the whole video
    match: str = "frames"  # why it was found: "frames", "text" (its video's words) or "frames+text"
    text_score: Finite = 0.0  # BM25 of its video's metadata for the query's words (0: no text match)
    title: str = ""  # of its video (metadata)
    category: str = ""  # of its video (metadata)
    topic: str = ""  # of the shot it is in (when the library has a vocabulary)
    confidence: Finite = 0.0  # how many standard deviations ``score`` stands above the query's scores over the library
    level: str = ""  # "high", "medium" or "low": the confidence read with the model's thresholds (docs/search.md)


class Query(BaseDoc):
    """A text query and, after ``/search``, its results."""

    text: str = ""
    top_k: WireInt = 10
    video_ids: list[str] = []  # restrict the search to these videos (ids or paths); empty = all
    # frames | text (the videos' metadata) | hybrid (both, fused) | auto (hybrid when there is metadata)
    text_mode: str = "auto"
    text_weight: Finite = 1.0  # hybrid: the weight of the text ranking in the fusion (0-100)
    where: list[str] = []  # filters "field=value" (category=Beach, tags=sunset, topic=circle); all must hold
    embedding: NdArray | None = None  # filled by the text encoder
    model: str = ""  # the model that made the embedding
    segments: DocList[Segment] = DocList[Segment]()
    error: str = ""
    min_confidence: str = ""  # leave out results below this level: "low" (all; also ""), "medium", "high"
    image_base64: str = ""  # a picture as the query: the bytes of a JPEG/PNG/WebP/... file, base64
    image_path: str = ""  # ... or its path under the media roots (read by the text encoder)
    image_weight: Finite = 0.5  # with both text and a picture: the picture's share of the query, 0..1
    like: str = ""  # "more like this": VIDEO@SECONDS (a video id or path, a frame's time); no re-encoding
    image_embedding: NdArray | None = None  # filled by the text encoder from the picture


class Thumbnail(BaseDoc):
    """A frame of a video at ``time_s``, as a base64 JPEG (so it travels as JSON over HTTP too)."""

    uri: str = ""
    time_s: Finite = 0.0
    width_px: WireInt = 320
    jpeg_base64: str = ""
    error: str = ""


class MetadataRowDoc(BaseDoc):
    """One manifest row (clipseek.index.metadata.read_manifest) on its way to the index, and its fate."""

    match: str = ""  # which video(s): "path:/abs/file.mp4" or "stem:80328682" (the file name without extension)
    fields_json: str = "{}"  # the row's fields, a JSON object (title, description, category, tags, ...)
    line: WireInt = 0  # where it was in the manifest, for messages
    status: str = ""  # "attached" (an indexed video has it now), "waiting" (for its video), "failed"
    error: str = ""


class TopicLabel(BaseDoc):
    """A label of the topic vocabulary: its names and the prompts the text encoder embeds for it."""

    name: str = ""  # English name: what tables and filters use
    zh: str = ""  # Chinese name
    prompts: list[str] = []
    embedding: NdArray | None = None  # filled by the text encoder: one row per prompt
    model: str = ""  # the model that made the embedding
    shots_tagged: WireInt = 0  # /topics answer: shots of the library tagged with the new vocabulary
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
    "/metadata": MetadataRowDoc,
    "/topics": TopicLabel,
    "/vocabulary": TopicLabel,
}
