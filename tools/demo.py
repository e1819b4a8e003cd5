"""The offline demo: build the demo videos, start the engine on the demo model, index, search.

    python tools/demo.py                 # videos in demo-videos/, index in workspace-demo/, prints searches
    python tools/demo.py --evaluate      # also: search every shot's caption and print the hit rate
    python tools/demo.py --serve         # keep serving afterwards (the web page can connect)

Needs no network: the demo model ships in clipseek/demo/model. It only knows its synthetic vocabulary
(coloured shapes), in English and Chinese; it is for trying the engine, not for real footage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clipseek.api.client import ClipseekClient  # noqa: E402
from clipseek.api.demo_eval import breakdown, cut_recall, evaluate  # noqa: E402
from clipseek.api.format import NO_CONFIDENT_RESULT, confidence_label, format_time  # noqa: E402
from clipseek.engine.serve import BackgroundFlow, ServeSettings  # noqa: E402

# English and Chinese: the demo model learned both ("一个红色的圆形" is "a red circle", "蓝色的星形" "a blue star").
QUERIES = ["a red circle", "一个红色的圆形", "a blue star", "蓝色的星形", "a photo of a green triangle",
           "a yellow square on a plain background"]


def show(segments: list) -> None:
    if not segments:
        print(f"  ({NO_CONFIDENT_RESULT})")
    for rank, segment in enumerate(segments, 1):
        print(f"  {rank}. {segment.score:.3f} {confidence_label(segment):>11s}  "
              f"{format_time(segment.start_s)}-{format_time(segment.end_s)}  {Path(segment.video).name}")


def library_is_current(truth_path: Path, videos: int) -> bool:
    """Whether the demo videos of ``truth_path`` are ``videos`` many and have Chinese captions (older
    libraries do not: they are made again)."""
    if not truth_path.exists():
        return False
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    return len(truth["videos"]) == videos and all("caption_zh" in shot for video in truth["videos"]
                                                   for shot in video["shots"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos-dir", type=Path, default=REPO / "demo-videos")
    parser.add_argument("--workspace", type=Path, default=REPO / "workspace-demo")
    parser.add_argument("--videos", type=int, default=24, help="how many demo videos to make")
    parser.add_argument("--grpc-port", type=int, default=51000)
    parser.add_argument("--http-port", type=int, default=51001)
    parser.add_argument("--evaluate", action="store_true",
                        help="search every shot's caption (English, then Chinese), print the hit rates")
    parser.add_argument("--serve", action="store_true", help="keep serving until Ctrl-C")
    parser.add_argument("--model-config", type=Path, default=None,
                        help="another open_clip config of the demo model to serve (e.g. a checkpoint being evaluated)")
    parser.add_argument("--weights", type=Path, default=None, help="with --model-config: its checkpoint")
    args = parser.parse_args(argv)
    if (args.model_config is None) != (args.weights is None):
        raise ValueError(f"--model-config and --weights go together, got {args.model_config} and {args.weights}")

    truth_path = args.videos_dir / "truth.json"
    if not library_is_current(truth_path, args.videos):
        print(f"making {args.videos} demo videos in {args.videos_dir} ...", flush=True)
        sys.path.insert(0, str(REPO / "tools"))
        from make_demo_videos import main as make_videos

        make_videos([str(args.videos_dir), "--videos", str(args.videos), "--quiet"])
    settings = ServeSettings(grpc_port=args.grpc_port, http_port=args.http_port)
    model = {"model": "demo", "pretrained": None} if args.model_config is None else {
        "model": str(args.model_config.resolve()), "pretrained": str(args.weights.resolve())}
    overrides = {**model, "media_roots": [str(args.videos_dir)],
                 "workspace": str(args.workspace)}
    print(f"starting the engine on the demo model ({args.weights or 'shipped'}) ...", flush=True)
    with BackgroundFlow(settings, overrides) as flow:
        client = ClipseekClient(flow.http)
        started = time.perf_counter()
        report = client.index([str(args.videos_dir)])
        counts = {s: sum(o.status == s for o in report.outcomes) for s in ("indexed", "unchanged", "failed")}
        print(f"indexed the library in {time.perf_counter() - started:.1f} s: {counts}")
        for failed in report.failed:
            print(f"  failed: {failed.path}: {failed.error}")
        for text in QUERIES:
            print(f'\nsearch "{text}"')
            show(client.search(text, top_k=3))
        # a picture as the query: the best frame of the first "a blue star" clip, as a JPEG from the engine
        star = client.search("a blue star", top_k=1)[0]
        picture = client.thumbnail(star.video, star.thumbnail_s, 320)
        print(f"\nsearch with a picture (the frame of {Path(star.video).name} at {format_time(star.thumbnail_s)}, "
              f"a {len(picture)}-byte JPEG)")
        show(client.search(image=picture, top_k=3))
        print(f"\nmore like {Path(star.video).name} at {format_time(star.thumbnail_s)} (its stored vector)")
        show(client.more_like(star.video_id, star.thumbnail_s, top_k=3))
        print('\nsearch "a brown horse" (nothing like it in the library), at least medium confidence')
        show(client.search("a brown horse", top_k=3, min_confidence="medium"))
        print('\nsearch "一匹棕色的马" (a brown horse, in Chinese), at least medium confidence')
        show(client.search("一匹棕色的马", top_k=3, min_confidence="medium"))
        if args.evaluate:
            truth = json.loads(truth_path.read_text(encoding="utf-8"))
            print("\n" + cut_recall(client, truth_path))
            for language in ("en", "zh"):
                result = evaluate(client, truth_path, language=language)
                print(f"\ncaptions {language}: " + result.report())
                if breakdown(result, truth):
                    print(f"captions {language} by kind of shot:" + breakdown(result, truth))
                print(f"captions {language}: " + evaluate(client, truth_path, only_within_video=True,
                                                          language=language).report().replace(
                    "shots in", "shots (each search filtered to its own video) in", 1))
        sys.path.insert(0, str(REPO / "tools"))  # the demo's metadata: EN/ZH titles, briefs, categories, topics
        from demo_metadata import import_demo_metadata

        print("\n" + import_demo_metadata(client, args.videos_dir))
        if args.serve:
            print(f"\nserving on {flow.http} and {flow.grpc}; Ctrl-C stops", flush=True)
            try:
                flow.process.wait()
            except KeyboardInterrupt:
                pass
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
