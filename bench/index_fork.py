"""What a checkpoint's ``fork()`` costs a loaded workspace, with the graph in 4 KB pages and in 2 MB pages,
and what searches take right after it, with nothing else going on (no indexing: the timeline of
bench/index_stalls.py mixes in everything else).

    python bench/index_fork.py [--frames 1000000] [--forks 3] [--searches 150]

For each mode (``huge_pages`` off, then on): the workspace of bench/index_commit.py (cloned), opened,
50 warm-up searches, then ``--forks`` times: fork a child that only sleeps (as the checkpoint writer
would hold the memory), time the fork in the parent, then ``--searches`` searches while the child lives.
Also printed: the kernel's THP counters that moved (/proc/vmstat) and how much of the process is in
4 KB pages (/proc/self/smaps_rollup).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.index_commit import CACHE_DIR, MODEL, build_workspace, clone_workspace, queries_near  # noqa: E402
from clipseek.index import Library, open_backend  # noqa: E402
from clipseek.index.embedded.vectors import HnswSettings  # noqa: E402


def vmstat() -> dict[str, int]:
    with open("/proc/vmstat") as lines:
        return {k: int(v) for k, v in (line.split() for line in lines) if k.startswith(("thp_", "compact_stall"))}


def small_pages_mb() -> float:
    """Resident anonymous memory of this process not in huge pages."""
    fields = {}
    with open("/proc/self/smaps_rollup") as lines:
        for line in lines:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                fields[parts[0].rstrip(":")] = int(parts[1])
    return (fields.get("Anonymous", 0) - fields.get("AnonHugePages", 0)) / 1024


def one_mode(source: Path, queries: np.ndarray, huge_pages: bool, forks: int, searches: int) -> None:
    with tempfile.TemporaryDirectory(prefix="clipseek-fork-", dir=CACHE_DIR) as tmp:
        workspace = Path(tmp) / "ws"
        clone_workspace(source, workspace)
        started = time.perf_counter()
        library = Library(open_backend("embedded", workspace, hnsw=HnswSettings(huge_pages=huge_pages)))
        library.search(queries[0], 10)
        opened = time.perf_counter() - started
        for i in range(50):
            library.search(queries[i % len(queries)], 10)
        name = "2 MB pages" if huge_pages else "4 KB pages"
        print(f"graph in {name}: start-up {opened:.1f} s, anonymous memory in 4 KB pages {small_pages_mb():.0f} MB")
        for n in range(forks):
            counters = vmstat()
            before = time.perf_counter()
            pid = os.fork()
            if pid == 0:  # the child only holds the memory, as a checkpoint writer would
                time.sleep(3)
                os._exit(0)
            fork_ms = (time.perf_counter() - before) * 1000
            took = []
            for i in range(searches):
                at = time.perf_counter()
                library.search(queries[i % len(queries)], 10)
                took.append((time.perf_counter() - at) * 1000)
            moved = {k: v - counters[k] for k, v in vmstat().items() if v != counters.get(k, v)}
            os.waitpid(pid, 0)
            print(f"  fork {n + 1}: {fork_ms:.1f} ms; {searches} searches after it: first {took[0]:.1f} ms, "
                  f"p50 {np.percentile(took, 50):.1f}, max {max(took):.1f} ms (search {int(np.argmax(took)) + 1}); "
                  f"THP counters moved: {moved or 'none'}")
        library.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--forks", type=int, default=3)
    parser.add_argument("--searches", type=int, default=150)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    source, _ = build_workspace(args.frames, args.dim, MODEL)
    queries = queries_near(np.load(source / "bench-vectors.npy", mmap_mode="r"), 300)
    for huge_pages in (False, True):
        one_mode(source, queries, huge_pages, args.forks, args.searches)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
