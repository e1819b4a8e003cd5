"""What a commit costs and whether searches wait for it: the index layer alone, in one process.

    python bench/index_commit.py [--sizes 100000,1000000] [--dim 512] [--adds 20] [--legacy 100000]
                                 [--qdrant 5000] [--queries 300]

For each size: a synthetic workspace of clustered 512-d vectors (bench.search_latency.build_workspace,
cached under build/bench/, cloned per run), then

- start-up: opening the workspace until it answers a search;
- commit: ``--adds`` times, one 20-frame video added and made durable (``Library.index_range``):
  wall time, and bytes handed to write() by the process (/proc/self/io wchar) and grown on disk;
- search while indexing: ``--queries`` searches with nothing else going on (idle), then the same
  while a thread indexes 20-frame videos at 1 a second (what this machine's CPU encoder produces), at
  ``--videos-per-s``, and back to back, each time with one checkpoint of the graph forced after the
  tenth video; the longest search against the idle p99;
- recall@10 of the graph's candidates against exact search.

``--legacy N``: the same commit and search-while-committing figures for the snapshot store this layer
replaced (bench/legacy_store.py), at N frames, in the same run. ``--qdrant N``: the qdrant backend in
qdrant-client's local mode at N frames (no server can be installed here: local mode is a Python
reimplementation, so its absolute speed says little about a server). Results: printed, and written
to build/bench/index-commit.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.inputs import CACHE_DIR  # noqa: E402
from bench.measure import load_average, percentile  # noqa: E402
from bench.search_latency import (  # noqa: E402
    FRAMES_PER_VIDEO,
    SHOT_S,
    ann_recall_at_10,
    build_workspace,
    clustered_vectors,
    synthetic_upload,
)

MODEL = "ViT-B-32"


def wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def clone_workspace(source: Path, target: Path) -> None:
    """A writable copy: checkpoint files are never modified in place, so they are hard-linked; the
    catalogue and the log are copied."""
    for path in source.rglob("*"):
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        elif "ckpt-" in str(path.relative_to(source)):
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, dest)
        elif path.name not in ("LOCK", "bench-vectors.npy"):
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    os.sync()  # the copies on disk now, not flushed by the first fsync of a measured commit


def queries_near(vectors: np.ndarray, count: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = np.asarray(vectors[rng.choice(len(vectors), size=count, replace=False)])
    noisy = picked + rng.standard_normal(picked.shape).astype(np.float32) * (0.35 / np.sqrt(picked.shape[1]))
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def time_searches(search, queries: np.ndarray, stop: threading.Event | None = None) -> list[float]:
    """Milliseconds of each search; with ``stop``, keeps cycling through the queries until it is set."""
    out, i = [], 0
    while True:
        started = time.perf_counter()
        search(queries[i % len(queries)])
        out.append((time.perf_counter() - started) * 1000)
        i += 1
        if (stop is None and i >= len(queries)) or (stop is not None and stop.is_set()):
            return out


def new_videos(start_number: int, count: int, dim: int, frames: int = 20) -> list[np.ndarray]:
    rng = np.random.default_rng(start_number)
    out = []
    for _ in range(count):
        v = rng.standard_normal((frames, dim)).astype(np.float32)
        out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    return out


def measure_embedded(count: int, dim: int, adds: int, n_queries: int, log, videos_per_s: float) -> dict:
    from clipseek.index import Library, open_backend
    from clipseek.index.embedded.vectors import HnswSettings

    source, build_s = build_workspace(count, dim, MODEL)
    log(f"{count} frames: workspace " + (f"built in {build_s:.0f} s" if build_s else "cached"))
    vectors = np.load(source / "bench-vectors.npy", mmap_mode="r")
    queries = queries_near(vectors, n_queries)
    result: dict = {"frames": count, "backend": "embedded", "build_s": build_s}
    with tempfile.TemporaryDirectory(prefix="clipseek-commit-", dir=CACHE_DIR) as tmp:
        workspace = Path(tmp) / "ws"
        clone_workspace(source, workspace)
        started = time.perf_counter()
        library = Library(open_backend("embedded", workspace, hnsw=HnswSettings()))
        library.search(queries[0], 10)
        result["startup_s"] = time.perf_counter() - started
        model = library.model.name
        first = count // FRAMES_PER_VIDEO + 10
        times, written, grown = [], [], []
        for i, v in enumerate(new_videos(first, adds, dim)):
            upload = synthetic_upload(first + i, v, model)
            size, chars = disk_bytes(workspace), wchar()
            started = time.perf_counter()
            assert library.index_range(upload).status == "indexed"
            times.append((time.perf_counter() - started) * 1000)
            written.append(wchar() - chars)
            grown.append(disk_bytes(workspace) - size)
        result.update(commit_ms_median=float(np.median(times)), commit_ms_max=max(times),
                      commit_bytes_median=float(np.median(written)), commit_bytes_max=max(written),
                      disk_growth_bytes_median=float(np.median(grown)))
        log(f"  commit of 20 frames: {result['commit_ms_median']:.1f} ms median ({max(times):.1f} max), "
            f"{result['commit_bytes_median'] / 1024:.0f} KB written")
        library.backend.vectors.wait_until_inserted(timeout_s=600)
        for key, rate in (("real pace", 1.0), ("paced", videos_per_s), ("saturated", 0.0)):
            offset = first + adds + {"real pace": 0, "paced": 50_000, "saturated": 100_000}[key]
            result[key] = search_while_indexing(library.search, queries, lambda n, o=offset: synthetic_upload(
                o + n, new_videos(o + n, 1, dim)[0], model), library.index_range,
                checkpoint=library.backend.vectors.checkpoint, log=log, videos_per_s=rate)
            library.backend.vectors.wait_until_inserted(timeout_s=600)
        library.close()
    result["recall_at_10"] = ann_recall_at_10(source)
    log(f"  recall@10 {result['recall_at_10']:.3f}, start-up {result['startup_s']:.1f} s")
    return result


def search_while_indexing(search, queries, make_upload, index, checkpoint=None, log=print,
                          videos_per_s: float = 10.0) -> dict:
    """Idle search latency, then the same searches while ``index`` adds a 20-frame video
    ``videos_per_s`` times a second on another thread (0: back to back, as fast as it goes), and, after
    the tenth video, a forced ``checkpoint`` on a thread of its own (as the index's checkpointer
    thread does: indexing goes on meanwhile); searching goes on until the checkpoint is done."""
    idle = time_searches(lambda q: search(q, 10), queries)
    stop = threading.Event()
    done = {"videos": 0, "checkpoint_s": float("nan")}
    checkpointed = threading.Event()

    def write_checkpoint() -> None:
        started = time.perf_counter()
        checkpoint()
        done["checkpoint_s"] = time.perf_counter() - started
        checkpointed.set()

    def writer() -> None:
        n = 0
        started = time.perf_counter()
        while not stop.is_set():
            index(make_upload(n))
            n += 1
            done["videos"] = n
            if checkpoint is not None and n == 10:
                threading.Thread(target=write_checkpoint).start()
            if videos_per_s:
                time.sleep(max(0.0, started + n / videos_per_s - time.perf_counter()))

    thread = threading.Thread(target=writer)
    thread.start()
    busy = []
    while len(busy) < len(queries) or (checkpoint is not None and not checkpointed.is_set()):
        busy += time_searches(lambda q: search(q, 10), queries[: max(1, len(queries) // 10)])
    stop.set()
    thread.join()
    out = {"idle_p50_ms": percentile(idle, 50), "idle_p99_ms": percentile(idle, 99), "idle_max_ms": max(idle),
           "busy_p50_ms": percentile(busy, 50), "busy_p99_ms": percentile(busy, 99), "busy_max_ms": max(busy),
           "videos_indexed_meanwhile": done["videos"], "checkpoint_s": done["checkpoint_s"],
           "searches_meanwhile": len(busy), "videos_per_s": videos_per_s}
    out["busy_max_over_idle_p99"] = out["busy_max_ms"] / out["idle_p99_ms"]
    pace = f"{videos_per_s:g} videos/s" if videos_per_s else "back to back"
    log(f"  search idle p50/p99 {out['idle_p50_ms']:.2f}/{out['idle_p99_ms']:.2f} ms; while indexing ({pace}) "
        f"{done['videos']} videos: p99 {out['busy_p99_ms']:.2f}, max {out['busy_max_ms']:.2f} ms "
        f"({out['busy_max_over_idle_p99']:.2f} x idle p99); checkpoint {done['checkpoint_s']:.1f} s")
    return out


def measure_legacy(count: int, dim: int, adds: int, n_queries: int, log) -> dict:
    """The snapshot store (bench/legacy_store.py) at ``count`` frames: the baseline."""
    from bench.legacy_store import FrameStore, ShotSpan, VideoRecord

    vectors = clustered_vectors(count, dim)
    queries = queries_near(vectors, n_queries)
    result: dict = {"frames": count, "backend": "legacy snapshot store"}
    with tempfile.TemporaryDirectory(prefix="clipseek-legacy-", dir=CACHE_DIR) as tmp:
        store = FrameStore(Path(tmp) / "ws")
        started = time.perf_counter()

        def add(number: int, v: np.ndarray) -> None:
            n = len(v)
            record = VideoRecord(video_id=f"{number:016x}", path=f"/synthetic/{number}.mp4",
                                 content_hash=f"{number:016x}" * 4, duration_s=float(n))
            shots = [ShotSpan(t, min(t + SHOT_S, float(n))) for t in np.arange(0.0, n, SHOT_S).tolist()]
            store.add(record, shots, np.arange(n) + 0.5, v, MODEL, 0.0, float(n))  # as synthetic_upload

        for number, start in enumerate(range(0, count, FRAMES_PER_VIDEO)):
            add(number, vectors[start:start + FRAMES_PER_VIDEO])
        store.commit()
        result["build_s"] = time.perf_counter() - started
        log(f"legacy store, {count} frames: built in {result['build_s']:.0f} s")
        first = count // FRAMES_PER_VIDEO + 10
        times, written = [], []
        for i, v in enumerate(new_videos(first, adds, dim)):
            chars = wchar()
            started = time.perf_counter()
            add(first + i, v)
            store.commit()
            times.append((time.perf_counter() - started) * 1000)
            written.append(wchar() - chars)
        result.update(commit_ms_median=float(np.median(times)), commit_ms_max=max(times),
                      commit_bytes_median=float(np.median(written)), commit_bytes_max=max(written))
        log(f"  commit of 20 frames: {result['commit_ms_median']:.0f} ms median, "
            f"{result['commit_bytes_median'] / 2**20:.0f} MB written")
        extra = new_videos(first + adds, 10_000, dim)

        def index(number_and_vectors) -> None:
            number, v = number_and_vectors
            add(number, v)
            store.commit()

        result["paced"] = search_while_indexing(lambda q, k: store.search(q, k), queries,
                                                lambda n: (first + adds + n, extra[n]), index, log=log)
    return result


def measure_qdrant(count: int, dim: int, adds: int, n_queries: int, log) -> dict:
    from clipseek.index import Library, open_backend

    vectors = clustered_vectors(count, dim)
    queries = queries_near(vectors, n_queries)
    result: dict = {"frames": count, "backend": "qdrant (local mode)"}
    with tempfile.TemporaryDirectory(prefix="clipseek-qdrant-", dir=CACHE_DIR) as tmp:
        started = time.perf_counter()
        library = Library(open_backend("qdrant", Path(tmp) / "ws"))
        for number, start in enumerate(range(0, count, FRAMES_PER_VIDEO)):
            library.index_range(synthetic_upload(number, vectors[start:start + FRAMES_PER_VIDEO], MODEL))
        result["build_s"] = time.perf_counter() - started
        first = count // FRAMES_PER_VIDEO + 10
        times = []
        for i, v in enumerate(new_videos(first, adds, dim)):
            started = time.perf_counter()
            library.index_range(synthetic_upload(first + i, v, MODEL))
            times.append((time.perf_counter() - started) * 1000)
        result.update(commit_ms_median=float(np.median(times)), commit_ms_max=max(times))
        log(f"qdrant local, {count} frames: commit of 20 frames {result['commit_ms_median']:.0f} ms median")
        result["paced"] = search_while_indexing(library.search, queries, lambda n: synthetic_upload(
            first + adds + n, new_videos(first + adds + n, 1, dim)[0], MODEL), library.index_range, log=log)
        library.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--adds", type=int, default=20)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--videos-per-s", type=float, default=10.0,
                        help="pace of the writer for the search-while-indexing figure (20-frame videos; this "
                             "machine's CPU encoder makes ~1 a second); a back-to-back run is measured too")
    parser.add_argument("--legacy", default="100000", help="sizes for the old snapshot store (comma list; '' = none)")
    parser.add_argument("--qdrant", default="5000", help="sizes for the qdrant backend, local mode ('' = none)")
    args = parser.parse_args()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)

    def log(text: str) -> None:
        print(text, flush=True)

    log(f"load average at start: {load_average()}")
    results = []
    for size in (int(s) for s in args.legacy.split(",") if s):
        results.append(measure_legacy(size, args.dim, min(args.adds, 5), args.queries, log))
    for size in (int(s) for s in args.sizes.split(",") if s):
        results.append(measure_embedded(size, args.dim, args.adds, args.queries, log, args.videos_per_s))
    for size in (int(s) for s in args.qdrant.split(",") if s):
        results.append(measure_qdrant(size, args.dim, args.adds, min(args.queries, 100), log))
    log(f"load average at end: {load_average()}")
    out = CACHE_DIR / "index-commit.json"
    out.write_text(json.dumps(results, indent=1))
    log(f"written to {out}")


if __name__ == "__main__":
    main()
