"""What confidence costs a search: its share of each search and the cold sample build (embedded backend).

    python bench/confidence_cost.py [--videos 400]      (from the repository root)

Synthetic videos of 48 frames (unit vectors of 512 dimensions, tests/index_helpers.py), 200 searches of top 10;
Library._with_confidence is timed inside each search. docs/search.md records a run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from index_helpers import SynthVideo  # noqa: E402

from clipseek.index import Library, open_backend  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=400)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        library = Library(open_backend("embedded", Path(work) / "ws"))
        synth = [SynthVideo(f"v{i:05d}", shots=16, dim=512, seed=i) for i in range(args.videos)]
        for video in synth:
            library.index_range(video.upload())
        time.sleep(20)  # the background graph insertion finishes
        queries = [video.centres[3] for video in synth[::2]][:200]
        spent: list[float] = []
        measured = library._with_confidence

        def timed(*a, **k):
            started = time.perf_counter()
            result = measured(*a, **k)
            spent.append(time.perf_counter() - started)
            return result

        library._with_confidence = timed
        library._sample = None
        started = time.perf_counter()
        library._sample_vectors()
        cold_ms = (time.perf_counter() - started) * 1e3
        for query in queries[:20]:
            library.search(query, 10)
        spent.clear()
        total = []
        for query in queries:
            started = time.perf_counter()
            library.search(query, 10)
            total.append(time.perf_counter() - started)
        search_ms, confidence_ms = np.median(total) * 1e3, np.median(spent) * 1e3
        print(f"{library.frame_count()} frames: cold sample build {cold_ms:.1f} ms; search median {search_ms:.2f} ms, "
              f"its confidence median {confidence_ms:.3f} ms ({100 * confidence_ms / search_ms:.1f}%)")
        library.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
