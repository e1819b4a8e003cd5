"""Indexing through the Flow under two or more environments, in turn: ``python bench/index_ab.py
--variant spinning:OMP_WAIT_POLICY= --variant sleeping: [--rounds 2] [--video 10min-720p]``.

Each ``--variant NAME:VAR=VALUE,VAR=VALUE`` is a set of environment variables the Flow's processes start
with (``NAME:`` alone: the environment as it is). Every round starts a fresh Flow per variant (fresh
workspace) and indexes the video once, the variants taking turns so that the machine's background load
hits them alike; it prints each wall time and, per variant, the median. ViT-B-32 with random weights;
``CLIPSEEK_PRECISION`` etc. as in the calling environment. An empty value reaches the process as set but
empty: OpenMP takes an empty ``OMP_WAIT_POLICY`` as unset (its default: spin a while, then sleep), while
clipseek's encoders keep any value that is set (clipseek.model.clip.sleep_between_parallel_regions).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import inputs  # noqa: E402
from bench.measure import load_average, median  # noqa: E402


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME:VAR=VALUE,VAR=VALUE`` -> (NAME, {VAR: VALUE})."""
    name, _, assignments = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"a variant is NAME:VAR=VALUE,..., got {text!r}")
    env = {}
    for item in filter(None, assignments.split(",")):
        var, equals, value = item.partition("=")
        if not equals or not var:
            raise argparse.ArgumentTypeError(f"{item!r} in {text!r} is not VAR=VALUE")
        env[var] = value
    return name, env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", type=parse_variant, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--video", default="10min-720p", choices=sorted(inputs.FULL_VIDEOS))
    args = parser.parse_args()
    from bench.indexing import index_through_flow

    os.environ["HOME"] = str(inputs.CACHE_DIR / "home")  # as bench/run.py: jina's start-up locks stay ours
    (inputs.CACHE_DIR / "home").mkdir(parents=True, exist_ok=True)
    video = inputs.ensure_video(inputs.FULL_VIDEOS[args.video])
    print(f"{video.name}, ViT-B-32, load average at the start: {load_average()}")
    walls: dict[str, list[float]] = {}
    base = dict(os.environ)
    for round_ in range(args.rounds):
        for name, env in args.variant:
            os.environ.clear()
            os.environ.update({**base, **env})
            try:
                run = index_through_flow(video, "ViT-B-32", "none")
            finally:
                os.environ.clear()
                os.environ.update(base)
            walls.setdefault(name, []).append(run.wall_s)
            print(f"  round {round_ + 1}, {name}: {run.wall_s:.1f} s, {run.frames} frames "
                  f"(load average {load_average()})", flush=True)
    for name, values in walls.items():
        print(f"{name}: median {median(values):.1f} s over {len(values)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
