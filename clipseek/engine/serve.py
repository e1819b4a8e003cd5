"""``clipseek serve``: the services of ``flow.yml`` and the gateway as processes of this machine.

Each executor runs in a process of its own (``python -m clipseek.engine.executor``) listening on 127.0.0.1
only, and clipseek's gateway (:mod:`clipseek.engine.gateway`, gRPC and HTTP) on ``host`` in front of them:
the same processes, commands and routing as the containers of ``docker-compose.yml``. A supervisor
(:mod:`clipseek.engine.supervisor`) starts them and watches them:

- if a process cannot start (it exits, or is not ready after ``start_timeout_s``), ``clipseek serve``
  stops the others and exits with 1 and that process's last lines;
- an executor or the gateway that dies while serving is restarted (``restart_limit`` times in ten
  minutes, then the engine stops with an error); meanwhile ``GET /`` says which one is down, and the
  endpoints that do not need it keep answering (search needs only the text encoder and the indexer);
- SIGTERM, SIGINT (Ctrl-C) or SIGHUP stop every process within ``stop_timeout_s`` (then they are
  killed); if ``clipseek serve`` itself is killed, they die with it.

Nothing calls out: jina's telemetry is switched off in every process, and nothing here asks for the
machine's public address (jina's Flow did, for its banner).
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from clipseek.engine.supervisor import EngineError, ProcessSpec, Supervisor
from clipseek.media.roots import DEFAULT_WORKSPACE, default_upload_dir
from clipseek.settings import load_settings
from clipseek.torch_free import keep_torch_out

logger = logging.getLogger("clipseek.engine.serve")

REPO_ROOT = Path(__file__).resolve().parents[2]
EXECUTOR_HOST = "127.0.0.1"  # executors of one machine are reached by the gateway only
JINA_QUIET = {"JINA_OPTOUT_TELEMETRY": "1", "JINA_HIDE_SURVEY": "1", "JINA_LOG_LEVEL": "INFO"}
# glibc gives threads that allocate their own heap arenas (up to 8 per core), and memory freed in one stays
# there: jina serves requests on a pool of threads, each a new arena. Two arenas cut the Flow's summed peak
# RSS indexing the 10-minute video at fp32 by 40-120 MiB (~2,460-2,495 -> ~2,370-2,420) at the same speed
# (docs/benchmarks.md, sixth session). The Dockerfile sets the same.
MALLOC_DEFAULTS = {"MALLOC_ARENA_MAX": "2"}
LOG_COLUMNS = "200"  # jina wraps its log lines at $COLUMNS (80 when not on a terminal)
EXIT_OK, EXIT_FAILED = 0, 1
# every process starts with torch kept out (clipseek.torch_free); the encoders let it in to load their model
TORCH_FREE = [sys.executable, "-m", "clipseek.torch_free", "-m"]


@dataclass
class ServeSettings:
    grpc_port: int = 51000  # the gateway's gRPC port
    http_port: int = 51001  # the gateway's HTTP port (also /docs, the OpenAPI page)
    flow: str = ""  # path of flow.yml; empty = the one at the top of the clipseek checkout
    host: str = "127.0.0.1"  # where the gateway listens: 127.0.0.1 = this machine only; 0.0.0.0 = every interface
    api_key: str = ""  # when set, the gateway answers only requests that carry it (Authorization: Bearer <key>)
    start_timeout_s: float = 600.0  # a process not ready this long after it was started fails the start
    stop_timeout_s: float = 10.0  # after SIGTERM, processes still running this long are killed
    restart_limit: int = 3  # restarts of a process that died, per ten minutes, before the engine gives up


def jina_environment() -> dict[str, str]:
    """The environment of the processes started here: JINA_QUIET and MALLOC_DEFAULTS (unless this
    environment sets those variables itself), and this clipseek first on the import path, so that they run
    the same code."""
    defaults = {**JINA_QUIET, **MALLOC_DEFAULTS, "COLUMNS": LOG_COLUMNS}
    env = {name: os.environ.get(name, value) for name, value in defaults.items()}
    if (REPO_ROOT / "services").is_dir():  # a checkout (not site-packages, which must stay after the stdlib)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return env


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


@dataclass
class EngineFolders:
    """The two folder settings of the services that ``clipseek serve`` needs to know: the defaults are
    those of the video loader and the indexer (tests/test_client.py holds them equal)."""

    media_roots: list[str] = field(default_factory=lambda: ["."])
    workspace: str = DEFAULT_WORKSPACE


def add_upload_root(config: dict[str, Any]) -> Path:
    """Make ``<workspace>/uploads`` (created) one of the video loader's media roots in ``config`` (as
    flow_config gives it), so that the page's uploads can be indexed with no setting; returns it."""
    by_name = {e.get("name"): e for e in config.get("executors", [])}
    loader, indexer = by_name.get("video_loader"), by_name.get("indexer")
    given = {"media_roots": ((loader or {}).get("uses_with") or {}).get("media_roots"),
             "workspace": ((indexer or {}).get("uses_with") or {}).get("workspace")}
    folders = load_settings(EngineFolders, given)
    uploads = default_upload_dir(folders.workspace)
    try:
        uploads.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the indexer will say what is wrong with its workspace
        logger.warning("no upload folder: cannot create %s (%s)", uploads, exc.strerror)
    roots = [Path(os.path.expanduser(r)).resolve() for r in folders.media_roots]
    if loader is not None and not any(uploads == r or uploads.is_relative_to(r) for r in roots):
        loader["uses_with"] = {**(loader.get("uses_with") or {}), "media_roots": [*folders.media_roots, str(uploads)]}
    return uploads


def free_port(host: str = EXECUTOR_HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def check_ports_free(host: str, ports: list[int]) -> None:
    """Raise EngineError naming a port of ``host`` that something else already listens on."""
    for port in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise EngineError("gateway", f"cannot listen on {host}:{port}: {exc.strerror} (another clipseek "
                                             f"serve? choose other ports with --grpc-port/--http-port)") from None


def linear_graph(names: list[str]) -> dict[str, list[str]]:
    """jina's graph description of a chain: start-gateway -> names... -> end-gateway."""
    chain = ["start-gateway", *names, "end-gateway"]
    return {a: [b] for a, b in zip(chain[:-1], chain[1:], strict=True)}


def engine_stages(settings: ServeSettings, overrides: dict[str, Any] | None = None) -> list[list[ProcessSpec]]:
    """The processes of the engine, all started at once: the executors of flow.yml and the gateway (which
    waits until they answer before it serves; ready = every executor answers through it)."""
    from clipseek.engine.health import check_health

    config = flow_config(settings, overrides)
    add_upload_root(config)
    executors = config.get("executors") or []
    if not executors:
        raise ValueError("the flow defines no executors")
    for executor in executors:
        extra = sorted(set(executor) & {"replicas", "shards", "polling", "needs"})
        if extra:
            raise ValueError(f"{executor.get('name')}: clipseek serve runs one process per executor in a chain; "
                             f"{', '.join(extra)} are for `clipseek deploy k8s`")
    quiet = {**jina_environment(), "CLIPSEEK_API_KEY": ""}  # executors never see the key
    ports = {executor["name"]: free_port() for executor in executors}
    stage = []
    for executor in executors:
        name, port = executor["name"], ports[executor["name"]]
        argv = [*TORCH_FREE, "clipseek.engine.executor", "--uses", executor["uses"], "--name", name,
                "--host", EXECUTOR_HOST, "--port", str(port),
                "--uses-with-json", json.dumps(executor.get("uses_with") or {})]
        if executor.get("allow_concurrent"):  # else jina runs the executor's requests one at a time
            argv.append("--allow-concurrent")
        target = f"grpc://{EXECUTOR_HOST}:{port}"
        stage.append(ProcessSpec(name, argv, lambda target=target: check_health(target, 1.0) is None, dict(quiet)))
    host = settings.host
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else (f"[{host}]" if ":" in host else host)
    gateway = [*TORCH_FREE, "clipseek.engine.gateway", "--host", host, "--protocol", "GRPC", "HTTP",
               "--port", str(settings.grpc_port), str(settings.http_port),
               "--graph-description", json.dumps(linear_graph(list(ports))),
               "--deployments-addresses", json.dumps({n: [f"{EXECUTOR_HOST}:{p}"] for n, p in ports.items()})]
    if (config.get("with") or {}).get("cors"):
        gateway.append("--cors")
    ready = f"http://{probe_host}:{settings.http_port}/"  # the gateway's readiness: every executor answers
    return [[*stage, ProcessSpec("gateway", gateway, lambda: check_health(ready, 2.0) is None,
                                 {**jina_environment(), "CLIPSEEK_API_KEY": settings.api_key})]]


def _loopback_or(host: str) -> str:
    """``host`` as an IP address to classify ("localhost" is loopback; a name is taken as exposed)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        return "0.0.0.0"


class StopSignals:
    """SIGTERM, SIGINT and SIGHUP ask to stop; a second one asks to stop now (kill what still runs)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, lambda signum, frame: self.received.append(signum))
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def stop(self) -> bool:
        return bool(self.received)

    def urgent(self) -> bool:
        return len(self.received) > 1


def serve(settings: ServeSettings, overrides: dict[str, Any] | None = None, output: TextIO | None = None,
          on_ready: Any = None) -> int:
    """Run the engine until a stop signal; returns the exit code (1 when it could not start or gave up).
    Call from the main thread (signal handlers)."""
    try:
        check_ports_free(settings.host, [settings.grpc_port, settings.http_port])
        stages = engine_stages(settings, overrides)
    except (EngineError, ValueError, OSError) as exc:
        logger.error("%s", exc)
        return EXIT_FAILED
    if not settings.api_key and not ipaddress.ip_address(_loopback_or(settings.host)).is_loopback:
        logger.warning("the gateway listens on %s without an API key: anyone who can reach this machine can "
                       "search, read thumbnails and change the index (set CLIPSEEK_API_KEY)", settings.host)
    with StopSignals() as signals:
        supervisor = Supervisor(stages, settings.start_timeout_s, settings.stop_timeout_s, settings.restart_limit,
                                should_stop=signals.stop, output=output)
        started = time.monotonic()
        try:
            if supervisor.start():
                logger.info("clipseek is ready in %.1f s", time.monotonic() - started)
                if on_ready is not None:
                    on_ready()
                supervisor.serve()
            code = EXIT_OK
        except EngineError as exc:
            logger.error("%s", exc)
            code = EXIT_FAILED
        finally:
            supervisor.stop(urgent=signals.urgent)
    return code


class BackgroundFlow:
    """The engine in a child process on the given ports, as a context manager (tests, the demo,
    benchmarks): ``with BackgroundFlow(ServeSettings(...), {"model": "demo"}) as flow:``.

    The child runs :func:`serve` (as ``clipseek serve`` does). Leaving the block stops it: SIGTERM, then
    SIGKILL if it has not stopped in ``stop_timeout_s`` + 5 s (its processes die with it); a Ctrl-C
    while waiting kills it at once. If this process dies, the engine notices and stops too.
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

        # the key travels in the environment, not on a command line that `ps` shows
        settings = {**dataclasses.asdict(self.settings), "api_key": ""}
        spec = json.dumps({"settings": settings, "overrides": self.overrides})
        env = {**os.environ, **jina_environment(), "CLIPSEEK_API_KEY": self.settings.api_key}
        self._log = tempfile.NamedTemporaryFile("w+", prefix="clipseek-flow-", suffix=".log", delete=False)
        self.process = subprocess.Popen([sys.executable, "-m", "clipseek.engine.serve", spec], stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout_s
        try:
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
            raise TimeoutError(f"the Flow was not ready in {self.ready_timeout_s:.0f} s:\n{self.log_tail()}")
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc: Any) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=self.settings.stop_timeout_s + 5)
            except subprocess.TimeoutExpired:
                pass
            finally:  # also on a Ctrl-C while waiting
                if process.poll() is None:
                    process.kill()
                    process.wait()
        if self._log is not None:
            self._log.close()
            os.unlink(self._log.name)
            self._log = None


def _serve_spec(spec: str) -> int:
    """Entry point of BackgroundFlow's child process."""
    keep_torch_out()  # before jina imports docarray: gateway, loader and indexer never run a model
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = json.loads(spec)
    settings = load_settings(ServeSettings, {k: v for k, v in data["settings"].items() if k != "api_key"})
    return serve(settings, data["overrides"])


if __name__ == "__main__":
    sys.exit(_serve_spec(sys.argv[1]))
