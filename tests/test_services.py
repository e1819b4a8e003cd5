"""The services are declared once (clipseek.engine.services): flow.yml, docker-compose.yml, the Kubernetes
export and the services/ folders must all say the same."""

from __future__ import annotations

import yaml
from conftest import REPO

from clipseek.engine.services import SERVICES


def test_flow_yml_chains_the_declared_services_in_order():
    executors = yaml.safe_load((REPO / "flow.yml").read_text())["executors"]
    assert [e["name"] for e in executors] == list(SERVICES)
    assert [e["uses"] for e in executors] == [s.uses for s in SERVICES.values()]


def test_every_declared_service_has_its_folder_and_compose_service_and_nothing_else_does():
    folders = {p.name for p in (REPO / "services").iterdir() if (p / "executor.py").is_file()}
    assert folders == set(SERVICES)
    for service in SERVICES.values():
        for part in ("executor.py", "config.yml", "README.md"):
            assert (REPO / "services" / service.name / part).is_file(), (service.name, part)
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    runs_executor = {name for name, s in compose.items() if "executor" in s.get("command", [])}
    assert runs_executor == {s.compose_name for s in SERVICES.values()}
    for service in SERVICES.values():
        volumes = " ".join(compose[service.compose_name].get("volumes", []))
        assert (":/media:ro" in volumes) == service.reads_media, service.name
        assert ("/data/workspace" in volumes) == service.holds_index, service.name


def test_the_kubernetes_export_has_a_workload_per_declared_service():
    from clipseek.engine import deploy

    manifests = deploy.kubernetes_manifests(deploy.K8sOptions(image="registry.example/clipseek:test"))
    workloads = {d["metadata"]["name"]: d for docs in manifests.values() for d in docs
                 if d["kind"] in ("Deployment", "StatefulSet")}
    assert set(workloads) == {"gateway", *(s.compose_name for s in SERVICES.values())}
    for service in SERVICES.values():
        pod = workloads[service.compose_name]["spec"]["template"]["spec"]
        mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert ("/media" in mounts) == service.reads_media, service.name
        assert ("/data/workspace" in mounts) == service.holds_index, service.name
