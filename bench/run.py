"""clipseek benchmarks: ``python bench/run.py [--quick] [--runs N] [--sizes 10000,100000] [--output FILE]``.

Measures indexing through the real Flow (against a VCED-style baseline on the same video and model),
the image encoder against the machine's compute limit, search latency over HTTP and gRPC with ANN
recall, and peak memory of a long video against a short one. Prints one table and the targets, and
writes them into docs/benchmarks.md (between the results markers; ``--quick`` writes to build/bench/).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from importlib import util as importlib_util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import inputs  # noqa: E402
from bench.encoder import measure_encoder  # noqa: E402,F401  (imported so a broken module fails early)
from bench.indexing import IndexingResult, index_in_child, measure_indexing  # noqa: E402
from bench.measure import load_average, machine, median  # noqa: E402
from bench.report import Report, Target  # noqa: E402
from bench.search_latency import measure_search  # noqa: E402
from bench.worker import run_in_child, run_many_in_child  # noqa: E402

TINY_MODEL = str(REPO / "tests" / "fixtures" / "clipseek-tiny.json")
DEMO_WEIGHTS = REPO / "clipseek" / "demo" / "model" / "clipseek-demo.safetensors"
DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def embed_dim(model: str) -> int:
    """The embedding size from the model's open_clip config (no torch needed)."""
    if model.endswith(".json"):
        path = Path(model)
    elif model == "demo":
        path = REPO / "clipseek" / "demo" / "model" / "clipseek-demo.json"
    else:
        found = importlib_util.find_spec("open_clip")
        path = Path(list(found.submodule_search_locations)[0]) / "model_configs" / f"{model}.json"
    return int(json.loads(path.read_text())["embed_dim"])


def model_label(model: str) -> str:
    return Path(model).stem if model.endswith(".json") else model


def add_indexing(report: Report, result: IndexingResult) -> None:
    key = f"[{result.video}, {model_label(result.model)}]"
    n = f"median of {len(result.ours)}"
    report.add(f"index wall {key}", result.wall_s, "s", f"{n}; through the Flow, HTTP client")
    report.add(f"index frames embedded {key}", result.frames, "frames", f"{result.ours[0].shots} shots")
    report.add(f"index frames embedded per minute {key}", result.frames * 60.0 / result.duration_s, "frames/min",
               "of video")
    report.add(f"index real-time factor {key}", result.duration_s / result.wall_s, "x",
               "video seconds per wall second")
    report.add(f"index peak RSS, largest process {key}", median([r.max_rss_mb for r in result.ours]), "MiB",
               "VmHWM of the Flow's Python processes")
    report.add(f"index peak RSS, all Flow processes {key}", median([r.total_rss_mb for r in result.ours]),
               "MiB", "sum of the VmHWM of each process")
    report.add(f"index CPU time, all Flow processes {key}", median([r.cpu_s for r in result.ours]), "s",
               "user + system, while indexing")
    report.add(f"index cores busy {key}", median([r.cpu_s / r.wall_s for r in result.ours]), "cores",
               f"CPU time / wall; this machine has {os.cpu_count()}")
    if result.parts:
        report.add(f"decode + shot scan alone {key}", result.decode_s, "s", "loader's work, in one process")
        report.add(f"encode alone {key}", result.encode_s, "s", f"{result.parts[0].frames} frames, batch 32")
        report.add(f"index wall / max(decode, encode) {key}",
                   median([o.wall_s / max(p.decode_s, p.encode_s) for o, p in zip(result.ours, result.parts,
                                                                                 strict=False)]),
                   "ratio", "target <= 1.15 (perfect overlap = 1.0)")
        report.add(f"index wall / (decode + encode) {key}",
                   median([o.wall_s / (p.decode_s + p.encode_s) for o, p in zip(result.ours, result.parts,
                                                                               strict=False)]),
                   "ratio", "~1.0 = no overlap at all")
    if result.baseline:
        report.add(f"VCED baseline wall {key}", result.baseline_wall_s, "s",
                   f"decode {median([b['decode_s'] for b in result.baseline]):.1f} s + encode "
                   f"{median([b['encode_s'] for b in result.baseline]):.1f} s")
        report.add(f"VCED baseline frames embedded {key}", result.baseline[0]["frames"], "frames", "1 fps")
        report.add(f"VCED baseline peak RSS {key}", median([b["peak_rss_mb"] for b in result.baseline]), "MiB",
                   "one process")
        report.add(f"VCED baseline search p50 {key}", median([b["search_p50_ms"] for b in result.baseline]),
                   "ms", "in-process: 77-token text + Python loop")
        report.add(f"speed-up vs VCED baseline {key}", median(result.speedup_ratios), "x",
                   "median of paired runs (baseline wall / ours)")


def add_encoder(report: Report, label: str, enc: dict) -> None:
    key = f"[{label}]"
    report.add(f"encoder images/s, batch {enc['batch_size']} {key}", enc["images_per_s"], "img/s",
               "ClipModel.encode_frames, uint8 frames in")
    report.add(f"encoder images/s, batch 1 {key}", enc["images_per_s_batch1"], "img/s", "")
    report.add(f"model GFLOPs per image {key}", enc["gflops_per_image"], "GFLOP", "FlopCounterMode")
    report.add(f"fp32 matmul rate {key}", enc["matmul_gflops"], "GFLOP/s",
               f"{enc['matmul_size']}-square torch.matmul, best of 3, median of rounds")
    report.add(f"encoder compute limit {key}", enc["compute_limit_images_per_s"], "img/s", "matmul rate / FLOPs")
    report.add(f"encoder fraction of compute limit {key}", enc["fraction_of_limit"], "fraction",
               "median of per-round fractions; target >= 0.8")
    report.add(f"encoder images/s, bf16, batch {enc['batch_size']} {key}", enc["bf16_images_per_s"], "img/s",
               "precision: bf16, same weights" + ("" if enc["cpu_native_bf16"] else " (no native bf16 here)"))
    report.add(f"bf16 matmul rate {key}", enc["bf16_matmul_gflops"], "GFLOP/s", "same size, bfloat16")
    report.add(f"encoder fraction of bf16 compute limit {key}", enc["bf16_fraction_of_limit"], "fraction",
               "bf16 img/s / (bf16 matmul rate / FLOPs)")
    report.add(f"bf16 vs fp32 embedding cosine, min {key}", enc["bf16_cosine_min"], "cosine",
               f"mean {enc['bf16_cosine_mean']:.6f}, over the frames timed")
    report.add(f"encoder images/s, int8 MLPs, batch {enc['batch_size']} {key}", enc["int8_images_per_s"], "img/s",
               "precision: int8 (dynamic quantisation), same weights")
    report.add(f"int8 vs fp32 embedding cosine, min {key}", enc["int8_cosine_min"], "cosine",
               f"mean {enc['int8_cosine_mean']:.6f}, over the frames timed")


def add_search(report: Report, result) -> None:
    key = f"[{result.frames} frames]"
    for protocol in ("http", "grpc"):
        p50, p95, p99 = result.stats(protocol)
        count = len(result.http_ms)
        report.add(f"search {protocol.upper()} p50 {key}", p50, "ms", f"{count} queries, end to end")
        report.add(f"search {protocol.upper()} p95 {key}", p95, "ms", "")
        report.add(f"search {protocol.upper()} p99 {key}", p99, "ms", "")
    report.add(f"search recall@10 {key}", result.recall_at_10, "fraction", "hnsw (ef 256, k 100) vs exact")
    report.add(f"text encode alone p50 {key}", result.parts["text_encode_p50_ms"], "ms",
               "in-process, the text encoder's default runtime")
    report.add(f"Library.search alone p50 {key}", result.parts["store_search_p50_ms"], "ms",
               "in-process: hnsw + clip assembly")
    if result.build_s:
        report.add(f"workspace build {key}", result.build_s, "s", "Library.index_range + graph inserted + checkpoint")


def known(value: float, verdict: bool) -> bool | None:
    """The verdict, or None (not measured) when the value is missing."""
    return verdict if math.isfinite(value) else None


def judge(report: Report, args, ten_min_key: str, sizes: list[int], memory_key: tuple[str, str]) -> None:
    t = report.targets
    fraction = report.value(f"encoder fraction of compute limit [{args.main_label}]")
    t.append(Target("encoder speed", ">= 80% of compute limit", f"{fraction:.0%}", known(fraction, fraction >= 0.8)))
    overlap = report.value(f"index wall / max(decode, encode) {ten_min_key}")
    t.append(Target("decode/encode overlap", "index wall <= 1.15 x max(decode, encode)", f"{overlap:.2f} x",
                    known(overlap, overlap <= 1.15)))
    speedup = report.value(f"speed-up vs VCED baseline {ten_min_key}")
    t.append(Target("vs VCED baseline", ">= 5x faster (10-min video)", f"{speedup:.1f}x", known(speedup, speedup >= 5)))
    largest = max(sizes)
    p50 = report.value(f"search HTTP p50 [{largest} frames]")
    p99 = report.value(f"search HTTP p99 [{largest} frames]")
    at_1m = largest >= 1_000_000
    t.append(Target("search latency", "HTTP p50 <= 50 ms, p99 <= 150 ms at 1M frames",
                    f"p50 {p50:.0f} ms, p99 {p99:.0f} ms at {largest} frames",
                    (p50 <= 50 and p99 <= 150) if at_1m else (False if p50 > 50 or p99 > 150 else None)))
    recalls = [report.value(f"search recall@10 [{n} frames]") for n in sizes]
    t.append(Target("recall", "recall@10 >= 0.98", ", ".join(f"{r:.3f}" for r in recalls),
                    all(r >= 0.98 for r in recalls) if at_1m else (False if min(recalls) < 0.98 else None)))
    short, long = (report.value(f"index peak RSS, all Flow processes [{v}, {args.memory_label}]")
                   for v in memory_key)
    growth = long / short - 1
    t.append(Target("flat memory", "peak RSS of the long video within 10% of the short",
                    f"{growth:+.1%} (sum of Flow processes)", known(growth, abs(growth) <= 0.10)))


def run_quick(report: Report, videos: dict, model: str, count: int, queries: int) -> None:
    """Everything on tiny inputs with the tiny model, through ONE Flow (starting a Flow costs 10-40 s
    here) and one child process for the in-process parts: the harness is exercised end to end."""
    import shutil
    import tempfile

    from bench.indexing import IndexingResult, PartsRun, index_with, start_flow
    from bench.search_latency import LatencyResult, ann_recall_at_10, build_workspace, time_searches

    paths = {key: inputs.ensure_video(spec) for key, spec in videos.items()}
    ws_path, build_s = build_workspace(count, embed_dim(model), model)
    with tempfile.TemporaryDirectory(prefix="clipseek-bench-quick-") as tmp:
        workspace = Path(tmp) / "ws"
        shutil.copytree(ws_path, workspace)
        log("quick: one Flow for indexing, memory and search")
        with start_flow(model, "none", inputs.CACHE_DIR, workspace) as flow:
            runs = {key: index_with(flow, paths[key], chunk_s=12.0) for key in
                    ("10min-720p", "1min-1080p", "10min-240p", "2h-240p")}
            timings = time_searches(flow, queries)
    tasks = []
    for key in ("10min-720p", "1min-1080p"):
        tasks += [("parts", {"video": str(paths[key]), "model": model, "pretrained": "none"}),
                  ("baseline", {"video": str(paths[key]), "model": model, "pretrained": "none"})]
    tasks += [("encoder", {"model": model, "pretrained": "none", "frames": 16, "rounds": 1, "matmul_size": 512}),
              ("search_parts", {"workspace": str(ws_path), "model": model, "pretrained": "none", "queries": 10})]
    log("quick: in-process parts in one child process")
    done = run_many_in_child(tasks)
    for i, key in enumerate(("10min-720p", "1min-1080p")):
        spec = videos[key]
        add_indexing(report, IndexingResult(spec.name, model, spec.duration_s, [runs[key]],
                                            [PartsRun(**done[2 * i])], [done[2 * i + 1]]))
    add_encoder(report, model_label(model), done[4])
    add_search(report, LatencyResult(count, build_s, ann_recall_at_10(ws_path), timings["http"], timings["grpc"],
                                     done[5]))
    for key in ("10min-240p", "2h-240p"):
        spec = videos[key]
        add_indexing(report, IndexingResult(spec.name, model, spec.duration_s, [runs[key]], [], []))
    report.notes.append("quick run: one Flow for everything, so a peak RSS is over the Flow's life so far")


def run_full(report: Report, args, videos: dict, models: list, runs: int, sizes: list[int], queries: int,
             only: set[str]) -> None:
    main_model, main_pretrained = models[0]
    sections = {"encoder": lambda: full_encoder(report, models),
                "search": lambda: full_search(report, sizes, main_model, main_pretrained, queries),
                "index": lambda: full_indexing(report, videos, models, runs),
                "memory": lambda: full_memory(report, videos)}
    for name, section in sections.items():
        if name not in only:
            continue
        try:
            section()
        except Exception as exc:  # a broken section must not throw away the hours the others took
            log(f"section {name} failed:\n{traceback.format_exc()}")
            report.notes.append(f"section {name} failed: {exc!r}")


def full_indexing(report: Report, videos: dict, models: list, runs: int) -> None:
    main_model, main_pretrained = models[0]
    for key in ("10min-720p", "1min-1080p"):
        spec = videos[key]
        path = inputs.ensure_video(spec)
        for model, pretrained in models:
            log(f"indexing {spec.name} with {model_label(model)}")
            n = runs if (model == main_model and key == "10min-720p") else 1
            result = measure_indexing(spec.name, path, spec.duration_s, model, pretrained, n,
                                      with_parts=True, with_baseline=True, log=log)
            add_indexing(report, result)
            if model == main_model and key == "10min-720p":
                add_int8_indexing(report, result, path, main_pretrained)


def add_int8_indexing(report: Report, default: IndexingResult, path: Path, pretrained: str) -> None:
    """The same video through the Flow with ``precision: int8`` (both encoders), once, against the
    baseline median of the default-precision measurement (``auto``: bf16 on a CPU with native bf16)."""
    log(f"indexing {default.video} with {model_label(default.model)}, precision int8")
    run = index_in_child(path, default.model, pretrained, overrides={"precision": "int8"})
    key = f"[{default.video}, {model_label(default.model)}, int8]"
    report.add(f"index wall {key}", run.wall_s, "s", "1 run; through the Flow, precision: int8")
    report.add(f"index frames embedded {key}", run.frames, "frames", f"{run.shots} shots")
    report.add(f"index real-time factor {key}", default.duration_s / run.wall_s, "x", "video seconds per wall second")
    if default.baseline:
        report.add(f"speed-up vs VCED baseline {key}", default.baseline_wall_s / run.wall_s, "x",
                   "baseline median / this run")


def full_encoder(report: Report, models: list) -> None:
    for model, pretrained in models:
        log(f"encoder alone: {model_label(model)}")
        add_encoder(report, model_label(model), run_in_child("encoder", model=model, pretrained=pretrained))


def full_search(report: Report, sizes: list[int], main_model: str, main_pretrained: str, queries: int) -> None:
    for count in sizes:
        log(f"search over {count} frames")
        add_search(report, measure_search(count, embed_dim(main_model), main_model, main_pretrained,
                                          queries, log))


def full_memory(report: Report, videos: dict) -> None:
    # the tiny model with frames at ViT-B-32's 224 px, so the loader and the messages carry what they
    # carry with the real model (embedding 2 h with ViT-B-32 would take ~10 min on 2 cores)
    for key in ("10min-240p", "2h-240p"):
        spec = videos[key]
        path = inputs.ensure_video(spec)
        log(f"memory: indexing {spec.name}")
        run = index_in_child(path, TINY_MODEL, "none", {"frame_size_px": 224})
        log(f"  {run.wall_s:.0f} s, {run.frames} frames, peak RSS {run.peak_rss_mb}")
        add_indexing(report, IndexingResult(spec.name, TINY_MODEL, spec.duration_s, [run], [], []))


def write_docs(path: Path, body: str) -> None:
    block = f"{START}\n{body}\n{END}"
    text = path.read_text() if path.is_file() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs and the tiny model: well under a minute")
    parser.add_argument("--runs", type=int, default=0, help="runs per indexing measurement (default 3; 1 quick)")
    parser.add_argument("--sizes", default="", help="indexed frame counts for search (default 10000,100000)")
    parser.add_argument("--queries", type=int, default=0, help="searches per protocol and size (default 500)")
    parser.add_argument("--only", default="index,encoder,search,memory", help="which parts to run")
    parser.add_argument("--no-demo", action="store_true", help="leave the demo model out even if it is there")
    parser.add_argument("--output", default="", help="markdown file to write the results into")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # The Flow's executors are forked from this process, which never loads torch (every in-process
    # measurement runs in a child process), so fork is safe here and the executors start in seconds;
    # JINA_MP_START_METHOD=spawn measures the spawn path instead.
    os.environ.setdefault("JINA_MP_START_METHOD", "fork")
    # jina takes a per-user file lock per executor class (~/.cache/jina/locks/ImageEncoder.lock, ...)
    # while an executor starts; one stuck process anywhere on the machine holding it (an orphaned
    # test run, say) makes every Flow hang at start-up. A private HOME gives the benchmark its own.
    os.environ["HOME"] = str(inputs.CACHE_DIR / "home")
    (inputs.CACHE_DIR / "home").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")
    os.environ.setdefault("JINA_HIDE_SURVEY", "1")
    os.environ.setdefault("JINA_LOG_LEVEL", "WARNING")
    quick = args.quick
    runs = args.runs or (1 if quick else 3)
    sizes = [int(s) for s in args.sizes.split(",") if s] or ([2000] if quick else [10_000, 100_000])
    queries = args.queries or (20 if quick else 500)
    only = set(args.only.split(","))
    main_model, main_pretrained = (TINY_MODEL, "none") if quick else ("ViT-B-32", "none")
    args.main_label = model_label(main_model)
    models = [(main_model, main_pretrained)]
    if not quick and not args.no_demo and DEMO_WEIGHTS.is_file():
        models.append(("demo", "laion2b_s34b_b79k"))  # the default tag resolves to the shipped demo weights
    args.memory_label = model_label(TINY_MODEL)
    videos = inputs.videos(quick)
    command = "python bench/run.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    shown = [f"{name}={os.environ[name]}" for name in ("CLIPSEEK_PRECISION", "CLIPSEEK_DEVICE") if os.environ.get(name)]
    command = " ".join([*shown, command])  # the settings that change what is measured
    mach = machine()
    report = Report(mach.describe(), command.strip(), load_average())
    started = time.perf_counter()

    ten_min_key = f"[{videos['10min-720p'].name}, {args.main_label}]"
    memory_key = (videos["10min-240p"].name, videos["2h-240p"].name)
    if quick:
        run_quick(report, videos, main_model, sizes[0], queries)
    else:
        run_full(report, args, videos, models, runs, sizes, queries, only)
    if only >= {"index", "encoder", "search", "memory"}:
        judge(report, args, ten_min_key, sizes, memory_key)
    report.notes.append(f"whole run: {time.perf_counter() - started:.0f} s")
    print(report.markdown(), flush=True)
    output = Path(args.output) if args.output else (inputs.CACHE_DIR / "quick-results.md" if quick else DOCS)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_docs(output, report.markdown())
    bad = [r.metric for r in report.rows if not math.isfinite(r.value)]
    if bad:
        log(f"not finite: {bad}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
