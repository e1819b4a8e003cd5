"""Every settings dataclass of the project, by service: what the README's settings table documents."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "video_loader": "LoaderSettings",
    "image_encoder": "ImageEncoderSettings",
    "text_encoder": "TextEncoderSettings",
    "indexer": "IndexerSettings",
}


def setting_names(service: str) -> set[str]:
    """The field names of a service's settings dataclass, read from its source without importing it
    (importing an executor module registers its class with jina, which then travels to the Flow's
    spawned processes by a module name they cannot import)."""
    tree = ast.parse((REPO_ROOT / "services" / service / "executor.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == SERVICES[service]:
            return {item.target.id for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
    raise LookupError(f"{SERVICES[service]} not found in services/{service}/executor.py")


def service_settings(service: str) -> type:
    """The settings dataclass of ``services/<service>/executor.py``, imported as a package module
    (``services.<service>.executor``) so that any process can import it by that name too."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return getattr(importlib.import_module(f"services.{service}.executor"), SERVICES[service])
