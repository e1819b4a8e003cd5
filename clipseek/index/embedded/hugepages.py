"""Put hnswlib's graph in 2 MB pages, so that a checkpoint's fork is short.

``fork()`` copies the page tables of the whole process while it holds the GIL, so every search waits for
it. hnswlib allocates the graph with plain ``malloc`` (4 KB pages): at a million 512-d frames that is
~2.6 GB, ~660k page-table entries, and the fork took 45-60 ms on a quiet machine and up to ~110 ms
under load. The same memory in 2 MB pages has 512 times fewer entries (the fork of that process then
takes ~10-17 ms: what is left is Python's heap and hnswlib's small allocations). numpy already asks
for huge pages for its large arrays (the float16 copy); the graph is what was left.
(``python bench/index_stalls.py --frames 1000000 --huge-pages both``; docs/benchmarks.md.)

Only the graph's own memory is touched: the large anonymous mappings that appeared while hnswlib
allocated it (``/proc/self/maps`` before and after). ``MADV_COLLAPSE`` (Linux >= 6.1) rewrites populated
memory into huge pages synchronously, whatever the ``transparent_hugepage`` sysfs mode says (kernels
built without THP refuse it). It is called per 2 MB range (a range that is not fully populated, e.g.
the graph's unused headroom, is refused with EINVAL and stays as it is), through ctypes (the GIL is
released). It runs once, when a workspace is loaded and before anything searches (~5 s of one core at
a million frames): while the kernel copies a range, a thread touching it waits, so passes beside
searches and insertions cost them more than the fork saves. Where it is not available (another OS,
an older kernel) nothing changes and the fork copies 4 KB page tables as before.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import sys
import time
from dataclasses import dataclass

logger = logging.getLogger("clipseek.index")

MADV_COLLAPSE = 25  # linux/mman-common.h
HUGE_PAGE = 2 << 20
MIN_REGION = 128 << 20  # smaller mappings (thread stacks, malloc's 64 MB per-thread arenas) are left alone

_libc = None


@dataclass
class CollapseReport:
    supported: bool
    regions: int = 0  # large anonymous mappings looked at
    huge_bytes: int = 0  # bytes now in huge pages (collapsed now, or already)
    refused_bytes: int = 0  # ranges the kernel left in 4 KB pages (not fully populated, or no memory)
    seconds: float = 0.0


def large_anonymous_regions(min_bytes: int | None = None, maps: str = "/proc/self/maps") -> list[tuple[int, int]]:
    """(start, end) of the private, writable, anonymous mappings of at least ``min_bytes`` (default
    MIN_REGION), as the kernel lists them (a new allocation may have merged into a neighbour: compare
    these, not their 2 MB-aligned insides)."""
    min_bytes = MIN_REGION if min_bytes is None else min_bytes
    regions = []
    with open(maps) as lines:
        for line in lines:
            parts = line.split()
            if len(parts) != 5 or not parts[1].startswith("rw") or parts[1][3] != "p":
                continue  # a file, [heap], [stack] or a shared mapping
            low, high = (int(x, 16) for x in parts[0].split("-"))
            if high - low >= min_bytes:
                regions.append((low, high))
    return regions


def aligned(regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The 2 MB-aligned inside of each region (a huge page must be aligned); empty ones dropped."""
    out = []
    for low, high in regions:
        start, end = (low + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1), high & ~(HUGE_PAGE - 1)
        if end > start:
            out.append((start, end))
    return out


def _madvise():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _libc.madvise.restype = ctypes.c_int
    return _libc.madvise


def regions_added(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The large anonymous regions of ``after`` that ``before`` did not have: what an allocation made
    (hnswlib's graph: ``load_index``, ``init_index``, ``resize_index``)."""
    return sorted(set(after) - set(before))


def collapse(regions: list[tuple[int, int]]) -> CollapseReport:
    """Ask the kernel to back ``regions`` with huge pages, 2 MB at a time (their aligned insides)."""
    if not sys.platform.startswith("linux"):
        return CollapseReport(supported=False)
    started = time.perf_counter()
    try:
        madvise = _madvise()
    except (OSError, AttributeError) as exc:
        logger.debug("huge pages: not available (%s)", exc)
        return CollapseReport(supported=False)
    report = CollapseReport(supported=True, regions=len(regions))
    for start, end in aligned(regions):
        for address in range(start, end, HUGE_PAGE):
            if madvise(address, HUGE_PAGE, MADV_COLLAPSE) == 0:
                report.huge_bytes += HUGE_PAGE
            else:
                report.refused_bytes += HUGE_PAGE
                if ctypes.get_errno() in (errno.EPERM, errno.ENOSYS):
                    report.supported = False
                    break
        if not report.supported:
            break
    if regions and not report.huge_bytes:
        report.supported = False  # an older kernel answers EINVAL to an advice it does not know
    report.seconds = time.perf_counter() - started
    return report
