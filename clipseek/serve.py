"""Starting the Flow defined in ``flow.yml``, quietly: no telemetry, no public-IP lookups."""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clipseek.settings import load_settings

logger = logging.getLogger("clipseek.serve")

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ServeSettings:
    grpc_port: int = 51000  # the gateway's gRPC port
    http_port: int = 51001  # the gateway's HTTP port (also /docs, the OpenAPI page)
    flow: str = ""  # path of flow.yml; empty = the one at the top of the clipseek checkout


def quiet_jina_environment() -> None:
    """jina sends telemetry unless told not to; a self-hosted engine must not call out.

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
    from clipseek.catalog import SERVICES, service_settings

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
            fields = service_settings(name).__dataclass_fields__
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
    """The Flow running in this process's background on the given ports, as a context manager
    (tests, the demo, benchmarks): ``with BackgroundFlow(ServeSettings(...), {"model": "demo"}) as f:``."""

    def __init__(self, settings: ServeSettings, overrides: dict[str, Any] | None = None):
        self.settings = settings
        self.overrides = overrides or {}
        self.flow = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    @property
    def grpc(self) -> str:
        return f"grpc://127.0.0.1:{self.settings.grpc_port}"

    def __enter__(self) -> BackgroundFlow:
        self.flow = build_flow(self.settings, self.overrides)
        self.flow.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flow.__exit__(*exc)
