"""Measure zero-shot topic tagging with the demo model: render demo videos, index them in a Flow, set the
demo vocabulary, and count the shots whose top-1 topic is the shape the video truly shows there.

    python tools/eval_topics.py [--videos 24] [--seed 7]

Prints the hit rate, the time per topic against the truth, and every miss (docs/metadata.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from demo_library import indexed_demo_library  # noqa: E402

from clipseek.api.client import ClipseekClient  # noqa: E402
from clipseek.index.topics import DEMO_VOCABULARY  # noqa: E402


def evaluate(client: ClipseekClient, videos_dir: Path, truth: dict) -> tuple[int, int, float, float, list]:
    """(right, shots, seconds of time per topic off the truth, seconds of video, misses)."""
    right = total = 0
    error_s = duration_s = 0.0
    misses = []
    for video in truth["videos"]:
        got = client.videos([str(videos_dir / video["file"])])[0]
        expected: dict[str, float] = {}
        for shot in video["shots"]:
            middle = (shot["start_s"] + shot["end_s"]) / 2
            tagged = next((s for s in got.shots if s.start_s <= middle < s.end_s), None)
            total += 1
            if tagged is not None and tagged.topic == shot["shape"]:
                right += 1
            else:
                misses.append((video["file"], shot["start_s"], shot["caption"], tagged.topic if tagged else None))
            expected[shot["shape"]] = expected.get(shot["shape"], 0.0) + shot["end_s"] - shot["start_s"]
        seconds = {t.name: t.seconds for t in got.topics}
        error_s += sum(abs(seconds.get(k, 0.0) - expected.get(k, 0.0)) for k in {*seconds, *expected})
        duration_s += video["duration_s"]
    return right, total, error_s, duration_s, misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    with indexed_demo_library(args.videos, args.seed) as (client, videos_dir, truth):
        client.set_vocabulary(DEMO_VOCABULARY)
        right, total, error_s, duration_s, misses = evaluate(client, videos_dir, truth)
    print(f"{args.videos} demo videos (seed {args.seed}), demo vocabulary of {len(DEMO_VOCABULARY.labels)} shapes: "
          f"top-1 topic right for {right}/{total} shots = {right / total:.3f}; time per topic off the truth by "
          f"{error_s:.1f} s of {duration_s:.1f} s ({100 * error_s / duration_s:.1f}%)")
    for miss in misses:
        print("  miss:", miss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
