"""Deploying clipseek: Kubernetes manifests generated from ``flow.yml``, and the containers' health check.

    clipseek deploy k8s OUTDIR [--image IMAGE] [--encoder-replicas N] [--index qdrant --indexer-replicas N] ...

The manifests come from jina's own ``Flow.to_kubernetes_yaml`` (it knows the gateway's routing
arguments), run offline: jina asks Jina Hub and Docker Hub about every image it writes down, so those
two lookups are replaced for the duration of the export. Its output is then adapted: one image for
every service with ``--uses services/<name>/config.yml``, the gateway on the ports of ``clipseek
serve``, light probes (clipseek.engine.health), a non-root pod, torch kept out of the processes that
run no model, the videos on a volume, and the index either on a volume of its own (``embedded``: one
indexer pod, a StatefulSet) or in a Qdrant service (``qdrant``: the indexer keeps no state and runs as
replicas). jina's indexer *shards* are not offered: they returned unsorted and duplicated results.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipseek import __version__
from clipseek.engine.services import SERVICES, setting_names

DEFAULT_IMAGE = f"clipseek:{__version__}"
RUN_AS_UID = 10001  # the `clipseek` user of docker/Dockerfile
MEDIA_MOUNT = "/media"
WORKSPACE_MOUNT = "/data/workspace"
ENCODERS = tuple(name for name, s in SERVICES.items() if s.runs_model)
READS_MEDIA = tuple(name for name, s in SERVICES.items() if s.reads_media)
[INDEXER] = [name for name, s in SERVICES.items() if s.holds_index]
JINA_EXECUTOR_PORT = 8080  # where jina's export puts every executor in its pod
API_KEY_SECRET = "clipseek-api-key"  # the Secret holding the gateway's key, under API_KEY_FIELD
API_KEY_FIELD = "api-key"


@dataclass
class K8sOptions:
    """What ``clipseek deploy k8s`` writes; every field has a command-line option."""

    image: str = DEFAULT_IMAGE  # built from docker/Dockerfile and pushed where the cluster can pull it
    namespace: str = "clipseek"
    encoder_replicas: int = 1  # pods per encoder
    index: str = "embedded"  # embedded (one indexer pod with its volume) or qdrant (a Qdrant service)
    indexer_replicas: int = 1  # indexer pods; more than 1 only with the qdrant index
    qdrant_url: str = "http://qdrant:6333"  # with the qdrant index: its service (e.g. from the official Helm chart)
    encoder_gpus: int = 0  # nvidia.com/gpu per encoder pod (0 = CPU)
    media_claim: str = "clipseek-media"  # an existing PersistentVolumeClaim holding the videos
    index_storage: str = "20Gi"  # the size of the embedded index's volume
    storage_class: str = ""  # "" = the cluster's default StorageClass
    env: dict[str, str] = field(default_factory=dict)  # CLIPSEEK_* settings given to every executor
    api_key: str = ""  # the gateway's CLIPSEEK_API_KEY, written to a Secret; "" = a new random one

    def __post_init__(self) -> None:
        for name in ("encoder_replicas", "indexer_replicas"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.index not in ("embedded", "qdrant"):
            raise ValueError(f"index must be embedded or qdrant, got {self.index!r}")
        if self.index == "embedded" and self.indexer_replicas > 1:
            raise ValueError("the embedded index has one writer (its volume): indexer replicas need --index qdrant")
        if self.encoder_gpus < 0:
            raise ValueError(f"encoder_gpus must be 0 or more, got {self.encoder_gpus}")
        if not self.image or self.image.startswith(("jinaai", "jinahub", "docker://")):
            raise ValueError(f"image must be a plain image reference (registry/name:tag), got {self.image!r}")
        bad = sorted(k for k in self.env if not k.startswith("CLIPSEEK_"))
        if bad:
            raise ValueError(f"env takes CLIPSEEK_* settings only, got {', '.join(bad)}")


# -- Kubernetes --------------------------------------------------------------------------------------
def _flow_definition(flow_path: Path | None) -> tuple[dict[str, Any], dict[str, str]]:
    """flow.yml as jina will load it, and each executor's ``uses`` as written (relative to flow.yml)."""
    import yaml

    from clipseek.engine.serve import REPO_ROOT, ServeSettings, flow_config

    path = Path(flow_path) if flow_path else REPO_ROOT / "flow.yml"
    written = {e["name"]: e["uses"] for e in yaml.safe_load(path.read_text()).get("executors", [])}
    missing = sorted(set(SERVICES) - set(written))
    if missing:
        raise ValueError(f"{path} has no executor named {', '.join(missing)}")
    return flow_config(ServeSettings(flow=str(path))), written


def _export_config(options: K8sOptions, config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for executor in config["executors"]:
        name = executor["name"]
        executor["uses"] = f"docker://{options.image}"
        executor["env"] = {"JINA_OPTOUT_TELEMETRY": "1", "JINA_HIDE_SURVEY": "1", **options.env}
        if "media_roots" in setting_names(name):
            executor["env"]["CLIPSEEK_MEDIA_ROOTS"] = MEDIA_MOUNT
        if name in ENCODERS:
            executor["replicas"] = options.encoder_replicas
            if options.encoder_gpus:
                executor["gpus"] = options.encoder_gpus
        if name == INDEXER:
            executor["env"]["CLIPSEEK_WORKSPACE"] = WORKSPACE_MOUNT
            if options.index == "qdrant":
                executor["env"]["CLIPSEEK_INDEX_BACKEND"] = "qdrant"
                executor["env"]["CLIPSEEK_QDRANT_URL"] = options.qdrant_url
                executor["replicas"] = options.indexer_replicas
    return config


def _api_key_env() -> dict[str, Any]:
    return {"name": "CLIPSEEK_API_KEY", "valueFrom": {"secretKeyRef": {"name": API_KEY_SECRET, "key": API_KEY_FIELD}}}


def _without_option(args: list[str], option: str) -> list[str]:
    """``args`` without ``option`` and the values following it."""
    if option not in args:
        return args
    at = args.index(option)
    end = at + 1
    while end < len(args) and not args[end].startswith("--"):
        end += 1
    return args[:at] + args[end:]


def _probe(target: str, period_s: int, failures: int) -> dict[str, Any]:
    return {"exec": {"command": ["python", "-m", "clipseek.engine.health", target]},
            "periodSeconds": period_s, "timeoutSeconds": 10, "failureThreshold": failures}


def _replace_args(args: list[str], option: str, values: list[str]) -> list[str]:
    """``args`` with the values following ``option`` replaced (as many as there were)."""
    if option not in args:
        return args
    at = args.index(option) + 1
    end = at
    while end < len(args) and not args[end].startswith("--"):
        end += 1
    return args[:at] + values + args[end:]


def _adapt(doc: dict[str, Any], options: K8sOptions, uses: dict[str, str], ports: tuple[int, int]) -> dict[str, Any]:
    """One document of jina's export, adapted to clipseek (see the module docstring)."""
    kind = doc.get("kind")
    name = doc["metadata"]["name"]
    if kind == "Service" and name.startswith("gateway"):
        port = ports[1] if name.endswith("-http") else ports[0]
        doc["spec"]["ports"] = [{"name": "http" if name.endswith("-http") else "grpc", "port": port,
                                 "protocol": "TCP", "targetPort": port}]
        return doc
    if kind != "Deployment":
        return doc
    template = doc["spec"]["template"]
    labels = template["metadata"]["labels"]
    executor, pod_type = labels["jina_deployment_name"], labels["pod_type"]
    pod = template["spec"]
    pod["securityContext"] = {"runAsNonRoot": True, "runAsUser": RUN_AS_UID, "runAsGroup": RUN_AS_UID,
                              "fsGroup": RUN_AS_UID}
    container = pod["containers"][0]
    args = [str(a) for a in container["args"]]
    if pod_type == "GATEWAY":
        # clipseek's gateway (clipseek.engine.gateway: the API key, whole requests, readiness on GET /)
        container["command"] = ["python", "-m", "clipseek.torch_free", "-m", "clipseek.engine.gateway"]
        args = _without_option(args[1:] if args[:1] == ["gateway"] else args, "--uses")
        args = _replace_args(args, "--port", [str(p) for p in ports])
        container["ports"] = [{"containerPort": p} for p in ports]
        container["env"] = [*container.get("env", []), _api_key_env()]
        alive = f"grpc://127.0.0.1:{ports[0]}"  # the gateway's own gRPC health service
        ready = f"http://127.0.0.1:{ports[1]}/"  # 200 only while every executor answers
    else:
        if pod_type == "WORKER":
            args = _replace_args(args, "--uses", [uses[executor]])
            if container.get("command") == ["jina"]:  # torch is let in by the encoders only, to load their model
                container["command"] = ["python", "-m", "clipseek.torch_free", "jina"]
        alive = ready = f"grpc://127.0.0.1:{JINA_EXECUTOR_PORT}"
    container["args"] = args
    # jina's probes run `jina ping` (seconds of CPU each) every 5 s; these ask the gRPC health service.
    container["startupProbe"] = _probe(alive, period_s=10, failures=90)  # 15 min: first model download
    container["readinessProbe"] = _probe(ready, period_s=10, failures=3)
    container["livenessProbe"] = _probe(alive, period_s=30, failures=3)
    if executor in READS_MEDIA and pod_type == "WORKER":  # (the indexer tells a copied file from a moved one)
        pod["volumes"] = [{"name": "media", "persistentVolumeClaim": {"claimName": options.media_claim,
                                                                      "readOnly": True}}]
        container["volumeMounts"] = [{"name": "media", "mountPath": MEDIA_MOUNT, "readOnly": True}]
    if executor == INDEXER and pod_type == "WORKER" and options.index == "embedded":
        doc = _as_stateful_set(doc, options)
    return doc


def _as_stateful_set(doc: dict[str, Any], options: K8sOptions) -> dict[str, Any]:
    """The embedded index lives on its own volume: a StatefulSet of one pod with a claim."""
    name = doc["metadata"]["name"]
    spec = doc["spec"]
    claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": options.index_storage}}}
    if options.storage_class:
        claim["storageClassName"] = options.storage_class
    spec.pop("strategy", None)
    spec["serviceName"] = name
    spec["updateStrategy"] = {"type": "RollingUpdate"}
    spec["volumeClaimTemplates"] = [{"metadata": {"name": "index"}, "spec": claim}]
    container = spec["template"]["spec"]["containers"][0]
    container["volumeMounts"] = [*container.get("volumeMounts", []), {"name": "index", "mountPath": WORKSPACE_MOUNT}]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": doc["metadata"], "spec": spec}


def _api_key_secret(options: K8sOptions) -> dict[str, Any]:
    """The gateway's API key (the page and the clients need it too: ``kubectl get secret``)."""
    import secrets

    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": API_KEY_SECRET, "namespace": options.namespace},
            "stringData": {API_KEY_FIELD: options.api_key or secrets.token_urlsafe(32)}}


def _executors_policy(options: K8sOptions) -> dict[str, Any]:
    """Executors take connections from the gateway only (and from heads, had a deployment any): nobody
    else in the cluster can call the indexer's /delete past the gateway. (Needs a network plugin that enforces
    NetworkPolicy; the probes run inside the pods and are not affected.)"""
    def pods(*kinds: str) -> dict[str, Any]:
        return {"matchExpressions": [{"key": "pod_type", "operator": "In", "values": list(kinds)}]}

    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "executors-from-gateway-only", "namespace": options.namespace},
            "spec": {"podSelector": pods("WORKER", "HEAD"), "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": pods("GATEWAY", "HEAD")}]}]}}


def kubernetes_manifests(options: K8sOptions, flow_path: Path | None = None,
                         ports: tuple[int, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The manifests, as ``{relative file path: [YAML documents]}``; ``ports`` = the gateway's (gRPC, HTTP),
    by default those of ``clipseek serve``."""
    import yaml

    from clipseek.engine.jina_compat import export_offline
    from clipseek.engine.serve import ServeSettings

    if ports is None:
        ports = (ServeSettings.grpc_port, ServeSettings.http_port)
    config, uses = _flow_definition(flow_path)
    from jina import Flow

    manifests: dict[str, list[dict[str, Any]]] = {
        "namespace.yml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": options.namespace}}],
        "secret.yml": [_api_key_secret(options)],
        "network-policy.yml": [_executors_policy(options)]}
    with tempfile.TemporaryDirectory(prefix="clipseek-k8s-") as tmp, export_offline(options.image):
        flow = Flow.load_config(_export_config(options, config))
        flow.logger.logger.setLevel(logging.WARNING)  # it would announce files "created under" our temp folder
        flow.to_kubernetes_yaml(tmp, k8s_namespace=options.namespace)
        for path in sorted(Path(tmp).rglob("*.yml")):
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
            manifests[str(path.relative_to(tmp))] = [_adapt(d, options, uses, ports) for d in docs]
    return manifests


def write_kubernetes(outdir: Path, options: K8sOptions, flow_path: Path | None = None) -> list[Path]:
    """Write the manifests under ``outdir`` (created); returns the files written."""
    import yaml

    written = []
    for relative, docs in kubernetes_manifests(options, flow_path).items():
        path = Path(outdir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        written.append(path)
    return written


# -- command line ------------------------------------------------------------------------------------
def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("CLIPSEEK_"):
        raise argparse.ArgumentTypeError(f"expected CLIPSEEK_NAME=VALUE, got {text!r}")
    return name, value


def add_deploy_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``clipseek deploy k8s OUTDIR ...``"""
    defaults = K8sOptions()
    deploy = subparsers.add_parser("deploy", help="write deployment files (Kubernetes manifests)")
    targets = deploy.add_subparsers(dest="target", required=True)
    k8s = targets.add_parser("k8s", help="Kubernetes manifests from flow.yml (kubectl apply -R -f OUTDIR)")
    k8s.add_argument("outdir", metavar="OUTDIR", type=Path)
    k8s.add_argument("--image", default=defaults.image,
                     help=f"the image of docker/Dockerfile, pushed where the cluster pulls (default {defaults.image})")
    k8s.add_argument("--namespace", default=defaults.namespace)
    k8s.add_argument("--encoder-replicas", type=int, default=defaults.encoder_replicas, metavar="N",
                     help="pods per encoder (more than 1 needs a gRPC-aware mesh such as Linkerd to spread the load)")
    k8s.add_argument("--index", choices=("embedded", "qdrant"), default=defaults.index,
                     help="embedded: one indexer pod with its own volume; qdrant: the index in a Qdrant service "
                          "(see docs/deployment.md), the indexer stateless")
    k8s.add_argument("--indexer-replicas", type=int, default=defaults.indexer_replicas, metavar="N",
                     help="indexer pods (with --index qdrant)")
    k8s.add_argument("--qdrant-url", default=defaults.qdrant_url, help="the Qdrant service (with --index qdrant)")
    k8s.add_argument("--encoder-gpus", type=int, default=defaults.encoder_gpus, metavar="N",
                     help="NVIDIA GPUs per encoder pod")
    k8s.add_argument("--media-claim", default=defaults.media_claim,
                     help="existing PersistentVolumeClaim with the videos (mounted read-only at /media)")
    k8s.add_argument("--index-storage", default=defaults.index_storage, help="volume size of the embedded index")
    k8s.add_argument("--storage-class", default=defaults.storage_class, help="StorageClass of the index volumes")
    k8s.add_argument("--env", type=_env_pair, action="append", default=[], metavar="CLIPSEEK_NAME=VALUE",
                     help="a setting for every executor (repeatable), e.g. CLIPSEEK_MODEL=ViT-B-32")
    k8s.add_argument("--flow", type=Path, default=None, help="flow.yml (default: the checkout's)")
    k8s.add_argument("--api-key", default=None,
                     help="the gateway's API key, written to the Secret clipseek-api-key "
                          "(default $CLIPSEEK_API_KEY, else a new random key)")
    return deploy


def cmd_deploy(args: argparse.Namespace) -> int:
    try:
        options = K8sOptions(image=args.image, namespace=args.namespace, encoder_replicas=args.encoder_replicas,
                             index=args.index, indexer_replicas=args.indexer_replicas, qdrant_url=args.qdrant_url,
                             encoder_gpus=args.encoder_gpus,
                             media_claim=args.media_claim, index_storage=args.index_storage,
                             storage_class=args.storage_class, env=dict(args.env),
                             api_key=os.environ.get("CLIPSEEK_API_KEY", "") if args.api_key is None else args.api_key)
        written = write_kubernetes(args.outdir, options, args.flow)
    except (ValueError, FileNotFoundError) as exc:
        print(f"clipseek deploy: {exc}", file=sys.stderr)
        return 2
    if options.index == "qdrant":
        print(f"The index is in Qdrant at {options.qdrant_url}: install it first, e.g. with its official Helm chart "
              f"(docs/deployment.md, \"Qdrant\").")
    print(f"wrote {len(written)} files under {args.outdir}; apply with:\n"
          f"  kubectl apply -f {args.outdir / 'namespace.yml'} && kubectl apply -R -f {args.outdir}\n"
          f"The gateway's API key is in {args.outdir / 'secret.yml'} (keep it private); clients send it as "
          f"CLIPSEEK_API_KEY:\n  kubectl -n {options.namespace} get secret {API_KEY_SECRET} "
          f"-o jsonpath='{{.data.{API_KEY_FIELD}}}' | base64 -d")
    return 0
