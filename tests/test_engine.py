"""The engine's processes, started and signalled for real: `clipseek serve` listens on loopback only,
fails fast when a process cannot start, restarts a process that dies (search stays up meanwhile),
requires the API key when one is set, and stops every process on SIGTERM/SIGINT or when it is killed.

Listening addresses and leftover processes are read from /proc. The full engine runs the tiny random
model; the start-up and shutdown cases run one small executor (tests/fixtures/echo) behind the gateway.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import httpx
import pytest
from conftest import REPO, TINY_MODEL, free_port
from procs import alive, descendants, listening, port_is_free, started_with

from clipseek.api.client import ClipseekClient
from clipseek.errors import AuthenticationError, QueryError, ServiceUnavailableError

pytestmark = pytest.mark.slow

ECHO = REPO / "tests" / "fixtures" / "echo" / "config.yml"
API_KEY = "test-key-0123456789"


# -- running clipseek serve ------------------------------------------------------------------------------
class Serve:
    """``clipseek serve`` in a session of its own (a signal to it is the test's, not a terminal's)."""

    def __init__(self, tmp: Path, env: dict[str, str], name: str = "serve"):
        self.grpc_port, self.http_port = free_port(), free_port()
        self.log = tmp / f"{name}.log"
        self.marker = f"CLIPSEEK_TEST_ENGINE={tmp}/{name}"  # in the environment of everything it starts
        env = {**env, "CLIPSEEK_TEST_ENGINE": f"{tmp}/{name}"}
        self.started = time.monotonic()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "clipseek.api.cli", "serve", "--grpc-port", str(self.grpc_port),
                 "--http-port", str(self.http_port)], cwd=tmp, env={**os.environ, "PYTHONPATH": str(REPO), **env},
                stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self) -> int:
        try:
            return httpx.get(f"{self.http}/", timeout=3, trust_env=False).status_code
        except httpx.TransportError:
            return 0

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"clipseek serve exited early:\n{self.output()[-3000:]}"
            if self.ready() == 200:
                return
            time.sleep(0.5)
        pytest.fail(f"not ready in {timeout_s:.0f} s:\n{self.output()[-3000:]}")

    def wait_exit(self, timeout_s: float) -> tuple[int, float]:
        """(exit code, seconds it took from now)."""
        started = time.monotonic()
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"clipseek serve still running {timeout_s:.0f} s later:\n{self.output()[-3000:]}")
        return code, time.monotonic() - started

    def kill(self) -> None:
        for pid in alive(descendants(self.process.pid) | {self.process.pid}):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(10)

    def executor_pids(self) -> dict[str, int]:
        """The name of each process of the engine (from its --name) -> its pid."""
        found = {}
        for pid in alive(descendants(self.process.pid)):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"clipseek.engine.gateway" in argv:
                found["gateway"] = pid
            elif b"--name" in argv:
                found[argv[argv.index(b"--name") + 1].decode()] = pid
        return found


def echo_flow(tmp: Path, **uses_with: object) -> Path:
    """A flow.yml of one executor, the echo test executor."""
    path = tmp / "flow.yml"
    lines = "".join(f"\n      {k}: {v!r}" for k, v in uses_with.items())
    path.write_text(textwrap.dedent(f"""\
        jtype: Flow
        executors:
          - name: echo
            uses: {ECHO}
        """) + (f"    uses_with:{lines}\n" if lines else ""))
    return path


def assert_all_gone(pids: set[int], serve: Serve, within_s: float = 5.0) -> None:
    """``pids`` (seen running before) and anything else the engine started have ended."""
    pids = pids | started_with(serve.marker)
    deadline = time.monotonic() + within_s
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pids), f"left running: {sorted(alive(pids))}\n{serve.output()[-2000:]}"


# -- the whole engine ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(media_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine")
    serve = Serve(tmp, {"CLIPSEEK_MODEL": TINY_MODEL, "CLIPSEEK_PRETRAINED": "none",
                        "CLIPSEEK_MEDIA_ROOTS": str(media_dir), "CLIPSEEK_WORKSPACE": str(tmp / "ws"),
                        "CLIPSEEK_API_KEY": API_KEY})
    try:
        serve.wait_ready()
        yield serve
    finally:
        if serve.process.poll() is None:
            serve.kill()


def test_every_process_of_the_engine_listens_on_loopback_only(engine):
    names = engine.executor_pids()
    assert set(names) == {"video_loader", "image_encoder", "text_encoder", "indexer", "gateway"}
    sockets = listening(set(names.values()) | {engine.process.pid})
    assert sorted(port for _, port in sockets[names["gateway"]]) == sorted([engine.grpc_port, engine.http_port])
    for name, pid in names.items():
        assert sockets.get(pid), f"{name} listens on nothing"
        assert all(ipaddress.ip_address(host).is_loopback for host, _ in sockets[pid]), (name, sockets[pid])
    assert engine.process.pid not in sockets  # the supervisor itself listens on nothing


def test_executors_that_flow_yml_marks_allow_concurrent_run_requests_concurrently(engine):
    """flow.yml's ``allow_concurrent: true`` (the indexer: a search must not queue behind an /index; the
    loader: ranges in flight decode side by side) reaches the executor's process; without it jina runs an
    executor's requests one at a time."""
    names = engine.executor_pids()
    flags = {name: b"--allow-concurrent" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
             for name, pid in names.items() if name != "gateway"}
    assert flags == {"video_loader": True, "image_encoder": False, "text_encoder": False, "indexer": True}


def test_every_process_of_the_engine_runs_with_two_malloc_arenas(engine):
    """glibc's per-thread heap arenas held freed memory in each of jina's request threads; the engine
    starts its processes with MALLOC_ARENA_MAX=2 unless the environment sets it (clipseek.engine.serve)."""
    want = os.environ.get("MALLOC_ARENA_MAX", "2").encode()
    names = engine.executor_pids()
    assert {"gateway", "video_loader", "image_encoder", "text_encoder", "indexer"} <= set(names)
    for name, pid in names.items():
        items = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        environ = dict(item.split(b"=", 1) for item in items if b"=" in item)
        assert environ.get(b"MALLOC_ARENA_MAX") == want, name


def test_the_api_key_is_required_over_http_and_grpc(engine, media_dir):
    body = {"data": [{"text": "a red screen", "top_k": 1}]}
    assert httpx.post(f"{engine.http}/search", json=body, trust_env=False, timeout=60).status_code == 401
    wrong = httpx.post(f"{engine.http}/search", json=body, trust_env=False, timeout=60,
                       headers={"Authorization": "Bearer not-the-key"})
    assert wrong.status_code == 401 and "CLIPSEEK_API_KEY" in wrong.json()["detail"]
    right = httpx.post(f"{engine.http}/search", json=body, trust_env=False, timeout=60,
                       headers={"Authorization": f"Bearer {API_KEY}"})
    assert right.status_code == 200, right.text
    assert httpx.get(f"{engine.http}/", trust_env=False, timeout=10).status_code == 200  # readiness is open
    grpc_address = f"grpc://127.0.0.1:{engine.grpc_port}"
    for address in (engine.http, grpc_address):
        with pytest.raises(AuthenticationError):
            ClipseekClient(address, api_key="").videos()
        with pytest.raises(AuthenticationError):
            ClipseekClient(address, api_key="wrong").videos()
        assert isinstance(ClipseekClient(address, api_key=API_KEY).videos(), list)
    # the gRPC refusal is the standard status, for any gRPC client
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from jina.proto import jina_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{engine.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            jina_pb2_grpc.JinaGatewayDryRunRPCStub(channel).dry_run(
                jina_pb2_grpc.google_dot_protobuf_dot_empty__pb2.Empty(), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # liveness probes need no key
    cli = subprocess.run([sys.executable, "-m", "clipseek.api.cli", "--address", engine.http, "videos"],
                         capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={**os.environ, "CLIPSEEK_API_KEY": API_KEY})
    assert cli.returncode == 0, cli.stderr


def test_a_dead_image_encoder_leaves_search_up_and_is_restarted(engine, media_dir, tmp_path):
    grpc_address = f"grpc://127.0.0.1:{engine.grpc_port}"
    clients = [ClipseekClient(engine.http, api_key=API_KEY), ClipseekClient(grpc_address, api_key=API_KEY)]
    video = str(media_dir / "sub" / "blue.mp4")
    assert clients[0].index([video]).outcomes[0].status in ("indexed", "unchanged")
    before = engine.executor_pids()
    # The supervisor is paused so that it cannot restart the image encoder while the dead one is looked at.
    os.kill(engine.process.pid, signal.SIGSTOP)
    try:
        os.kill(before["image_encoder"], signal.SIGKILL)
        time.sleep(0.5)
        answer = httpx.get(f"{engine.http}/", trust_env=False, timeout=10)
        assert answer.status_code == 503 and set(answer.json()["down"]) == {"image_encoder"}, answer.text
        for client in clients:
            assert client.search("a blue screen", top_k=3), client.address  # text encoder + indexer only
            assert client.thumbnail(video, 1.0, 64)[:2] == b"\xff\xd8"  # the loader alone
            with pytest.raises(ServiceUnavailableError, match="image_encoder") as down:
                client.index_range(video, 0.0, None, force=True)
            assert down.value.service == "image_encoder"
        cli = subprocess.run([sys.executable, "-m", "clipseek.api.cli", "--address", engine.http, "index", "-q",
                              "--force", video, str(media_dir / "tiny.mp4")], capture_output=True, text=True,
                             cwd=REPO, timeout=120, env={**os.environ, "CLIPSEEK_API_KEY": API_KEY})
        assert cli.returncode == 1
        lines = cli.stdout.splitlines()
        assert lines[-1] == "0 indexed, 0 unchanged, 2 failed", cli.stdout  # every file of the run reported
        assert all("image_encoder" in line for line in lines[:-1]) and len(lines) == 3, cli.stdout
    finally:
        os.kill(engine.process.pid, signal.SIGCONT)
    deadline = time.monotonic() + 300
    while engine.ready() != 200 and time.monotonic() < deadline:
        assert engine.process.poll() is None, engine.output()[-3000:]
        time.sleep(0.5)
    after = engine.executor_pids()
    assert after["image_encoder"] != before["image_encoder"]
    assert {k: v for k, v in after.items() if k != "image_encoder"} == \
           {k: v for k, v in before.items() if k != "image_encoder"}
    assert "image_encoder exited with signal SIGKILL while serving; restarting it" in engine.output()
    # the gateway's pooled channel to the old process may still be in its reconnect backoff (<= 1 s,
    # gateway.RECONNECT_OPTIONS) when readiness (fresh channels) first says 200: a few seconds at most
    deadline = time.monotonic() + 10
    again = clients[1].index([video], force=True).outcomes[0]
    while again.status != "indexed" and time.monotonic() < deadline:
        time.sleep(0.5)
        again = clients[1].index([video], force=True).outcomes[0]
    assert again.status == "indexed", again.error


def test_sigterm_stops_every_process_within_10_s_and_frees_the_ports(engine):
    pids = descendants(engine.process.pid)
    assert len(pids) >= 5
    engine.process.send_signal(signal.SIGTERM)
    code, took_s = engine.wait_exit(30)
    assert code == 0, engine.output()[-3000:]
    assert took_s < 12.0, f"took {took_s:.1f} s"  # 10 s, then whatever is left is killed
    assert_all_gone(pids, engine, within_s=0.5)
    assert port_is_free(engine.grpc_port) and port_is_free(engine.http_port)


# -- starting and stopping, with one small executor ----------------------------------------------------
def test_a_process_that_cannot_start_stops_the_engine_within_seconds_with_its_error(tmp_path):
    serve = Serve(tmp_path, {"CLIPSEEK_FLOW": str(echo_flow(tmp_path, fail_at_start="the weights are missing"))})
    code, _ = serve.wait_exit(120)
    took_s = time.monotonic() - serve.started
    output = serve.output()
    assert code == 1, output
    assert "echo: exited with code 1 while starting" in output and "the weights are missing" in output, output
    assert took_s < 60, f"took {took_s:.0f} s"
    assert_all_gone(set(), serve, within_s=0.5)  # the gateway, started meanwhile, was stopped too


def test_a_start_that_does_not_finish_in_time_fails_the_same_way(tmp_path):
    serve = Serve(tmp_path, {"CLIPSEEK_FLOW": str(echo_flow(tmp_path, start_delay_s=600)),
                             "CLIPSEEK_START_TIMEOUT_S": "3"})
    code, _ = serve.wait_exit(120)
    output = serve.output()
    assert code == 1 and "echo: not ready 3 s after it was started (CLIPSEEK_START_TIMEOUT_S)" in output, output
    assert_all_gone(set(), serve, within_s=0.5)


def test_a_lock_held_by_a_leftover_process_does_not_block_the_start_and_ctrl_c_stops_everything(tmp_path):
    home = tmp_path / "home"
    locks = home / ".cache" / "jina" / "locks"
    locks.mkdir(parents=True)
    # what an orphaned executor does: hold jina's start-up lock of the class (jina waits on it for ever)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import fcntl, time
        handle = open({str(locks / 'Echo.lock')!r}, 'a')
        fcntl.flock(handle, fcntl.LOCK_EX)
        print('locked', flush=True)
        time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with open(locks / "Echo.lock") as probe, pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # it is held
        serve = Serve(tmp_path, {"CLIPSEEK_FLOW": str(echo_flow(tmp_path)), "HOME": str(home)})
        serve.wait_ready(120)
        with pytest.raises(QueryError, match="echo: hello"):  # the echo executor's answer came back
            ClipseekClient(serve.http).search("hello")
        pids = descendants(serve.process.pid)
        serve.process.send_signal(signal.SIGINT)  # Ctrl-C
        code, took_s = serve.wait_exit(30)
    finally:
        holder.kill()
        holder.wait()
    assert code == 0 and took_s < 12.0, (code, took_s, serve.output()[-2000:])
    assert_all_gone(pids, serve, within_s=0.5)
    assert port_is_free(serve.grpc_port) and port_is_free(serve.http_port)


def test_a_killed_engine_takes_its_processes_along(tmp_path):
    serve = Serve(tmp_path, {"CLIPSEEK_FLOW": str(echo_flow(tmp_path))})
    serve.wait_ready(120)
    pids = descendants(serve.process.pid)
    assert len(pids) == 2  # the echo executor and the gateway
    serve.process.kill()  # SIGKILL: it cannot stop anything itself
    serve.process.wait()
    assert_all_gone(pids, serve, within_s=5.0)


def test_an_executor_that_dies_past_the_restart_limit_stops_the_engine_naming_it(tmp_path):
    serve = Serve(tmp_path, {"CLIPSEEK_FLOW": str(echo_flow(tmp_path)), "CLIPSEEK_RESTART_LIMIT": "0"})
    serve.wait_ready(120)
    pids = descendants(serve.process.pid)
    os.kill(serve.executor_pids()["echo"], signal.SIGKILL)
    code, took_s = serve.wait_exit(30)
    output = serve.output()
    assert code == 1, output
    assert "echo: exited with signal SIGKILL while serving, after 0 restart(s) in 10 min " \
           "(CLIPSEEK_RESTART_LIMIT=0): giving up" in output, output
    assert took_s < 12.0
    assert_all_gone(pids, serve, within_s=0.5)


# -- BackgroundFlow, as tools/demo.py --serve uses it ---------------------------------------------------
def background_flow_script(tmp: Path) -> subprocess.Popen:
    """A program that serves with BackgroundFlow until Ctrl-C, as ``tools/demo.py --serve`` does."""
    settings = f"ServeSettings(grpc_port={free_port()}, http_port={free_port()}, flow={str(echo_flow(tmp))!r})"
    script = textwrap.dedent(f"""\
        from clipseek.engine.serve import BackgroundFlow, ServeSettings
        with BackgroundFlow({settings}) as flow:
            print("ready", flow.process.pid, flush=True)
            try:
                flow.process.wait()
            except KeyboardInterrupt:
                pass
        """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "CLIPSEEK_TEST_ENGINE": str(tmp)})


@pytest.mark.parametrize("how", ["ctrl-c", "kill-9"])
def test_a_program_serving_with_background_flow_stops_it_on_ctrl_c_or_when_killed(tmp_path, how):
    program = background_flow_script(tmp_path)
    try:
        line = program.stdout.readline().split()
        assert line[:1] == ["ready"], line
        pids = descendants(program.pid)
        assert len(pids) == 3  # the engine's supervisor, the echo executor, the gateway
        started = time.monotonic()
        program.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
        program.wait(30)
        deadline = time.monotonic() + 15
        while alive(pids | started_with(f"CLIPSEEK_TEST_ENGINE={tmp_path}")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pids | started_with(f"CLIPSEEK_TEST_ENGINE={tmp_path}")), how
        assert time.monotonic() - started < 15
    finally:
        if program.poll() is None:
            program.kill()
            program.wait()
