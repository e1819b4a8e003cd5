"""The services of clipseek, declared once: what flow.yml chains, what docker-compose.yml and
``clipseek deploy k8s`` run, and whose settings the README documents. Tests hold flow.yml and
docker-compose.yml to this list (tests/test_services.py); serve, deploy and the settings table read it.
Adding an executor = a folder under services/ and one line here (then flow.yml and the compose service).
"""

from __future__ import annotations

import ast
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Service:
    name: str  # the executor's name in flow.yml, and its folder under services/
    settings_class: str  # its settings dataclass in services/<name>/executor.py
    reads_media: bool = False  # mounts the videos (read-only)
    runs_model: bool = False  # loads CLIP (torch; replicas and a GPU make sense)
    holds_index: bool = False  # owns the index's workspace

    @property
    def compose_name(self) -> str:
        """Its service in docker-compose.yml and its workload in the Kubernetes export."""
        return self.name.replace("_", "-")

    @property
    def uses(self) -> str:
        """Its config, relative to the repository (flow.yml's ``uses``)."""
        return f"services/{self.name}/config.yml"


# In the order of the chain: /index crosses them all; /search only the text encoder and the indexer.
# The text encoder reads media for query pictures given by path (docs/search.md).
SERVICES: dict[str, Service] = {s.name: s for s in (
    Service("video_loader", "LoaderSettings", reads_media=True),
    Service("image_encoder", "ImageEncoderSettings", runs_model=True),
    Service("text_encoder", "TextEncoderSettings", reads_media=True, runs_model=True),  # query pictures by path
    Service("indexer", "IndexerSettings", reads_media=True, holds_index=True),
)}


def setting_names(service: str) -> set[str]:
    """The field names of a service's settings dataclass, read from its source without importing it
    (importing an executor module registers its class with jina, which then travels to the Flow's
    spawned processes by a module name they cannot import)."""
    spec = SERVICES[service]
    tree = ast.parse((REPO_ROOT / "services" / service / "executor.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == spec.settings_class:
            return {item.target.id for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
    raise LookupError(f"{spec.settings_class} not found in services/{service}/executor.py")


def service_settings(service: str) -> type:
    """The settings dataclass of ``services/<service>/executor.py``, imported as a package module
    (``services.<service>.executor``) so that any process can import it by that name too."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return getattr(importlib.import_module(f"services.{service}.executor"), SERVICES[service].settings_class)
