"""The ``clipseek`` command: serve the Flow, index videos, search, list and delete.

    clipseek serve
    clipseek index PATH... [--force]
    clipseek search ["TEXT"] [--image PICTURE] [--like VIDEO@SECONDS] [--min-confidence LEVEL]
                    [--top-k N] [--video V ...] [--json]
                    [--where FIELD=VALUE ...] [--topic T] [--mode M] [--text-weight W]
    clipseek videos [--json]
    clipseek delete VIDEO
    clipseek import-metadata FILE [--format csv|jsonl] [--map COLUMN=FIELD ...]
    clipseek topics [--video V ...] [--csv | --json] [--vocabulary FILE]
    clipseek deploy k8s OUTDIR [--encoder-replicas N] [--image IMG]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clipseek.api.cli_words import add_words_parsers, cmd_import_metadata, cmd_topics
from clipseek.api.defaults import DEFAULT_CHUNK_S, DEFAULT_IN_FLIGHT, default_address
from clipseek.api.format import (
    NO_CONFIDENT_RESULT,
    confidence_label,
    format_time,
    segment_json,
    suggested_category,
    video_metadata,
)
from clipseek.engine.deploy import add_deploy_parser, cmd_deploy
from clipseek.errors import AuthenticationError, ClipseekError, FlowUnavailableError, QueryError

if TYPE_CHECKING:  # clipseek.api.client imports docarray (and torch): not for `clipseek serve`
    from clipseek.api.client import ClipseekClient, IndexReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _local_path(path: str) -> str:
    """An existing local path made absolute (the Flow may run elsewhere; then it is passed as given)."""
    return str(Path(path).expanduser().resolve()) if os.path.exists(path) else path


def cmd_serve(args: argparse.Namespace) -> int:
    from clipseek.engine.serve import ServeSettings, serve
    from clipseek.settings import load_settings

    try:
        settings = load_settings(ServeSettings, {"grpc_port": args.grpc_port, "http_port": args.http_port,
                                                 "flow": args.flow, "host": args.host})
    except ValueError as exc:
        print(f"clipseek serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    local = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else shown

    def announce() -> None:
        key = "required (CLIPSEEK_API_KEY)" if settings.api_key else "none"
        print(f"clipseek is serving on {shown}: gRPC port {settings.grpc_port}, HTTP port {settings.http_port} "
              f"(API docs at http://{local}:{settings.http_port}/docs; API key: {key}). Ctrl-C stops it.",
              flush=True)

    code = serve(settings, on_ready=announce)
    if code != EXIT_OK:
        print("clipseek serve: stopped with an error (see above)", file=sys.stderr)
    return code


def cmd_index(args: argparse.Namespace, client: ClipseekClient) -> int:
    from tqdm import tqdm

    bar = tqdm(total=0, unit="s", desc="indexing", disable=args.quiet or None, leave=False,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of video [{elapsed}<{remaining}]")

    def on_progress(path: str, done_s: float, total_s: float) -> None:
        bar.total = total_s
        bar.n = done_s
        bar.set_description(Path(path).name[:30])
        bar.refresh()

    def on_file(outcome) -> None:
        line = f"{outcome.status:9s} {outcome.path}"
        if outcome.error:
            line += ": " + outcome.error.removeprefix(outcome.path + ": ")
        elif outcome.status == "indexed":
            line += f" ({format_time(outcome.duration_s)}, {outcome.num_shots} shots, {outcome.num_frames} frames)"
        if outcome.warning:
            line += f"\n          warning: {outcome.warning}"
        bar.write(line, file=sys.stdout)

    if not (math.isfinite(args.chunk_s) and args.chunk_s > 0) or args.in_flight < 1:
        raise QueryError(f"--chunk-s must be a number of seconds > 0 (got {args.chunk_s}) and --in-flight "
                         f"at least 1 (got {args.in_flight})")
    try:
        report = client.index([_local_path(p) for p in args.paths], force=args.force, chunk_s=args.chunk_s,
                              on_progress=on_progress, on_file=on_file, in_flight=args.in_flight)
    except (FlowUnavailableError, AuthenticationError) as exc:  # every file was still reported
        bar.close()
        _print_counts(getattr(exc, "report", None))
        raise
    bar.close()
    _print_counts(report)
    return EXIT_FAILED if report.failed else EXIT_OK


def _print_counts(report: IndexReport | None) -> None:
    if report is not None:
        counts = report.counts()
        print(f"{counts['indexed']} indexed, {counts['unchanged']} unchanged, {counts['failed']} failed", flush=True)


def _picture(path: str) -> tuple[bytes | None, str]:
    """``--image``: a local file is sent as its bytes; any other path is read by the Flow (media roots)."""
    if not path:
        return None, ""
    local = Path(path).expanduser()
    if local.is_file():
        return local.read_bytes(), ""
    return None, path


def _like(spec: str) -> str:
    """``--like VIDEO@SECONDS`` with a local video path made absolute."""
    video, at, seconds = spec.rpartition("@")
    return f"{_local_path(video)}@{seconds}" if at and video else spec


def cmd_search(args: argparse.Namespace, client: ClipseekClient) -> int:
    image, image_path = _picture(args.image or "")
    segments = client.search(args.text, top_k=args.top_k, videos=[_local_path(v) for v in args.video or []],
                             min_confidence=args.min_confidence, image=image, image_path=image_path,
                             image_weight=args.image_weight, like=_like(args.like or ""),
                             where=(args.where or []) + ([f"topic={args.topic}"] if args.topic else []),
                             mode=args.mode, text_weight=args.text_weight)
    if args.json:
        print(json.dumps([segment_json(s) for s in segments], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not segments:
        print("no results" if args.min_confidence in ("", "low") else f"no results at {args.min_confidence} "
              "confidence or above")
    elif all(s.level == "low" for s in segments):
        print(NO_CONFIDENT_RESULT)
    for rank, s in enumerate(segments, 1):
        print(f"{rank:2d}. {s.score:.3f} {confidence_label(s):>11s}  {format_time(s.start_s)}-{format_time(s.end_s)}"
              f"  {s.video}{_about(s)}")
    return EXIT_OK


def _about(segment) -> str:
    """`` [text match] "Title" · Category · topic circle`` for a result that has words."""
    parts = [f'"{segment.title}"'] if segment.title else []
    parts += [segment.category] if segment.category else []
    parts += [f"topic {segment.topic}"] if segment.topic else []
    found = {"text": "  [text match]", "frames+text": "  [frames + text]"}.get(segment.match, "")
    return found + ("  " + " · ".join(parts) if parts else "")


def cmd_videos(args: argparse.Namespace, client: ClipseekClient) -> int:
    videos = client.videos()
    if args.json:
        print(json.dumps([{
            "video_id": v.video_id, "path": v.path, "paths": list(v.paths) or [v.path], "duration_s": v.duration_s,
            "num_shots": v.num_shots, "num_frames": v.num_frames, "indexed_at": v.indexed_at,
            "complete": v.already_indexed, "metadata": video_metadata(v),
            "seconds_per_topic": {t.name: t.seconds for t in v.topics},
        } for v in videos], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not videos:
        print("nothing indexed yet: run `clipseek index PATH`")
    for v in videos:
        incomplete = "" if v.already_indexed else "  (incomplete: run `clipseek index` on it again to finish)"
        print(f"{v.video_id}  {format_time(v.duration_s):>9s}  {v.num_shots:4d} shots  {v.num_frames:5d} frames  "
              f"{v.path}{incomplete}")
        for other in v.paths:
            if other != v.path:
                print(f"{'':16s}  also at {other}")
        about = _video_about(v)
        if about:
            print(f"{'':16s}  {about}")
    return EXIT_OK


def _video_about(video) -> str:
    """``"Title" · Beach · tags: sea, sand`` (``topic: circle (suggested)`` when it has no category)."""
    meta = video_metadata(video)
    parts = [f'"{meta["title"]}"'] if meta.get("title") else []
    if meta.get("category"):
        parts.append(str(meta["category"]))
    elif suggested_category(video):
        parts.append(f"{suggested_category(video)} (suggested by its topics)")
    if meta.get("tags"):
        tags = meta["tags"] if isinstance(meta["tags"], list) else [meta["tags"]]
        parts.append("tags: " + ", ".join(str(t) for t in tags))
    return " · ".join(parts)


def cmd_delete(args: argparse.Namespace, client: ClipseekClient) -> int:
    result = client.delete(_local_path(args.video))
    print(f"deleted {result.video_id} {result.path}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipseek",
                                     description="Find the moment in your videos that matches a sentence.")
    parser.add_argument("--address", default=None,
                        help="the Flow: http://host:port or grpc://host:port "
                             f"(default $CLIPSEEK_ADDRESS or {default_address()})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the Flow (gRPC and HTTP)")
    serve.add_argument("--grpc-port", type=int, default=None, help="default $CLIPSEEK_GRPC_PORT or 51000")
    serve.add_argument("--http-port", type=int, default=None, help="default $CLIPSEEK_HTTP_PORT or 51001")
    serve.add_argument("--flow", default=None, help="flow.yml to serve (default: the checkout's)")
    serve.add_argument("--host", default=None,
                       help="where the gateway listens (default $CLIPSEEK_HOST or 127.0.0.1: this machine only; "
                            "0.0.0.0 exposes it to the network: set CLIPSEEK_API_KEY then)")

    index = sub.add_parser("index", help="index video files and folders (recursively)")
    index.add_argument("paths", nargs="+", metavar="PATH")
    index.add_argument("--force", action="store_true", help="re-index even if the content is already indexed")
    index.add_argument("--chunk-s", type=float, default=DEFAULT_CHUNK_S,
                       help="longest time range sent in one request (long videos are split)")
    index.add_argument("--in-flight", type=int, default=DEFAULT_IN_FLIGHT,
                       help="requests under way at once (3: two ranges decode while the one before is embedded)")
    index.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    search = sub.add_parser("search", help="find clips matching a sentence, a picture, or a clip")
    search.add_argument("text", nargs="?", default="", help="what you are looking for (optional with --image/--like)")
    search.add_argument("--image", metavar="PICTURE",
                        help="a picture as the query (a local file, or a path under the Flow's media folders)")
    search.add_argument("--image-weight", type=float, default=0.5,
                        help="with TEXT and --image: the picture's share of the query, 0..1 (default 0.5)")
    search.add_argument("--like", metavar="VIDEO@SECONDS",
                        help="more like this: clips like the indexed frame of VIDEO (id or path) at SECONDS")
    search.add_argument("--min-confidence", choices=("low", "medium", "high"), default="low",
                        help="leave out results below this confidence (docs/search.md)")
    search.add_argument("--top-k", type=int, default=10)
    search.add_argument("--video", action="append", help="search only this video (id or path); repeatable")
    search.add_argument("--where", action="append", metavar="FIELD=VALUE",
                        help="only videos whose metadata has this value (category=Beach, tags=sunset, any field), "
                             "or shots of this topic (topic=Beach); repeatable, all must hold")
    search.add_argument("--topic", help="only clips in shots tagged with this topic (as --where topic=TOPIC)")
    search.add_argument("--mode", choices=["auto", "frames", "text", "hybrid"], default="auto",
                        help="frames (pictures), text (titles, descriptions, tags), hybrid (both, fused); "
                             "auto: hybrid when the library has metadata")
    search.add_argument("--text-weight", type=float, default=1.0,
                        help="hybrid: weight of the words against the pictures (0-100, default 1)")
    search.add_argument("--json", action="store_true", help="print a JSON list")

    videos = sub.add_parser("videos", help="list indexed videos")
    videos.add_argument("--json", action="store_true")

    delete = sub.add_parser("delete", help="remove a video from the index")
    delete.add_argument("video", help="video id or path")

    add_words_parsers(sub)
    add_deploy_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose or args.command == "serve" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "deploy":
        return cmd_deploy(args)
    from clipseek.api.client import ClipseekClient

    client = ClipseekClient(args.address)
    handler = {"index": cmd_index, "search": cmd_search, "videos": cmd_videos, "delete": cmd_delete,
               "import-metadata": cmd_import_metadata, "topics": cmd_topics}[args.command]
    try:
        return handler(args, client)
    except QueryError as exc:
        print(f"clipseek: bad query: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FlowUnavailableError as exc:
        print(f"clipseek: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ClipseekError as exc:
        print(f"clipseek: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
