"""What a video is about, in words: metadata from three sources, and text that full-text search can use.

Sources, weakest first (a later one wins field by field):

1. ``container``: the file's own tags, as ffprobe reports them (title, comment/description, genre,
   keywords), read by the video loader;
2. ``sidecar``: a JSON file next to the video, named like it plus ``.json`` (``trip.mp4.json``), with
   any of the fields below (and any others, kept as extra fields);
3. ``manifest``: rows imported with ``clipseek import-metadata FILE`` (JSON lines or CSV). A row
   attaches to a video by a path column, or by an id that is the video's file name without its
   extension (``80328682`` -> ``.../80328682.mp4``). Rows for videos not indexed yet are kept and attach
   when the video arrives.

Known fields: ``title``, ``description``, ``category``, ``tags`` (a list; "a, b" or "a|b" in a CSV),
``source_id``, ``cover`` (an image URL or path), ``declared_duration_s``; anything else is an extra
field, kept and searchable, and usable in filters (``--where field=value``). The 560k-clip short-video
set's columns work without a mapping: ``mp4_id`` (source id, matched to the file name),
``video_label`` (category), ``mp4_time`` (declared duration), ``mp4_txt_brief`` (description),
``mp4_background_image_url`` (cover).

Pure functions: no storage, no jina.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

KNOWN_FIELDS = ("title", "description", "category", "tags", "source_id", "cover", "declared_duration_s")
SOURCES = ("container", "sidecar", "manifest")  # weakest first
COLUMN_ALIASES = {
    # the 560k-clip short-video set
    "mp4_id": "source_id", "video_label": "category", "mp4_time": "declared_duration_s",
    "mp4_txt_brief": "description", "mp4_background_image_url": "cover",
    # common spellings
    "id": "source_id", "video_id": "source_id", "name": "title", "brief": "description", "summary": "description",
    "caption": "description", "comment": "description", "label": "category", "genre": "category",
    "keywords": "tags", "tag": "tags", "duration": "declared_duration_s", "thumbnail": "cover", "image": "cover",
    "file": "path", "filename": "path", "file_path": "path", "video": "path",
}
CONTAINER_TAGS = {"title": "title", "comment": "description", "description": "description",
                  "synopsis": "description", "genre": "category", "keywords": "tags"}
MAX_FIELD_CHARS = 20_000
MAX_ROWS = 2_000_000


class MetadataError(ValueError):
    """A row or file that cannot be read as metadata; the message names the row and the problem."""


@dataclass(frozen=True)
class MetadataRow:
    """Fields for the video(s) that ``match`` names: ``path:/abs/file.mp4`` or ``stem:80328682``."""

    match: str
    fields: dict[str, Any] = field(default_factory=dict)
    line: int = 0


def normalise_fields(raw: dict[str, Any], mapping: dict[str, str] | None = None) -> dict[str, Any]:
    """Field names mapped (explicit mapping, then the known aliases) and values cleaned: strings
    stripped, tags a list, numbers finite; empty values dropped."""
    mapping = {k.lower(): v for k, v in (mapping or {}).items()}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).strip()
        target = mapping.get(name.lower()) or COLUMN_ALIASES.get(name.lower()) or name
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        out[target] = _clean(target, value)
    return {k: v for k, v in out.items() if v not in ("", [], None)}


def _clean(name: str, value: Any) -> Any:
    if name == "tags":
        items = value if isinstance(value, list) else re.split(r"[,|;，、]", str(value))
        return [str(t).strip()[:200] for t in items if str(t).strip()]
    if name == "declared_duration_s":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise MetadataError(f"{name} must be a number of seconds, got {value!r}") from None
        if not math.isfinite(number) or number < 0:
            raise MetadataError(f"{name} must be a finite, non-negative number, got {value!r}")
        return number
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
        return value if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS]
    if isinstance(value, float) and not math.isfinite(value):
        raise MetadataError(f"{name} must be finite, got {value!r}")
    if isinstance(value, (bool, int, float)):
        return value
    return str(value).strip()[:MAX_FIELD_CHARS]


def row_match(fields: dict[str, Any], base: Path | None = None) -> str:
    """How a normalised row finds its video: its path (made absolute against ``base``), else its
    source id as a file name stem."""
    path = fields.get("path")
    if path:
        p = Path(str(path)).expanduser()
        if not p.is_absolute() and base is not None:
            p = base / p
        return f"path:{_normpath(p)}"
    source = fields.get("source_id")
    if source not in (None, ""):
        stem = str(source).strip()
        if isinstance(source, float) and source.is_integer():
            stem = str(int(source))
        return f"stem:{stem}"
    raise MetadataError("the row has neither a path nor an id to find its video by (columns: path, or "
                        "mp4_id / id / source_id)")


def _normpath(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(PurePosixPath(path))


def read_manifest(text: str, fmt: str, mapping: dict[str, str] | None = None,
                  base: Path | None = None) -> tuple[list[MetadataRow], list[str]]:
    """Rows of a manifest (``fmt``: ``csv`` or ``jsonl``), and one error message per bad row (the
    others are kept). Raises MetadataError when the file as a whole cannot be read."""
    rows: list[MetadataRow] = []
    errors: list[str] = []
    if fmt == "jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"line {number}: not JSON ({exc.msg})")
                continue
            if not isinstance(record, dict):
                errors.append(f"line {number}: a JSON object was expected, got {type(record).__name__}")
                continue
            records.append((number, record))
    elif fmt == "csv":
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            records = [(number, dict(record)) for number, record in enumerate(reader, 2)]
        except csv.Error as exc:
            raise MetadataError(f"not a readable CSV file ({exc})") from None
        if reader.fieldnames is None:
            raise MetadataError("the CSV file is empty (no header row)")
    else:
        raise MetadataError(f"unknown manifest format {fmt!r}: use csv or jsonl")
    if len(records) > MAX_ROWS:
        raise MetadataError(f"{len(records)} rows: at most {MAX_ROWS} per import")
    for number, record in records:
        try:
            fields = normalise_fields({k: v for k, v in record.items() if k is not None}, mapping)
            match = row_match(fields, base)
        except MetadataError as exc:
            errors.append(f"line {number}: {exc}")
            continue
        fields.pop("path", None)
        if not fields:
            errors.append(f"line {number}: no metadata besides the {match.split(':')[0]}")
            continue
        rows.append(MetadataRow(match, fields, number))
    return rows, errors


def manifest_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise MetadataError(f"{path}: cannot tell the format from the extension (use .csv or .jsonl)")


def container_fields(tags: dict[str, str]) -> dict[str, Any]:
    """The metadata in a file's own format tags (ffprobe ``format.tags``), by the known tag names."""
    picked = {}
    for key, value in tags.items():
        target = CONTAINER_TAGS.get(key.lower())
        if target and target not in picked:
            picked[target] = value
    return normalise_fields(picked)


def sidecar_path(video: Path) -> Path:
    return video.with_name(video.name + ".json")


def read_sidecar(video: Path) -> dict[str, Any]:
    """The fields of ``<video>.json`` (empty when there is none). Raises MetadataError on a bad file."""
    path = sidecar_path(video)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetadataError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise MetadataError(f"{path}: a JSON object of fields was expected")
    data.pop("path", None)
    return normalise_fields(data)


def merged(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Fields of several sources, weakest first: a later source wins field by field."""
    out: dict[str, Any] = {}
    for layer in layers:
        out.update(layer)
    return out


def match_keys(paths: tuple[str, ...] | list[str]) -> list[str]:
    """The manifest keys that can name a video at these paths: stems first (less specific), then paths."""
    stems = [f"stem:{PurePosixPath(p).stem}" for p in paths]
    return list(dict.fromkeys(stems + [f"path:{p}" for p in paths]))


# -- full-text search ------------------------------------------------------------------------------------
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]+")
WORD = re.compile(r"\w+", re.UNICODE)
STOP_WORDS = frozenset("""a an and are as at be by for from has have in into is it its of on or that the this to was
were with video clip shot scene 一个 一只 一段 这个 那个 视频""".split())


def cjk_bigrams(run: str) -> list[str]:
    """A run of CJK characters as overlapping bigrams (the usual way to index Chinese without a
    dictionary: "海滩婚礼" -> 海滩 滩婚 婚礼); a lone character stays itself."""
    if len(run) == 1:
        return [run]
    return [run[i:i + 2] for i in range(len(run) - 1)]


def tokens(text: str) -> list[str]:
    """Words of ``text`` for full-text indexing: Latin words as they are, CJK as bigrams."""
    out: list[str] = []
    position = 0
    for match in CJK.finditer(text):
        out += WORD.findall(text[position:match.start()])
        out += cjk_bigrams(match.group())
        position = match.end()
    out += WORD.findall(text[position:])
    return out


def indexable_text(fields: dict[str, Any]) -> dict[str, str]:
    """The searchable columns of a video's metadata, tokenised (``tokens``) and joined by spaces."""
    def join(value: Any) -> str:
        if isinstance(value, list):
            return " ".join(join(v) for v in value)
        if isinstance(value, dict):
            return " ".join(join(v) for v in value.values())
        return " ".join(tokens(str(value)))

    extra = {k: v for k, v in fields.items() if k not in KNOWN_FIELDS or k in ("source_id",)}
    return {"title": join(fields.get("title", "")), "description": join(fields.get("description", "")),
            "category": join(fields.get("category", "")), "tags": join(fields.get("tags", [])),
            "extra": join(extra)}


def query_terms(query: str) -> list[str]:
    """The distinct terms of a query worth matching: no stop words, no one-letter Latin words."""
    seen: dict[str, None] = {}
    for token in tokens(query.lower()):
        if token in STOP_WORDS or (len(token) < 2 and not CJK.fullmatch(token)):
            continue
        seen[token] = None
    return list(seen)


def fts_query(terms: list[str]) -> str:
    """An FTS5 query matching any of ``terms`` (each quoted, so no term is read as an operator)."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


# -- filters -------------------------------------------------------------------------------------------
def parse_where(items: list[str] | dict[str, str]) -> dict[str, str]:
    """``["category=Beach", "tags=sunset"]`` (or a dict) as {field: value}; raises on a malformed item."""
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            name, sep, value = str(item).partition("=")
            if not sep or not name.strip() or not value.strip():
                raise MetadataError(f"a filter is FIELD=VALUE (e.g. category=Beach), got {item!r}")
            pairs.append((name, value))
    out = {}
    for name, value in pairs:
        name = COLUMN_ALIASES.get(name.strip().lower(), name.strip())
        out[name] = str(value).strip()
    return out


def matches(fields: dict[str, Any], where: dict[str, str]) -> bool:
    """Whether metadata ``fields`` satisfy every filter (case-insensitive; a list field matches when one
    of its items does; ``topic`` filters are applied to shots elsewhere, not here)."""
    for name, wanted in where.items():
        if name == "topic":
            continue
        value = fields.get(name)
        wanted_l = wanted.lower()
        if isinstance(value, list):
            if not any(str(v).lower() == wanted_l for v in value):
                return False
        elif value is None or str(value).lower() != wanted_l:
            if not (isinstance(value, (int, float)) and _same_number(value, wanted)):
                return False
    return True


def _same_number(value: float, text: str) -> bool:
    try:
        return float(text) == float(value)
    except ValueError:
        return False


# -- fusing frame and text rankings --------------------------------------------------------------------
RRF_K = 60  # the usual constant of reciprocal rank fusion (Cormack et al. 2009)


def rrf(frame_rank: int | None, text_rank: int | None, text_weight: float, k: int = RRF_K) -> float:
    """Reciprocal rank fusion of a clip's rank among the frame results and its video's rank among the
    text results (1-based; None: absent from that list)."""
    score = 0.0
    if frame_rank is not None:
        score += 1.0 / (k + frame_rank)
    if text_rank is not None:
        score += text_weight / (k + text_rank)
    return score


SUFFIXES = ("ings", "ing", "edly", "ed", "ies", "es", "s")


def stem(word: str) -> str:
    """A light English stemmer (weddings, wedding -> wedd) for a backend without SQLite's porter
    tokenizer; other scripts are left as they are."""
    word = word.lower()
    if not word.isascii() or not word.isalpha() or len(word) <= 4:
        return word
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def bm25(terms: list[str], docs: list[tuple[str, list[str]]], k1: float = 1.2, b: float = 0.75
         ) -> list[tuple[str, float]]:
    """Okapi BM25 of each (id, stemmed tokens) document for ``terms``, matching documents only, best
    first (for a backend without a full-text engine of its own)."""
    if not docs or not terms:
        return []
    wanted = list(dict.fromkeys(stem(t) for t in terms))
    average = sum(len(tokens) for _, tokens in docs) / len(docs) or 1.0
    frequency = {t: sum(1 for _, tokens in docs if t in tokens) for t in wanted}
    out = []
    for doc_id, tokens in docs:
        score = 0.0
        for term in wanted:
            count = tokens.count(term)
            if count:
                idf = math.log(1 + (len(docs) - frequency[term] + 0.5) / (frequency[term] + 0.5))
                score += idf * count * (k1 + 1) / (count + k1 * (1 - b + b * len(tokens) / average))
        if score > 0:
            out.append((doc_id, score))
    return sorted(out, key=lambda item: -item[1])
