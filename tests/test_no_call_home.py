"""clipseek never calls home: run for real under ``strace -f -e trace=connect``, it connects to nothing
but this machine.

Two ways of running are checked, each up to one ``/search`` over HTTP and back down:
``clipseek serve`` (the Flow in one process tree), and the services of docker-compose.yml started as
plain processes with the commands, environment and health checks written there (no Docker here), which
also shows that those commands serve. Random weights (``CLIPSEEK_PRETRAINED=none``) so no model is
downloaded; downloading the weights you asked for is the one call out clipseek makes, and only then.

A connect() to a loopback or unspecified address (0.0.0.0, ::) is local; AF_UNIX is local. Everything
else, a DNS query included, is a call out. ``test_the_detector_sees_jinas_own_calls_out`` shows that
this test sees jina's own attempts when they are not prevented.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import free_port

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
STRACE = shutil.which("strace")
READY_TIMEOUT_S = 300.0  # two ViT-B-32 built with random weights on a busy 2-core machine: ~30 s


def _strace_works() -> bool:
    if STRACE is None:
        return False
    probe = subprocess.run([STRACE, "-f", "-qq", "-e", "trace=connect", "true"], capture_output=True)
    return probe.returncode == 0


needs_strace = pytest.mark.skipif(not _strace_works(), reason="strace missing or ptrace not permitted "
                                                                 "(apt-get install -y strace)")

_FAMILY = re.compile(r"connect\(\d+, \{sa_family=(\w+)")
_IPV4 = re.compile(r'inet_addr\("([^"]+)"\)')
_IPV6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')


def outbound_connects(trace: str) -> list[str]:
    """The connect() lines of an strace log whose address is not on this machine."""
    found = []
    for line in trace.splitlines():
        family = _FAMILY.search(line)
        if not family or family.group(1) not in ("AF_INET", "AF_INET6"):
            continue  # AF_UNIX, AF_NETLINK, AF_UNSPEC (a UDP socket's disconnect)
        match = (_IPV4 if family.group(1) == "AF_INET" else _IPV6).search(line)
        if not match:
            found.append(line)  # an address strace could not print: count it, look at it
            continue
        address = ipaddress.ip_address(match.group(1))
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not (address.is_loopback or address.is_unspecified):
            found.append(line)
    return found


def child_environment(**settings: str) -> dict[str, str]:
    """This environment without jina's, clipseek's and Hugging Face's switches (what is tested is that
    clipseek sets what it needs itself), plus ``settings``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JINA_", "CLIPSEEK_")) and k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}}
    env["PYTHONPATH"] = str(REPO)  # as in the image: the checkout's code, flow.yml and services/
    env.update(settings)
    return env


class Traced:
    """A command running under strace in a process group of its own, its connect() calls logged to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path):
        self.name = name
        self.trace = workdir / f"{name}.strace"
        self.log = workdir / f"{name}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [STRACE, "-f", "-qq", "-e", "trace=connect", "-e", "signal=none", "-o", str(self.trace), *argv],
                env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def _traced_pids(self) -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != self.process.pid:
                try:
                    if os.getpgid(int(entry)) == self.process.pid:
                        pids.append(int(entry))
                except ProcessLookupError:
                    pass
        return pids

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> bool:
        """Send ``sig`` to every traced process (as a terminal's Ctrl-C or ``docker stop`` would; strace
        itself goes on logging) and wait for them to end. False when they had to be killed."""
        if not self.alive():
            return True
        for pid in self._traced_pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
            return False

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} log ---\n" + "\n".join(text.splitlines()[-lines:])

    def outbound(self) -> list[str]:
        return outbound_connects(self.trace.read_text(errors="replace"))


def wait_until(ready, processes: list[Traced], what: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dead = [p for p in processes if not p.alive()]
        if dead:
            pytest.fail(f"{dead[0].name} exited before {what}\n" + dead[0].tail())
        if ready():
            return
        time.sleep(1.0)
    pytest.fail(f"not {what} after {timeout_s:.0f} s\n" + "\n".join(p.tail() for p in processes))


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


def search(http_port: int, api_key: str = "") -> dict:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.post(f"http://127.0.0.1:{http_port}/search", timeout=120, trust_env=False, headers=headers,
                          json={"data": [{"text": "a dog jumps into a swimming pool", "top_k": 5}]})
    assert response.status_code == 200, response.text[:500]
    return response.json()["data"][0]


# -- the detector ------------------------------------------------------------------------------------
def test_outbound_connects_keeps_only_addresses_off_this_machine():
    trace = "\n".join([
        '101 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT',
        '101 connect(23, {sa_family=AF_INET, sin_port=htons(64948), sin_addr=inet_addr("0.0.0.0")}, 16) = 0',
        '101 connect(23, {sa_family=AF_INET, sin_port=htons(5000), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
        '102 connect(21, {sa_family=AF_INET6, sin6_port=htons(64651), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "::ffff:0.0.0.0", &sin6_addr), sin6_scope_id=0}, 28) = -1 EINPROGRESS',
        '102 connect(21, {sa_family=AF_INET6, sin6_port=htons(80), inet_pton(AF_INET6, "::1", &sin6_addr)}, 28) = 0',
        '103 connect(13, {sa_family=AF_UNSPEC, sa_data="..."}, 16) = 0',
        '104 connect(13, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16 '
        '<unfinished ...>',
        '105 connect(9, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "2606:4700::6810:1", &sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH',
        '106 <... connect resumed>) = 0',
    ])
    found = outbound_connects(trace)
    assert [line.split()[0] for line in found] == ["104", "105"]


@needs_strace
def test_the_detector_sees_jinas_own_calls_out(tmp_path):
    """jina's get_internal_ip() connects a UDP socket to 10.255.255.255 (no packet leaves, but it is the
    kind of call this test exists to catch); clipseek.engine.serve avoids it by giving the Flow the address."""
    traced = Traced("internal-ip", [sys.executable, "-c", "from jina.helper import get_internal_ip; get_internal_ip()"],
                    child_environment(JINA_OPTOUT_TELEMETRY="1"), tmp_path)
    traced.process.wait(120)
    assert any("10.255.255.255" in line for line in traced.outbound()), traced.trace.read_text()[-2000:]


# -- clipseek serve ----------------------------------------------------------------------------------
@pytest.mark.slow
@needs_strace
def test_clipseek_serve_answers_a_search_without_calling_out(tmp_path):
    grpc_port, http_port = free_port(), free_port()
    env = child_environment(CLIPSEEK_MODEL="ViT-B-32", CLIPSEEK_PRETRAINED="none",
                            CLIPSEEK_MEDIA_ROOTS=str(tmp_path), CLIPSEEK_WORKSPACE=str(tmp_path / "workspace"))
    serve = Traced("serve", [sys.executable, "-m", "clipseek", "serve", "--grpc-port", str(grpc_port),
                             "--http-port", str(http_port)], env, tmp_path)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{http_port}/"), [serve], "serving")
        answer = search(http_port)
        assert answer["error"] == "" and answer["segments"] == [] and answer["model"] == "ViT-B-32", answer
    finally:
        stopped = serve.stop(signal.SIGINT)  # Ctrl-C
    assert serve.outbound() == [], serve.tail()
    assert stopped, "clipseek serve did not stop on Ctrl-C\n" + serve.tail()


# -- the compose services, as processes --------------------------------------------------------------
COMPOSE_ENGINE = ["video-loader", "image-encoder", "text-encoder", "indexer"]


def compose_services() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def local_command(command: list[str], ports: dict[str, int]) -> list[str]:
    """A compose command run here: jina from this venv, service names and ports mapped to local ones."""
    argv = [str(VENV_BIN / command[0]) if (VENV_BIN / command[0]).exists() else command[0], *command[1:]]
    out = []
    for arg in argv:
        for service, port in ports.items():
            arg = arg.replace(f'"{service}:8081"', f'"127.0.0.1:{port}"')
        out.append(arg)
    return out


_INTERPOLATED = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, host: dict[str, str]) -> str:
    """``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` as compose fills them from ``host``."""
    def fill(match: re.Match) -> str:
        name, kind, rest = match.groups()
        if host.get(name):
            return host[name]
        assert kind != ":?", f"compose would refuse to start: {name} is required ({rest})"
        return rest if kind == ":-" else ""

    return _INTERPOLATED.sub(fill, value)


def compose_environment(service: dict, **host: str) -> dict[str, str]:
    """The service's environment as compose gives it when the host's environment is ``host``: values
    written in docker-compose.yml as compose interpolates them, value-less names from ``host`` (or left
    unset)."""
    env = {}
    for name, value in (service.get("environment") or {}).items():
        if value is not None:
            env[name] = interpolate(str(value), host)
        elif name in host:
            env[name] = host[name]
    return child_environment(**env)


@pytest.mark.slow
@needs_strace
def test_compose_services_answer_a_search_without_calling_out(tmp_path):
    services = compose_services()
    ports = {name: free_port() for name in COMPOSE_ENGINE}
    settings = {"CLIPSEEK_MODEL": "ViT-B-32", "CLIPSEEK_PRETRAINED": "none", "CLIPSEEK_API_KEY": "compose-test-key"}
    local = {"CLIPSEEK_MEDIA_ROOTS": str(tmp_path), "CLIPSEEK_WORKSPACE": str(tmp_path / "workspace")}
    running: list[Traced] = []
    try:
        for name in COMPOSE_ENGINE:
            service = services[name]
            command = [a.replace("8081", str(ports[name])) if a == "8081" else a for a in service["command"]]
            env = compose_environment(service, **settings)
            env.update({k: v for k, v in local.items() if k in env})  # /media, /data/workspace -> tmp
            running.append(Traced(name, local_command(command, ports), env, tmp_path))

        def healthy(name: str) -> bool:
            test = services[name]["healthcheck"]["test"]
            assert test[0] == "CMD"
            argv = [a.replace("8081", str(ports[name])) for a in test[1:]]
            argv[0] = sys.executable if argv[0] == "python" else argv[0]
            return subprocess.run(argv, env=child_environment(), cwd=REPO, capture_output=True).returncode == 0

        wait_until(lambda: all(healthy(n) for n in COMPOSE_ENGINE), running, "healthy (the compose healthcheck)")

        grpc_port, http_port = free_port(), free_port()
        gateway = services["gateway"]
        command = local_command(gateway["command"], ports)
        at = command.index("--port")
        command[at + 1:at + 3] = [str(grpc_port), str(http_port)]
        running.append(Traced("gateway", command, compose_environment(gateway, **settings), tmp_path))
        wait_until(lambda: http_ok(f"http://127.0.0.1:{http_port}/"), running, "serving")
        assert httpx.post(f"http://127.0.0.1:{http_port}/videos", json={"data": [{}]}, trust_env=False,
                          timeout=60).status_code == 401  # the key compose requires is required
        answer = search(http_port, settings["CLIPSEEK_API_KEY"])
        assert answer["error"] == "" and answer["segments"] == [] and answer["model"] == "ViT-B-32", answer
    finally:
        # `docker compose stop` sends SIGTERM and kills after 10 s; each service ends well within that
        stopped = {traced.name: traced.stop(signal.SIGTERM) for traced in reversed(running)}
    for traced in running:
        assert traced.outbound() == [], traced.tail()
    assert all(stopped.values()), f"did not stop on SIGTERM: {stopped}"


@pytest.mark.slow
@needs_strace
def test_the_page_does_not_call_out(tmp_path):
    """Streamlit on its own (the compose `web` command), asked for its health: no usage statistics sent."""
    port = free_port()
    web = compose_services()["web"]
    command = [a.replace("8501", str(port)) if a == "8501" else a for a in web["command"]]
    env = compose_environment(web, CLIPSEEK_ADDRESS=f"http://127.0.0.1:{free_port()}", CLIPSEEK_API_KEY="k",
                              CLIPSEEK_MEDIA_ROOTS=str(tmp_path), HOME=str(tmp_path))
    page = Traced("web", local_command(command, {}), env, tmp_path)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/_stcore/health"), [page], "serving", 120)
        assert http_ok(f"http://127.0.0.1:{port}/")
    finally:
        stopped = page.stop(signal.SIGTERM)
    assert page.outbound() == [], page.tail()
    assert stopped, "the page did not stop on SIGTERM\n" + page.tail()


@needs_strace
def test_the_page_script_does_not_call_out(tmp_path):
    """The page itself, run once by Streamlit's AppTest with no Flow to talk to (it says so)."""
    script = ("from streamlit.testing.v1 import AppTest\n"
              f"at = AppTest.from_file({str(REPO / 'web' / 'app.py')!r}, default_timeout=60)\n"
              "at.run()\n"
              "assert not at.exception, [e.value for e in at.exception]\n"
              "assert at.error, 'the page should say that no Flow answers'\n")
    env = child_environment(CLIPSEEK_ADDRESS=f"http://127.0.0.1:{free_port()}", CLIPSEEK_MEDIA_ROOTS=str(tmp_path),
                            HOME=str(tmp_path))
    page = Traced("apptest", [sys.executable, "-c", script], env, tmp_path)
    assert page.process.wait(180) == 0, page.tail()
    assert page.outbound() == [], page.tail()
