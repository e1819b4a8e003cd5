"""Small measuring tools shared by the benchmarks: the machine, medians, peak RSS from /proc."""

from __future__ import annotations

import os
import platform
import socket
import statistics
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Machine:
    cores: int
    cpu_model: str
    memory_gb: float
    python: str
    torch_threads: int

    def describe(self) -> str:
        return (f"{self.cores} cores ({self.cpu_model}), {self.memory_gb:.0f} GB RAM, Python {self.python}, "
                f"torch threads {self.torch_threads}, no GPU used")


def machine() -> Machine:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    import torch

    return Machine(os.cpu_count() or 0, model, mem_kb / 1024 / 1024, platform.python_version(),
                   torch.get_num_threads())


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation (numpy's default)."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces: split after the last ')'
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def peak_rss_mb(pid: int) -> float:
    """VmHWM (the peak resident set over the process's life) in MiB; 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return 0.0


def process_title(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def python_children_peak_rss_mb(root: int) -> dict[int, float]:
    """Peak RSS (MiB) of each long-lived Python process below ``root`` (the Flow's executors and
    gateway; ffmpeg and other short helpers are left out)."""
    return {pid: peak_rss_mb(pid) for pid in descendants(root)
            if "python" in process_title(pid).split(" ")[0] or "jina" in process_title(pid)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and of its children it has waited for (e.g. ffmpeg helpers),
    in seconds; 0 when the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # after the name: state is field 3 of proc(5), so utime, stime, cutime, cstime (14-17) are 11-14 here
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def service_name(pid: int) -> str:
    """The Flow service a process runs (``--name`` of an executor, ``gateway``, ``serve``), else its
    command name."""
    argv = process_title(pid).split(" ")
    if "--name" in argv[:-1]:
        return argv[argv.index("--name") + 1]
    if "clipseek.engine.gateway" in argv:
        return "gateway"
    if "clipseek.engine.serve" in argv:
        return "serve"
    return Path(argv[0]).name if argv and argv[0] else str(pid)


def cpu_by_service(root: int) -> dict[int, tuple[str, float]]:
    """pid -> (service name, CPU seconds so far) for every live process below ``root``."""
    return {pid: (service_name(pid), cpu_seconds(pid)) for pid in descendants(root)}


def self_peak_rss_mb() -> float:
    return peak_rss_mb(os.getpid())
