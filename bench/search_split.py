"""Where a search's time goes through the Flow: ``python bench/search_split.py [--frames 1000000]``.

Two parts (``--only threads,flow``):

- **threads**: the text tower alone on ONNX Runtime (as the text encoder runs it) with 1 thread per
  call, with 2 whose threads sleep between operators, and with 2 that spin during a call (the default),
  on distinct queries one at a time with a 20 ms gap, the sessions taking turns query by query; wall
  time of the call, and the process's CPU time per query including the gap (threads that spun on after a
  call would show there); then the same while two other processes keep both cores busy (``--busy``: two
  spinning Python processes, stopped by pid when the part ends).
- **flow**: a Flow on a synthetic workspace of ``--frames`` frames (bench.search_latency.build_workspace,
  ViT-B-32 with random weights), once per ``--onnx-threads`` value (the text encoder's setting),
  ``--rounds`` times in turn. Per Flow and protocol: a search with a new text (the whole path) and with
  a text the text encoder has cached (everything but the text model); then gRPC calls straight to the
  text encoder (cached text) and to the indexer (the query's embedding), one after the other. The
  split printed: text model in the Flow = new - cached; gateway = gateway cached - (text encoder +
  indexer called directly); the indexer's call and the text encoder's call as measured.

Medians (p50) and p90 in ms; the load average at the start and the end. The in-process halves
(text encoding, Library.search) are rows of ``python bench/run.py --only search``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.measure import load_average, percentile  # noqa: E402

MODEL = "ViT-B-32"


def _stats(values_ms: list[float]) -> str:
    return f"p50 {percentile(values_ms, 50):6.2f}  p90 {percentile(values_ms, 90):6.2f}"


def busy_cores(count: int) -> list[subprocess.Popen]:
    """``count`` processes that spin on a core each (stop them with ``stop``)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def thread_part(queries: int, busy: bool) -> None:
    from bench.text_query import query_texts
    from clipseek.model.onnx_text import OnnxTextModel

    models = {"1 thread": OnnxTextModel(MODEL, "none", threads=1),
              "2 threads, sleeping between operators": OnnxTextModel(MODEL, "none", threads=2, spin=False),
              "2 threads, spinning during a call (the default)": OnnxTextModel(MODEL, "none", threads=2)}
    texts = query_texts(queries)
    for label, hogs in [("idle cores", 0)] + ([("both cores busy", 2)] if busy else []):
        spinning = busy_cores(hogs)
        try:
            timings: dict[str, list[float]] = {name: [] for name in models}
            cpu_ms: dict[str, float] = {name: 0.0 for name in models}
            names = list(models)
            for i, text in enumerate(texts):
                for name in names[i % len(names):] + names[:i % len(names)]:  # each goes first in turn
                    cpu, started = time.process_time(), time.perf_counter()
                    models[name].encode_texts([f"{text} {label}"])
                    timings[name].append((time.perf_counter() - started) * 1000)
                    time.sleep(0.02)  # a gap as between searches: threads still spinning would show as CPU here
                    cpu_ms[name] += (time.process_time() - cpu) * 1000
        finally:
            stop(spinning)
        for name, values in timings.items():
            print(f"  text tower on ONNX Runtime, {name}, {label}: {_stats(values)}, "
                  f"CPU {cpu_ms[name] / len(values):.1f} ms a query ({len(values)} queries)")


def executor_ports(root_pid: int) -> dict[str, str]:
    """{executor name: gRPC port} of the Flow's processes (descendants of ``root_pid``)."""
    found, todo = {}, [str(root_pid)]
    while todo:
        children = subprocess.run(["pgrep", "-P", todo.pop()], capture_output=True, text=True).stdout.split()
        todo += children
        for pid in children:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            except OSError:
                continue
            if "--name" in argv and "--port" in argv:
                found[argv[argv.index("--name") + 1]] = argv[argv.index("--port") + 1]
    return found


def flow_part(frames: int, variants: list[int], rounds: int, queries: int) -> None:
    from docarray import DocList

    from bench.indexing import start_flow
    from bench.search_latency import CACHE_DIR, TEXTS, build_workspace
    from clipseek.api.client import ClipseekClient
    from clipseek.docs import Query

    workspace, _ = build_workspace(frames, 512, MODEL)
    results: dict[tuple[int, str], list[float]] = {}

    def timed(threads: int, name: str, call, *args, **kwargs) -> None:
        started = time.perf_counter()
        call(*args, **kwargs)
        results.setdefault((threads, name), []).append((time.perf_counter() - started) * 1000)

    def query(text: str) -> DocList[Query]:
        return DocList[Query]([Query(text=text, top_k=10)])

    cached = TEXTS[0]
    for round_ in range(rounds):
        for threads in variants:
            with start_flow(MODEL, "none", CACHE_DIR, Path(workspace), {"onnx_threads": threads}) as flow:
                ports = executor_ports(os.getpid())
                gateway = {"http": ClipseekClient(flow.http), "grpc": ClipseekClient(flow.grpc)}
                text_encoder = ClipseekClient(f"grpc://127.0.0.1:{ports['text_encoder']}")
                indexer = ClipseekClient(f"grpc://127.0.0.1:{ports['indexer']}")
                embedded = text_encoder._post("/search", query(cached), Query)
                for i in range(10):  # warm-up
                    for client in gateway.values():
                        client.search(TEXTS[i % len(TEXTS)])
                for i in range(queries):
                    for protocol, client in gateway.items():
                        text = f"{TEXTS[i % len(TEXTS)]} {i} {round_} {threads} {protocol}"  # new to the cache
                        timed(threads, f"{protocol}: new text", client.search, text, top_k=10)
                        timed(threads, f"{protocol}: cached text", client.search, cached, top_k=10)
                    timed(threads, "direct: text encoder (cached text)", text_encoder._post, "/search", query(cached),
                          Query)
                    timed(threads, "direct: indexer", indexer._post, "/search", DocList[Query](embedded), Query)
            print(f"  round {round_ + 1}, onnx_threads {threads}: HTTP new "
                  f"{percentile(results[(threads, 'http: new text')][-queries:], 50):.1f} ms", flush=True)
    for threads in variants:
        print(f"\n  onnx_threads {threads}, {frames} frames, {rounds} x {queries} searches per row:")
        for (t, name), values in sorted(results.items()):
            if t == threads:
                print(f"    {name:40s} {_stats(values)}")
        direct = (percentile(results[(threads, "direct: text encoder (cached text)")], 50)
                  + percentile(results[(threads, "direct: indexer")], 50))
        for protocol in ("http", "grpc"):
            new = percentile(results[(threads, f"{protocol}: new text")], 50)
            cached_ms = percentile(results[(threads, f"{protocol}: cached text")], 50)
            print(f"    split, {protocol}: text model in the Flow {new - cached_ms:5.1f}, gateway "
                  f"{cached_ms - direct:5.1f}, text encoder call + indexer call {direct:5.1f} (medians)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="threads,flow")
    parser.add_argument("--frames", type=int, default=20000, help="workspace size for the flow part")
    parser.add_argument("--onnx-threads", default="1,2", help="the text encoder's onnx_threads values to compare")
    parser.add_argument("--rounds", type=int, default=2, help="Flows started per value, in turn")
    parser.add_argument("--queries", type=int, default=100, help="searches per Flow and protocol")
    parser.add_argument("--busy", action="store_true", help="threads part: also with both cores kept busy")
    args = parser.parse_args()
    from bench.search_latency import CACHE_DIR

    os.environ["HOME"] = str(CACHE_DIR / "home")  # as bench/run.py: jina's start-up locks stay the benchmark's own
    (CACHE_DIR / "home").mkdir(parents=True, exist_ok=True)
    print(f"load average at the start: {load_average()}")
    parts = set(args.only.split(","))
    if "threads" in parts:
        print("threads:")
        thread_part(args.queries * 2, args.busy)
    if "flow" in parts:
        print("flow:")
        flow_part(args.frames, [int(v) for v in args.onnx_threads.split(",")], args.rounds, args.queries)
    print(f"load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
