"""ANN recall@10 and hnsw query time against ``ef``: ``python bench/ef_sweep.py [--frames 1000000]
[--ef 128,192,256,384]``, on the benchmark's synthetic workspace of that size (built and cached by
``bench/run.py``, or built here), with the same queries and exact top 10 as bench/run.py's recall row.
Used to choose the indexer's ``hnsw_ef_search`` default (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.search_latency import ann_recall_at_10, build_workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--ef", default="128,192,256,384")
    parser.add_argument("--model", default="ViT-B-32", help="names the workspace (512-d for ViT-B-32)")
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    path, build_s = build_workspace(args.frames, args.dim, args.model)
    print(f"{path.name}: " + (f"built in {build_s:.0f} s" if build_s else "cached"))
    for ef in (int(x) for x in args.ef.split(",")):
        timing: dict[str, float] = {}
        recall = ann_recall_at_10(path, ef_search=ef, timing=timing)
        print(f"  ef {ef:4d}: recall@10 {recall:.4f}, hnsw query (k 100, one at a time) "
              f"{timing['knn_ms']:.2f} ms")


if __name__ == "__main__":
    main()
