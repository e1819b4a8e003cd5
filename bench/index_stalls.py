"""Where the longest searches while indexing come from: a timeline of every search and every index
event (commit, slow insertion batch, checkpoint start, fork, checkpoint writer done) in one process.

    python bench/index_stalls.py [--frames 1000000] [--videos-per-s 1] [--seconds 25] [--top 8] [--hnswlib-alone]
                                 [--huge-pages on|off|both]

The workspace is bench/index_commit.py's (cached under build/bench/, cloned here). A thread indexes
20-frame videos at ``--videos-per-s`` and, after the fifth, starts a checkpoint on a thread of its own
(indexing goes on); the main thread searches back to back for ``--seconds`` and at least until the
checkpoint is written. Printed: search p50/p99, then the ``--top`` longest searches, each with the
index events within a second of it (none: the delay came from outside the index, e.g. other jobs).
``--huge-pages both`` runs the timeline twice in this one run, with the loaded graph put in 2 MB pages
(the default, clipseek/index/embedded/hugepages.py) and without.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import hnswlib
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.index_commit import (  # noqa: E402
    CACHE_DIR,
    FRAMES_PER_VIDEO,
    MODEL,
    build_workspace,
    clone_workspace,
    new_videos,
    queries_near,
    synthetic_upload,
)
from clipseek.index import Library, open_backend  # noqa: E402
from clipseek.index.embedded import hugepages, vectors  # noqa: E402

STARTED = time.perf_counter()
EVENTS: list[tuple[float, str]] = []


def event(name: str) -> None:
    EVENTS.append((time.perf_counter() - STARTED, name))


def watch_the_index() -> None:
    """Wrap the writer's steps so that each leaves an event (the index code itself is unchanged)."""
    writer, wait = vectors._CheckpointWriter.__init__, vectors._CheckpointWriter.wait
    insert = vectors.HnswVectors._insert

    def writer_init(self, *args):
        event("fork starts")
        writer(self, *args)
        event("fork returned")

    def writer_wait(self):
        problem = wait(self)
        event("checkpoint writer done")
        return problem

    def timed_insert(self, labels, vecs):
        started = time.perf_counter()
        insert(self, labels, vecs)
        took_ms = (time.perf_counter() - started) * 1000
        if took_ms > 10:
            event(f"insertion of {len(labels)} took {took_ms:.0f} ms")

    collapse = hugepages.collapse

    def timed_collapse(*args, **kwargs):
        event("huge pages start")
        report = collapse(*args, **kwargs)
        event(f"huge pages done: {report.huge_bytes >> 20} MB huge, {report.refused_bytes >> 20} MB not "
              f"({report.seconds:.2f} s)")
        return report

    hugepages.collapse = timed_collapse
    vectors._CheckpointWriter.__init__ = writer_init
    vectors._CheckpointWriter.wait = writer_wait
    vectors.HnswVectors._insert = timed_insert


def hnswlib_alone(workspace: Path, inserts: int = 8) -> None:
    """hnswlib by itself on the workspace's checkpoint (no other thread, no lock): what one insertion
    and one search cost, to set against the timeline's figures."""
    checkpoint = workspace / "vectors" / (workspace / "vectors" / "CHECKPOINT").read_text().strip()
    count = json.loads((checkpoint / "meta.json").read_text())["graph_count"]
    graph = hnswlib.Index(space="ip", dim=json.loads((checkpoint / "meta.json").read_text())["dim"])
    started = time.perf_counter()
    graph.load_index(str(checkpoint / "graph.bin"), max_elements=count + count // 4 + 1024, allow_replace_deleted=True)
    print(f"hnswlib alone: graph of {count} loaded in {time.perf_counter() - started:.1f} s")
    graph.set_ef(256)
    rng = np.random.default_rng(0)
    took = []
    for i in range(inserts):
        vector = rng.standard_normal((1, graph.dim)).astype(np.float32)
        vector /= np.linalg.norm(vector)
        started = time.perf_counter()
        graph.add_items(vector, np.array([10**9 + i]), num_threads=1, replace_deleted=True)
        took.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    graph.knn_query(vector, k=100)
    print(f"  one-vector insertions: {', '.join(f'{t:.1f}' for t in took)} ms; a k=100 query "
          f"{(time.perf_counter() - started) * 1000:.1f} ms")


def timeline(args, source: Path, queries: np.ndarray, huge_pages: bool) -> list[tuple[float, float]]:
    """Search back to back for ``args.seconds`` while a thread indexes; (start, ms) of each search."""
    searches: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="clipseek-stalls-", dir=CACHE_DIR) as tmp:
        workspace = Path(tmp) / "ws"
        clone_workspace(source, workspace)
        opened = time.perf_counter()
        library = Library(open_backend("embedded", workspace, hnsw=vectors.HnswSettings(huge_pages=huge_pages)))
        library.search(queries[0], 10)
        event(f"start-up (open until a search answers) {time.perf_counter() - opened:.1f} s")
        first = args.frames // FRAMES_PER_VIDEO + 10
        stop = threading.Event()
        checkpointed = threading.Event()

        def index() -> None:
            n, started = 0, time.perf_counter()
            while not stop.is_set():
                before = time.perf_counter()
                library.index_range(synthetic_upload(first + n, new_videos(first + n, 1, args.dim)[0], MODEL))
                event(f"commit {(time.perf_counter() - before) * 1000:.0f} ms")
                n += 1
                if n == 5:  # on a thread of its own, as the index's checkpointer does: indexing goes on
                    event("checkpoint asked")
                    threading.Thread(target=lambda: (library.backend.vectors.checkpoint(),
                                                     event("checkpoint done"), checkpointed.set())).start()
                time.sleep(max(0.0, started + n / args.videos_per_s - time.perf_counter()))

        thread = threading.Thread(target=index)
        thread.start()
        deadline, i = time.perf_counter() + args.seconds, 0
        while time.perf_counter() < deadline or not checkpointed.is_set():  # the checkpoint inside the timeline
            before = time.perf_counter()
            library.search(queries[i % len(queries)], 10)
            searches.append((before - STARTED, (time.perf_counter() - before) * 1000))
            i += 1
        stop.set()
        thread.join()
        library.close()
    return searches


def report(args, searches: list[tuple[float, float]], huge_pages: bool, first_event: int) -> None:
    took = np.array([ms for _, ms in searches])
    events = EVENTS[first_event:]
    starts = [when for when, name in events if name == "fork starts"]
    returns = [when for when, name in events if name == "fork returned"]
    forks = [b - a for a, b in zip(starts, returns, strict=False)]
    print(f"huge pages {'on' if huge_pages else 'off'}: {len(searches)} searches while indexing "
          f"{args.videos_per_s:g} videos/s at {args.frames} frames: p50 {np.percentile(took, 50):.1f} ms, "
          f"p99 {np.percentile(took, 99):.1f} ms, longest {took.max():.1f} ms; "
          f"fork {', '.join(f'{f * 1000:.1f}' for f in forks) or '-'} ms")
    for at, ms in sorted(searches, key=lambda s: -s[1])[: args.top]:
        near = [f"{when - at:+.2f} s {name}" for when, name in events if -1.0 < when - at < 1.0]
        print(f"  {ms:6.0f} ms at {at:6.2f} s; index events within 1 s: {', '.join(near) or 'none'}")
    steps = [f"{when:.2f} s {name}" for when, name in events if not name.startswith(("commit", "insertion"))]
    print(f"  checkpoint steps: {'; '.join(steps) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--videos-per-s", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--hnswlib-alone", action="store_true", help="also time hnswlib by itself first")
    parser.add_argument("--huge-pages", choices=("on", "off", "both"), default="on",
                        help="back the graph with 2 MB pages before the checkpoint's fork (both: two timelines)")
    args = parser.parse_args()
    if args.hnswlib_alone:
        hnswlib_alone(build_workspace(args.frames, args.dim, MODEL)[0])
    watch_the_index()
    source, _ = build_workspace(args.frames, args.dim, MODEL)
    queries = queries_near(np.load(source / "bench-vectors.npy", mmap_mode="r"), 300)
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.huge_pages]
    for huge_pages in modes:
        first_event = len(EVENTS)
        searches = timeline(args, source, queries, huge_pages)
        report(args, searches, huge_pages, first_event)


if __name__ == "__main__":
    main()
