"""Starting the Flow defined in ``flow.yml``, quietly: no telemetry, no public-IP lookups."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clipseek.torch_free import keep_torch_out
from clipseek.settings import load_settings

logger = logging.getLogger("clipseek.engine.serve")

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServeSettings:
    grpc_port: int = 51000  # the gateway's gRPC port
    http_port: int = 51001  # the gateway's HTTP port (also /docs, the OpenAPI page)
    flow: str = ""  # path of flow.yml; empty = the one at the top of the clipseek checkout


def quiet_jina_environment() -> None:
    """jina sends telemetry unless told not to; a self-hosted engine must not call out.
    (This is the one place clipseek writes to os.environ: jina offers no other switch.)

    Set before jina is imported, and inherited by the executor processes the Flow starts.
    """
    os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")
    os.environ.setdefault("JINA_HIDE_SURVEY", "1")
    os.environ.setdefault("JINA_LOG_LEVEL", "INFO")



def flow_config(settings: ServeSettings, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """flow.yml as a dict, with the ports from the settings and service paths made absolute.

    ``overrides`` (setting name -> value, e.g. ``{"model": "demo"}``) go to the ``uses_with`` of every
    executor whose settings have that field, so one value reaches all the services that share it.
    """
    from clipseek.engine.services import SERVICES, setting_names

    path = Path(settings.flow) if settings.flow else REPO_ROOT / "flow.yml"
    if not path.is_file():
        raise FileNotFoundError(f"flow definition not found: {path} (set CLIPSEEK_FLOW)")
    config = copy.deepcopy(yaml.safe_load(path.read_text()))
    config.setdefault("with", {})["port"] = [settings.grpc_port, settings.http_port]
    overrides = dict(overrides or {})
    unused = set(overrides)
    for executor in config.get("executors", []):
        uses = executor.get("uses", "")
        if isinstance(uses, str) and uses.endswith((".yml", ".yaml")) and not os.path.isabs(uses):
            executor["uses"] = str((path.parent / uses).resolve())
        name = executor.get("name", "")
        if name in SERVICES and overrides:
            fields = setting_names(name)
            mine = {k: v for k, v in overrides.items() if k in fields}
            unused -= set(mine)
            executor["uses_with"] = {**(executor.get("uses_with") or {}), **mine}
    if unused:
        raise ValueError(f"no service has the setting(s): {', '.join(sorted(unused))}")
    return config


def build_flow(settings: ServeSettings | None = None, overrides: dict[str, Any] | None = None):
    """The Flow, ready for ``with flow: flow.block()``; see flow_config for ``overrides``."""
    quiet_jina_environment()
    from jina import Flow

    settings = settings or load_settings(ServeSettings)
    flow = Flow.load_config(flow_config(settings, overrides))
    # jina looks up the machine's public IP (api.ipify.org, ident.me, ...) for its "ready" table
    # and has no setting to stop it; giving it the addresses up front means it never asks.
    flow._public_ip = "(not looked up)"
    flow._internal_ip = "127.0.0.1"
    return flow


class BackgroundFlow:
    """The Flow in a child process on the given ports, as a context manager (tests, the demo,
    benchmarks): ``with BackgroundFlow(ServeSettings(...), {"model": "demo"}) as flow:``.

    A separate, freshly started process, not a fork of the caller: jina forks its executors, and a
    fork of a process whose torch thread pool has run deadlocks in the child.
    """

    def __init__(self, settings: ServeSettings, overrides: dict[str, Any] | None = None,
                 ready_timeout_s: float = 600.0):
        self.settings = settings
        self.overrides = overrides or {}
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    @property
    def grpc(self) -> str:
        return f"grpc://127.0.0.1:{self.settings.grpc_port}"

    def log_tail(self, chars: int = 3000) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def __enter__(self) -> BackgroundFlow:
        import httpx

        spec = json.dumps({"settings": dataclasses.asdict(self.settings), "overrides": self.overrides})
        self._log = tempfile.NamedTemporaryFile("w+", prefix="clipseek-flow-", suffix=".log", delete=False)
        self.process = subprocess.Popen([sys.executable, "-m", "clipseek.engine.serve", spec], stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Flow stopped while starting (exit {self.process.returncode}):\n"
                                   f"{self.log_tail()}")
            try:
                if httpx.get(f"{self.http}/", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise TimeoutError(f"the Flow was not ready in {self.ready_timeout_s:.0f} s:\n{self.log_tail()}")

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            for sig, wait_s in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.process.pid, sig)
                    self.process.wait(timeout=wait_s)
                    break
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    continue
        if self._log is not None:
            self._log.close()
            os.unlink(self._log.name)
            self._log = None


def _serve_spec(spec: str) -> None:
    """Entry point of BackgroundFlow's child process."""
    keep_torch_out()  # before jina imports docarray: gateway, loader and indexer never run a model
    data = json.loads(spec)
    flow = build_flow(ServeSettings(**data["settings"]), data["overrides"])
    with flow:
        flow.block()


if __name__ == "__main__":
    _serve_spec(sys.argv[1])
