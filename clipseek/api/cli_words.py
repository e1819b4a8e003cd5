"""The CLI's commands for what the videos are about (docs/metadata.md):

    clipseek import-metadata FILE [--format csv|jsonl] [--map COLUMN=FIELD ...]
    clipseek topics [--video V ...] [--csv | --json] [--vocabulary FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clipseek.api.format import format_time, library_topic_seconds, suggested_category, topic_seconds, video_metadata
from clipseek.errors import QueryError

if TYPE_CHECKING:
    from clipseek.api.client import ClipseekClient

EXIT_OK, EXIT_FAILED = 0, 1


def parse_mapping(items: list[str]) -> dict[str, str]:
    """``["headline=title", ...]`` as {column: field}; QueryError for a malformed item."""
    mapping = {}
    for item in items:
        column, sep, target = item.partition("=")
        if not sep or not column.strip() or not target.strip():
            raise QueryError(f"--map takes COLUMN=FIELD (e.g. headline=title), got {item!r}")
        mapping[column.strip()] = target.strip()
    return mapping


def cmd_import_metadata(args: argparse.Namespace, client: ClipseekClient) -> int:
    """Read a manifest here (paths relative to its folder), send its rows, print each failed row and the
    counts; exit 1 when any row failed."""
    from clipseek.index.metadata import MetadataError, manifest_format, read_manifest

    path = Path(args.file).expanduser()
    try:
        fmt = args.format or manifest_format(path)
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets write a byte-order mark
        rows, errors = read_manifest(text, fmt, parse_mapping(args.map or []), base=path.resolve().parent)
    except (OSError, UnicodeDecodeError, MetadataError) as exc:
        print(f"clipseek: {path}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    answers = client.import_metadata(rows)
    errors += [a.error for a in answers if a.status == "failed"]
    for error in sorted(errors, key=_line_number):
        print(f"{path.name}: {error}", file=sys.stderr)
    attached = sum(a.status == "attached" for a in answers)
    waiting = sum(a.status == "waiting" for a in answers)
    print(f"{attached + waiting} rows imported: {attached} attached to indexed videos, {waiting} waiting for "
          f"their videos; {len(errors)} failed")
    return EXIT_FAILED if errors else EXIT_OK


def _line_number(error: str) -> int:
    head = error.split(":", 1)[0]
    return int(head[5:]) if head.startswith("line ") and head[5:].isdigit() else 0


def cmd_topics(args: argparse.Namespace, client: ClipseekClient) -> int:
    """The time-per-topic table (the default vocabulary is set first when the library has none)."""
    if args.vocabulary:
        from clipseek.index.topics import load_vocabulary

        try:
            vocabulary = load_vocabulary(Path(args.vocabulary).expanduser())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise QueryError(f"{args.vocabulary}: not a vocabulary file ({exc!r}); see docs/metadata.md") from None
        tagged = client.set_vocabulary(vocabulary)
        print(f"vocabulary of {len(vocabulary.labels)} labels set: {tagged} shots tagged", file=sys.stderr)
        labels = [label.name for label in vocabulary.labels]
    else:
        had = client.vocabulary()
        labels = [label.name for label in (had or client.ensure_vocabulary())]
        if labels and not had:
            print(f"no vocabulary yet: the default one was set ({', '.join(labels)})", file=sys.stderr)
    videos = client.videos(args.video or [])
    if args.json:
        print(json.dumps(topics_json(videos, labels), indent=2, ensure_ascii=False))
    elif args.csv:
        write_topics_csv(videos, sys.stdout)
    else:
        print_topics(videos, labels)
    return EXIT_OK


def topics_json(videos: list, labels: list[str]) -> dict:
    return {
        "vocabulary": labels,
        "videos": [{"video_id": v.video_id, "path": v.path, "title": video_metadata(v).get("title", ""),
                    "category": video_metadata(v).get("category", ""), "suggested_category": suggested_category(v),
                    "duration_s": v.duration_s, "seconds_per_topic": topic_seconds(v)} for v in videos],
        "library": library_topic_seconds(videos),
    }


def write_topics_csv(videos: list, out) -> None:
    """One row per video and topic: ``video_id,path,title,topic,seconds,share`` (share of the video's tagged time)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["video_id", "path", "title", "topic", "seconds", "share"])
    for video in videos:
        seconds = topic_seconds(video)
        total = sum(seconds.values()) or 1.0
        for name, value in seconds.items():
            writer.writerow([video.video_id, video.path, video_metadata(video).get("title", ""), name,
                             f"{value:.3f}", f"{value / total:.4f}"])


def _shares(seconds: dict[str, float]) -> str:
    total = sum(seconds.values()) or 1.0
    return " · ".join(f"{name} {value:.1f} s ({100 * value / total:.0f}%)" for name, value in seconds.items())


def print_topics(videos: list, labels: list[str]) -> None:
    if not labels:
        print("nothing indexed yet: run `clipseek index PATH`, then `clipseek topics`")
        return
    print(f"time per topic (vocabulary: {', '.join(labels)})")
    for video in videos:
        name = video_metadata(video).get("title") or Path(video.path).name
        print(f"{video.video_id}  {format_time(video.duration_s):>9s}  {name}")
        print(f"    {_shares(topic_seconds(video)) or '(no shot tagged)'}")
    if len(videos) > 1:
        print(f"library ({len(videos)} videos): {_shares(library_topic_seconds(videos))}")


def add_words_parsers(sub: argparse._SubParsersAction) -> None:
    imports = sub.add_parser("import-metadata", help="import titles, descriptions, categories, tags from a manifest")
    imports.add_argument("file", help="a CSV or JSON-lines file; a row names its video by a path column or by an id "
                                      "that is the video's file name stem (80328682 -> 80328682.mp4)")
    imports.add_argument("--format", choices=["csv", "jsonl"], default=None,
                         help="default: from the extension (.csv, .jsonl)")
    imports.add_argument("--map", action="append", metavar="COLUMN=FIELD",
                         help="read a column as a field (title, description, category, tags, source_id, cover, "
                              "path, or any name); repeatable")

    topics = sub.add_parser("topics", help="time spent on each topic, per video and for the library")
    topics.add_argument("--video", action="append", help="only this video (id or path); repeatable")
    shape = topics.add_mutually_exclusive_group()
    shape.add_argument("--csv", action="store_true", help="print CSV: video_id,path,title,topic,seconds,share")
    shape.add_argument("--json", action="store_true", help="print JSON")
    topics.add_argument("--vocabulary", metavar="FILE",
                        help="replace the library's topic labels with these (JSON or CSV, docs/metadata.md) and "
                             "tag every shot again")
