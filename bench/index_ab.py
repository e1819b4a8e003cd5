"""Indexing through the Flow under two or more environments, in turn: ``python bench/index_ab.py
--variant spinning:OMP_WAIT_POLICY= --variant sleeping: [--rounds 2] [--video 10min-720p]``.

Each ``--variant NAME:VAR=VALUE,VAR=VALUE`` is a set of environment variables the Flow's processes start
with (``NAME:`` alone: the environment as it is). Three lower-case names are options instead:
``chunk_s`` and ``in_flight`` (the client's range length and requests in flight; default the client's)
and ``loader_concurrent=0`` (flow.yml without the video loader's ``allow_concurrent``: one range at a time,
as before the fifth session), e.g. ``--variant before:chunk_s=120,in_flight=2,loader_concurrent=0
--variant now:``. Every round starts a fresh Flow per variant (fresh
workspace) and indexes the video once, the variants taking turns so that the machine's background load
hits them alike; it prints each wall time with the CPU time of the Flow's processes (cores busy = CPU / wall) and, per
variant, the medians. ViT-B-32 with random weights;
``CLIPSEEK_PRECISION`` etc. as in the calling environment. An empty value reaches the process as set but
empty: OpenMP takes an empty ``OMP_WAIT_POLICY`` as unset (its default: spin a while, then sleep), while
clipseek's encoders keep any value that is set (clipseek.model.clip.sleep_between_parallel_regions).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml

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


OPTIONS = ("chunk_s", "in_flight", "loader_concurrent")


def split_options(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(environment, options) of a variant's assignments: OPTIONS are not environment variables."""
    return ({k: v for k, v in env.items() if k not in OPTIONS}, {k: v for k, v in env.items() if k in OPTIONS})


def flow_file(loader_concurrent: bool, folder: Path) -> str:
    """"" (the repository's flow.yml) or a copy of it without the loader's allow_concurrent."""
    if loader_concurrent:
        return ""
    config = yaml.safe_load((REPO / "flow.yml").read_text())
    for executor in config["executors"]:
        executor["uses"] = str((REPO / executor["uses"]).resolve())
        if executor["name"] == "video_loader":
            executor.pop("allow_concurrent", None)
    path = folder / "flow-loader-sequential.yml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def index_once(video: Path, options: dict[str, str], folder: Path):
    """One fresh Flow (fresh workspace) indexing ``video`` with the variant's options."""
    from bench.indexing import index_with, start_flow
    from clipseek.api.defaults import DEFAULT_CHUNK_S, DEFAULT_IN_FLIGHT

    flow = flow_file(options.get("loader_concurrent", "1") != "0", folder)
    with tempfile.TemporaryDirectory(prefix="clipseek-bench-ws-") as workspace:
        with start_flow("ViT-B-32", "none", video.parent, Path(workspace), flow=flow) as running:
            return index_with(running, video, float(options.get("chunk_s", DEFAULT_CHUNK_S)),
                              int(options.get("in_flight", DEFAULT_IN_FLIGHT)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", type=parse_variant, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--video", default="10min-720p", choices=sorted(inputs.FULL_VIDEOS))
    args = parser.parse_args()

    os.environ["HOME"] = str(inputs.CACHE_DIR / "home")  # as bench/run.py: jina's start-up locks stay ours
    (inputs.CACHE_DIR / "home").mkdir(parents=True, exist_ok=True)
    video = inputs.ensure_video(inputs.FULL_VIDEOS[args.video])
    print(f"{video.name}, ViT-B-32, load average at the start: {load_average()}")
    walls: dict[str, list[float]] = {}
    busy: dict[str, list[float]] = {}
    base = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="clipseek-bench-ab-") as folder:
        for round_ in range(args.rounds):
            for name, assignments in args.variant:
                env, options = split_options(assignments)
                os.environ.clear()
                os.environ.update({**base, **env})
                try:
                    run = index_once(video, options, Path(folder))
                finally:
                    os.environ.clear()
                    os.environ.update(base)
                walls.setdefault(name, []).append(run.wall_s)
                busy.setdefault(name, []).append(run.cpu_s / run.wall_s)
                print(f"  round {round_ + 1}, {name}: {run.wall_s:.1f} s, {run.frames} frames, {run.shots} shots, "
                      f"CPU {run.cpu_s:.1f} s = {run.cpu_s / run.wall_s:.2f} cores busy "
                      f"(load average {load_average()})", flush=True)
                if run.cpu_by_service:
                    print("    CPU by service: " + ", ".join(
                        f"{service} {cpu:.1f} s" for service, cpu in sorted(run.cpu_by_service.items(),
                                                                            key=lambda item: -item[1])), flush=True)
    for name, values in walls.items():
        print(f"{name}: median {median(values):.1f} s, {median(busy[name]):.2f} cores busy, over {len(values)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
