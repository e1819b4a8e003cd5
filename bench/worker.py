"""Run one in-process measurement in a child process, so this process never loads torch or a model
(the Flow's executors are forked from it: whatever it holds would show up in their peak RSS).

``python bench/worker.py JSON`` runs a JSON list of ``[name, kwargs]`` tasks and prints their results as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _tasks() -> dict:
    from bench.encoder import measure_encoder
    from bench.indexing import decode_and_encode_alone, index_in_fresh_process
    from bench.search_latency import in_process_search, search_in_fresh_process
    from bench.vced_baseline import run as vced_run

    return {"parts": decode_and_encode_alone, "encoder": measure_encoder, "search_parts": in_process_search,
            "baseline": vced_run, "flow_index": index_in_fresh_process, "flow_search": search_in_fresh_process}


def run_many_in_child(tasks: list[tuple[str, dict]]) -> list[dict]:
    """Run ``(name, kwargs)`` tasks one after the other in one child process (one torch import)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), json.dumps(tasks)],
                            capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"bench tasks {[name for name, _ in tasks]} failed: {result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_in_child(name: str, **kwargs) -> dict:
    return run_many_in_child([(name, kwargs)])[0]


def main() -> None:
    tasks = _tasks()
    results = []
    for name, kwargs in json.loads(sys.argv[1]):
        value = tasks[name](**kwargs)
        results.append(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value)
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
