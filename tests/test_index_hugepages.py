"""Huge pages for the graph, so that a checkpoint's fork is short (clipseek/index/embedded/hugepages.py):
which mappings are the graph's, that the kernel really backs them with 2 MB pages, that only a load runs
a pass, and that a graph loaded into huge pages loses nothing and still grows. (How much shorter the
fork gets is a benchmark's job: bench/index_stalls.py --huge-pages both.)"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipseek.index.embedded import hugepages
from clipseek.index.embedded.vectors import HnswSettings, HnswVectors

MB = 1 << 20
REPO = Path(__file__).resolve().parent.parent

MAPS = """\
55c8f91ca000-55c8fb5fe000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0010000000 rw-p 00000000 00:00 0
7f0010000000-7f0010400000 rw-p 00000000 00:00 0
7f0020100000-7f0030200000 rw-p 00000000 00:00 0
7f0040000000-7f0050000000 r--p 00000000 00:00 0
7f0050000000-7f0060000000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)
7f0060000000-7f0070000000 rw-p 00000000 08:01 5678                       /data/graph.bin
7ffc00000000-7ffc10000000 rw-p 00000000 00:00 0                          [stack]
"""


def test_only_large_private_writable_anonymous_mappings_count_and_huge_pages_go_inside_2_mb_bounds(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(MAPS)
    regions = hugepages.large_anonymous_regions(64 * MB, maps=str(maps))
    # the 4 MB one too small; heap, stack, read-only, shared and file-backed mappings never
    assert regions == [(0x7F0000000000, 0x7F0010000000), (0x7F0020100000, 0x7F0030200000)]
    # the one starting 1 MB past a 2 MB boundary loses that first MB
    assert hugepages.aligned(regions) == [(0x7F0000000000, 0x7F0010000000), (0x7F0020200000, 0x7F0030200000)]
    assert hugepages.aligned([(0x7F0020100000, 0x7F0020300000)]) == []


def test_what_an_allocation_added():
    before = [(0, 8 * MB), (200 * MB + 4096, 220 * MB)]
    # a new mapping, and one that merged into its neighbour (same aligned inside, other bounds)
    after = [(0, 8 * MB), (64 * MB, 96 * MB), (199 * MB, 220 * MB)]
    assert hugepages.regions_added(before, after) == [(64 * MB, 96 * MB), (199 * MB, 220 * MB)]


def kernel_can_collapse() -> bool:
    try:
        mode = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return False
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    return (major, minor) >= (6, 1) and "[never]" not in mode


def anon_huge_kb(start: int, end: int) -> int:
    """AnonHugePages (kB) of the mappings overlapping [start, end)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as lines:
        for line in lines:
            first = line.split()[0]
            if "-" in first and ":" not in first:
                low, high = (int(x, 16) for x in first.split("-"))
                inside = low < end and high > start
            elif inside and line.startswith("AnonHugePages:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="huge pages through /proc and madvise: Linux only")
def test_a_populated_region_is_backed_by_huge_pages_and_keeps_its_bytes():
    before = hugepages.large_anonymous_regions(16 * MB)
    memory = mmap.mmap(-1, 40 * MB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    pattern = np.random.default_rng(1).integers(0, 255, 40 * MB, dtype=np.uint8).tobytes()
    memory.write(pattern)  # populated, in 4 KB pages
    added = hugepages.regions_added(before, hugepages.large_anonymous_regions(16 * MB))
    assert added, "the new mapping was not found in /proc/self/maps"
    report = hugepages.collapse(added)
    if not kernel_can_collapse():
        memory.close()
        assert not report.supported
        pytest.skip("this kernel has no MADV_COLLAPSE (Linux < 6.1, or transparent huge pages off)")
    assert report.supported
    start, end = added[0]
    assert report.huge_bytes >= 32 * MB
    assert anon_huge_kb(start, end) * 1024 >= 32 * MB
    memory.seek(0)
    assert memory.read() == pattern
    memory.close()


def commit(vectors: HnswVectors, labels: np.ndarray, rows: np.ndarray) -> None:
    vectors.log_append(labels, rows)
    vectors.publish(labels, rows, np.zeros(0, dtype=np.int64))


# Loads the workspace in a fresh interpreter: in a long test session, glibc may serve a test-sized graph
# (4 MB) from a free chunk of its heap instead of a mapping of its own; a real one (>= 128 MB) always
# gets one, and so does a test-sized one in a fresh process (threshold fixed at 1 MB to be sure).
LOAD_IN_A_FRESH_PROCESS = """
import ctypes, json, sys
import numpy as np
ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
from clipseek.index.embedded import hugepages
from clipseek.index.embedded.vectors import HnswSettings, HnswVectors
hugepages.MIN_REGION = 2 << 20
reports = []
collapse = hugepages.collapse
hugepages.collapse = lambda regions: reports.append(collapse(regions)) or reports[-1]
folder, queries = sys.argv[1], np.load(sys.argv[2])
rows = queries - 0.01
vectors = HnswVectors(folder, HnswSettings(exact_below=0), np.arange(12000, dtype=np.int64))
out = {"noted": vectors._graph_memory, "reports": [vars(r) for r in reports],
       "found": [vectors.search(q, 5)[0].tolist() for q in queries]}
new = np.arange(12000, 12000 + len(rows), dtype=np.int64)  # and it still grows
vectors.log_append(new, -rows)
vectors.publish(new, -rows, np.zeros(0, dtype=np.int64))
vectors.wait_until_inserted(timeout_s=60)
out["grown"] = [vectors.search(-q, 1)[0].tolist() for q in rows]
vectors.close()
print(json.dumps(out))
"""


def test_a_graph_loaded_into_huge_pages_loses_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(hugepages, "MIN_REGION", 2 * MB)  # a test-sized graph counts as large
    reports: list[hugepages.CollapseReport] = []
    collapse = hugepages.collapse
    monkeypatch.setattr(hugepages, "collapse", lambda regions: reports.append(collapse(regions)) or reports[-1])
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((12000, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    labels = np.arange(len(rows), dtype=np.int64)
    vectors = HnswVectors(tmp_path / "vectors", HnswSettings(exact_below=0, insert_threads=2),
                          np.zeros(0, dtype=np.int64))
    for start in range(0, len(rows), 2000):
        commit(vectors, labels[start:start + 2000], rows[start:start + 2000])
    assert vectors.wait_until_inserted(timeout_s=120)
    assert vectors.checkpoint()
    assert not reports, "a pass ran beside searches and insertions (only a load may run one)"
    queries = rows[::997] + 0.01
    expected = [vectors.search(q, 5)[0].tolist() for q in queries]
    vectors.close(checkpoint=False)
    np.save(tmp_path / "queries.npy", queries)

    child = subprocess.run([sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS, str(tmp_path / "vectors"),
                            str(tmp_path / "queries.npy")], capture_output=True, text=True, timeout=300,
                           cwd=REPO)
    assert child.returncode == 0, child.stderr[-3000:]
    out = json.loads(child.stdout.strip().splitlines()[-1])
    if sys.platform.startswith("linux"):
        # the loaded graph (16,024 x (32 x 4 + 132 + 8) bytes) was noted and put in huge pages before the
        # constructor returned
        assert out["noted"] and len(out["reports"]) == 1 and out["reports"][0]["regions"]
        if kernel_can_collapse():
            assert out["reports"][0]["supported"] and out["reports"][0]["huge_bytes"] >= 2 * MB
    assert out["found"] == expected
    assert all(found[0] == label for found, label in zip(expected, labels[::997], strict=True))
    assert out["grown"] == [[12000 + i] for i in range(len(queries))]


def test_no_pass_and_nothing_noted_when_huge_pages_are_off(tmp_path, monkeypatch):
    monkeypatch.setattr(hugepages, "MIN_REGION", 2 * MB)
    monkeypatch.setattr(hugepages, "collapse", lambda regions: pytest.fail("a pass ran with huge_pages=False"))
    rows = np.random.default_rng(3).standard_normal((6000, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    vectors = HnswVectors(tmp_path / "vectors", HnswSettings(exact_below=0, huge_pages=False),
                          np.zeros(0, dtype=np.int64))
    commit(vectors, np.arange(6000, dtype=np.int64), rows)
    assert vectors.wait_until_inserted(timeout_s=120)
    assert vectors.checkpoint()
    assert vectors._graph_memory == []
    vectors.close(checkpoint=False)
    reopened = HnswVectors(tmp_path / "vectors", HnswSettings(exact_below=0, huge_pages=False),
                           np.arange(6000, dtype=np.int64))  # loads without a pass
    assert reopened._graph_memory == [] and reopened.search(rows[9], 1)[0].tolist() == [9]
    reopened.close()
