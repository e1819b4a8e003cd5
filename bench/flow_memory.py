"""Peak memory of each process of a running Flow: ``python bench/flow_memory.py [--model ViT-B-32]``.

Two deployments, each a fresh ``BackgroundFlow`` (its own processes, so each peak is its own):

- ``index``: the whole flow.yml (orchestrator, gateway, loader, image encoder, text encoder, indexer)
  indexing one benchmark video (bench/inputs.py) into a new workspace;
- ``search``: a search-only deployment, flow.yml cut down to the text encoder and the indexer, on the
  workspace the first one wrote, answering ``--queries`` searches over HTTP;
- ``picture`` (not by default): the same, then one search by a picture, for which the text encoder loads
  the image tower (and torch, when its text tower runs on ONNX Runtime).

For every Python process of the Flow it prints its role (read from jina's log lines ``name/rep-0@pid``),
its peak RSS (``VmHWM`` from /proc: what the issue's targets are stated in; pages shared with the
process it was forked from count in each), its PSS at the end (``smaps_rollup``: shared pages split
between the processes that share them, so the PSS column adds up to the real footprint), and whether
torch's libraries are mapped in it. ``--json FILE`` keeps the figures for comparing two checkouts.
Last, the import floors: the peak RSS of a fresh interpreter that only imports what a torch-free
service imports (with ONNX Runtime: the text encoder's default on a CPU), or what a torch model process
imports. Compare the text encoder's runtimes with ``--set text_runtime='"torch"'`` against the default
(``auto``: ONNX Runtime; its export is cached in ``onnx_cache_dir``, so run once before measuring).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import inputs  # noqa: E402
from bench.measure import descendants, free_port, load_average, peak_rss_mb, process_title  # noqa: E402

ROLE_ORDER = ["orchestrator", "gateway", "video_loader", "image_encoder", "text_encoder", "indexer"]
SEARCH_ONLY = ("text_encoder", "indexer")
QUERIES = ["a red square", "colour bars", "a moving gradient", "cellular automaton", "a test pattern",
           "a green screen", "blue", "white noise", "a clock", "numbers counting"]


@dataclass
class ProcessMemory:
    role: str
    pid: int
    peak_rss_mb: float  # VmHWM
    pss_mb: float  # at the end of the run
    torch_loaded: bool  # libtorch mapped


@dataclass
class DeploymentMemory:
    name: str
    processes: list[ProcessMemory]
    note: str

    @property
    def peak_rss_sum_mb(self) -> float:
        return sum(p.peak_rss_mb for p in self.processes)

    @property
    def pss_sum_mb(self) -> float:
        return sum(p.pss_mb for p in self.processes)


def pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return 0.0


def torch_mapped(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def roles_from_log(log: str) -> dict[int, str]:
    """pid -> service name, from jina's log prefixes (``indexer/rep-0@1234``)."""
    return {int(pid): name for name, pid in re.findall(r"([A-Za-z_]+)/rep-\d+@(\d+)", log)}


def role_from_argv(pid: int) -> str:
    """The service a process of ``clipseek serve`` runs, from its command line (the gateway's module, an
    executor's ``--name``); "" when it names none."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    if b"clipseek.engine.gateway" in argv:
        return "gateway"
    if b"--name" in argv and argv.index(b"--name") + 1 < len(argv):
        return argv[argv.index(b"--name") + 1].decode()
    return ""


def flow_processes(root: int, log: str) -> list[ProcessMemory]:
    roles = roles_from_log(log)
    pids = [root] + [pid for pid in descendants(root)
                     if "python" in process_title(pid).split(" ")[0] or "jina" in process_title(pid)]
    found = [ProcessMemory("orchestrator" if pid == root else (role_from_argv(pid) or
                                                                roles.get(pid, f"? {process_title(pid)[:40]}")),
                           pid, peak_rss_mb(pid), pss_mb(pid), torch_mapped(pid)) for pid in pids]
    return sorted(found, key=lambda p: (ROLE_ORDER.index(p.role) if p.role in ROLE_ORDER else 99, p.pid))


def search_only_flow(folder: Path) -> Path:
    """flow.yml with only the text encoder and the indexer, its ``uses`` made absolute."""
    config = yaml.safe_load((REPO / "flow.yml").read_text())
    config["executors"] = [dict(e, uses=str((REPO / e["uses"]).resolve()))
                           for e in config["executors"] if e["name"] in SEARCH_ONLY]
    path = folder / "flow-search-only.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # jina wants jtype first
    return path


def run_deployment(name: str, flow_file: str, overrides: dict, work) -> DeploymentMemory:
    from clipseek.engine.serve import BackgroundFlow, ServeSettings

    settings = ServeSettings(grpc_port=free_port(), http_port=free_port(), flow=flow_file)
    with BackgroundFlow(settings, overrides) as flow:
        note = work(flow)
        time.sleep(0.5)  # let the last answers' buffers settle before reading /proc
        processes = flow_processes(flow.process.pid, flow.log_tail(10**8))
    return DeploymentMemory(name, processes, note)


def index_video(video: Path):
    def work(flow) -> str:
        from clipseek.api.client import ClipseekClient

        started = time.perf_counter()
        report = ClipseekClient(flow.http).index([str(video)], force=True)
        outcome = report.outcomes[0]
        if outcome.status != "indexed":
            raise RuntimeError(f"indexing {video} failed: {outcome.status} {outcome.error}")
        return f"indexed {video.name}: {outcome.num_frames} frames in {time.perf_counter() - started:.1f} s"
    return work


def search_queries(count: int, picture: bool = False):
    """``count`` text searches; with ``picture``, then one search by a picture (the text encoder loads the
    image tower for it, with torch)."""
    def work(flow) -> str:
        import io

        from PIL import Image

        from clipseek.api.client import ClipseekClient

        client = ClipseekClient(flow.http)
        started = time.perf_counter()
        hits = sum(len(client.search(QUERIES[i % len(QUERIES)] + f" {i // len(QUERIES)}")) for i in range(count))
        note = f"{count} searches, {hits} clips in {time.perf_counter() - started:.1f} s"
        if picture:
            png = io.BytesIO()
            Image.new("RGB", (320, 240), (200, 40, 40)).save(png, format="PNG")
            note += f"; then one picture query: {len(client.search(image=png.getvalue()))} clips"
        return note
    return work


FLOORS = {  # what a process holds before it does anything: imports only, fresh interpreters
    "jina + docarray, torch kept out": "from clipseek.torch_free import keep_torch_out; keep_torch_out(); "
                                       "import jina, docarray, clipseek.docs",
    "jina + docarray (they import torch)": "import jina, docarray, clipseek.docs",
    "onnxruntime + jina + docarray, torch kept out": "from clipseek.torch_free import keep_torch_out; "
                                                      "keep_torch_out(); import jina, docarray, clipseek.docs, "
                                                      "onnxruntime",
    "torch": "import torch",
    "torch + open_clip, triton kept out": "from clipseek.torch_free import keep_compilers_out; "
                                          "keep_compilers_out(); import torch, open_clip",
    "torch + open_clip": "import torch, open_clip",
}


def import_floors() -> dict[str, float]:
    """Peak RSS (MiB) of a fresh interpreter after each of FLOORS' imports."""
    import subprocess

    found = {}
    for name, code in FLOORS.items():
        done = subprocess.run([sys.executable, "-c", f"{code}\nfrom bench.measure import self_peak_rss_mb\n"
                               "print(self_peak_rss_mb())"], cwd=REPO, capture_output=True, text=True, check=True)
        found[name] = float(done.stdout.split()[-1])
    return found


def print_deployment(result: DeploymentMemory) -> None:
    print(f"\n## {result.name}: {result.note}")
    print(f"{'process':<16} {'pid':>7} {'peak RSS MiB':>13} {'PSS MiB':>8}  torch")
    for p in result.processes:
        print(f"{p.role:<16} {p.pid:>7} {p.peak_rss_mb:>13.0f} {p.pss_mb:>8.0f}  {'yes' if p.torch_loaded else 'no'}")
    print(f"{'sum':<16} {'':>7} {result.peak_rss_sum_mb:>13.0f} {result.pss_sum_mb:>8.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--video", default="1min-1080p", choices=sorted(inputs.FULL_VIDEOS))
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--only", default="index,search,floors",
                        help="what to run: index, search, picture (deployments: picture = search only, then one "
                             "search by a picture; both need index), floors (import costs)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=JSON",
                        help="another service setting for every deployment, e.g. precision='\"fp32\"'")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()
    only = set(args.only.split(","))
    extra = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    print(f"load average at start: {load_average()}; model {args.model} ({args.pretrained}); {extra or ''}")
    results: list[DeploymentMemory] = []
    video = inputs.ensure_video(inputs.FULL_VIDEOS[args.video]) if only & {"index", "search"} else Path()
    with tempfile.TemporaryDirectory(prefix="clipseek-flow-memory-") as tmp:
        workspace = Path(tmp) / "ws"
        model = {"model": args.model, "pretrained": args.pretrained, "workspace": str(workspace), **extra}
        if "index" in only or "search" in only:  # the search deployment searches what this one indexed
            results.append(run_deployment("index (whole flow.yml)", "", {**model, "media_roots": [str(video.parent)]},
                                          index_video(video)))
            print_deployment(results[-1])
        if "search" in only:
            results.append(run_deployment("search only (text encoder + indexer)", str(search_only_flow(Path(tmp))),
                                          model, search_queries(args.queries)))
            print_deployment(results[-1])
        if "picture" in only and "index" in only:
            results.append(run_deployment("search only, then a picture query", str(search_only_flow(Path(tmp))),
                                          model, search_queries(args.queries, picture=True)))
            print_deployment(results[-1])
    if "floors" in only:
        floors = import_floors()
        print("\n## import floors (peak RSS of a fresh interpreter after the imports alone)")
        for name, mb in floors.items():
            print(f"{name:<40} {mb:>6.0f} MiB")
    print(f"\nload average at end: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps([{**asdict(r), "peak_rss_sum_mb": r.peak_rss_sum_mb,
                                                "pss_sum_mb": r.pss_sum_mb} for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
