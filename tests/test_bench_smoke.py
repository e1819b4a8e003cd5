"""The benchmark harness on tiny inputs (``bench/run.py --quick``), so it cannot rot unnoticed."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow

EXPECTED_PREFIXES = [
    "index wall [quick-12s-360p",
    "index frames embedded [quick-12s-360p",
    "index real-time factor [quick-12s-360p",
    "index peak RSS, largest process [quick-12s-360p",
    "index CPU time, all Flow processes [quick-12s-360p",
    "index cores busy [quick-12s-360p",
    "decode + shot scan alone [quick-12s-360p",
    "encode alone [quick-12s-360p",
    "index wall / max(decode, encode) [quick-12s-360p",
    "VCED baseline wall [quick-12s-360p",
    "speed-up vs VCED baseline [quick-12s-360p",
    "index wall [quick-6s-540p",
    "encoder images/s, batch 32 [",
    "encoder fraction of compute limit [",
    "fp32 matmul rate [",
    "search HTTP p50 [",
    "search HTTP p99 [",
    "search GRPC p50 [",
    "search recall@10 [",
    "index peak RSS, all Flow processes [quick-12s-240p",
    "index peak RSS, all Flow processes [quick-48s-240p",
]
TARGETS = ["encoder speed", "decode/encode overlap", "vs VCED baseline", "search latency", "recall", "flat memory"]


def parse_tables(stdout: str) -> tuple[dict[str, float], dict[str, str]]:
    rows, targets = {}, {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or len(cells) != 4 or cells[0] in ("metric", "target"):
            continue
        if cells[0] in TARGETS:
            targets[cells[0]] = cells[3]
        else:
            rows[cells[0]] = float(cells[1]) if cells[1] != "n/a" else math.nan
    return rows, targets


def test_quick_benchmark_prints_every_row_with_positive_finite_numbers(tmp_path):
    output = tmp_path / "bench.md"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--output", str(output)],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    rows, targets = parse_tables(result.stdout)
    for prefix in EXPECTED_PREFIXES:
        assert any(metric.startswith(prefix) for metric in rows), f"no row '{prefix}...' in:\n{result.stdout}"
    bad = {metric: value for metric, value in rows.items() if not (math.isfinite(value) and value > 0)}
    assert not bad, f"rows that are not positive and finite: {bad}"
    assert set(targets) == set(TARGETS)
    assert all(verdict in ("met", "**missed**", "not measured") for verdict in targets.values())
    written = output.read_text()
    assert "<!-- bench:results:start -->" in written and "| search HTTP p50 [" in written
    assert "Machine: " in written and "python bench/run.py --quick" in written


def test_index_ab_reads_each_variant_as_a_name_and_its_environment():
    import argparse

    from bench.index_ab import parse_variant

    assert parse_variant("sleeping:") == ("sleeping", {})
    assert parse_variant("spinning:OMP_WAIT_POLICY=") == ("spinning", {"OMP_WAIT_POLICY": ""})
    assert parse_variant("one:OMP_NUM_THREADS=1,CLIPSEEK_PRECISION=fp32") == (
        "one", {"OMP_NUM_THREADS": "1", "CLIPSEEK_PRECISION": "fp32"})
    for bad in (":A=1", "name:A", "name:=1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_variant(bad)


def test_index_ab_keeps_its_options_out_of_the_environment_and_can_drop_the_loaders_concurrency(tmp_path):
    import yaml

    from bench.index_ab import flow_file, parse_variant, split_options

    _, assignments = parse_variant("before:chunk_s=120,in_flight=2,loader_concurrent=0,OMP_NUM_THREADS=1")
    env, options = split_options(assignments)
    assert env == {"OMP_NUM_THREADS": "1"}
    assert options == {"chunk_s": "120", "in_flight": "2", "loader_concurrent": "0"}
    assert flow_file(True, tmp_path) == ""  # the repository's flow.yml
    sequential = yaml.safe_load(Path(flow_file(False, tmp_path)).read_text())
    executors = {e["name"]: e for e in sequential["executors"]}
    assert "allow_concurrent" not in executors["video_loader"] and executors["indexer"]["allow_concurrent"]
    assert all(Path(e["uses"]).is_file() for e in executors.values())
